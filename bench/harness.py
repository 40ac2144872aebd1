"""Plumbing shared by the benchmarks: a scratch project, gunicorn on loopback, a bounded load runner.

Nothing here talks to anything but 127.0.0.1, and every wait has a deadline. Import it before Django:
`scratch_project()` sets the environment that backoffice.settings reads, then calls django.setup().
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin/: run the benchmarks with .venv/bin/python
LOOPBACK = "127.0.0.1"
READY_PATH = "/api/v1/products"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
MIB = 1024 * 1024

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- the scratch project ---------------------------------------------------------------------------
@contextlib.contextmanager
def scratch_project(*, keep: bool = False, **overrides: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A temp dir with a migrated SQLite database; yields (workdir, environment for the servers).

    Every setting that could reach outside the machine or change the code path is pinned, so a developer's
    .env (read with overwrite=False) cannot leak into the run.
    """
    workdir = Path(tempfile.mkdtemp(prefix="backoffice-bench-"))
    pinned = {
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": "",
        "MPESA_ENVIRONMENT": "simulator",
        "DJANGO_DEBUG": "false",
        "DJANGO_BEHIND_PROXY": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MPESA_CALLBACK_ALLOWED_IPS": "",
        "MPESA_CALLBACK_TOKEN": "bench" + secrets.token_hex(16),
        "MPESA_BASE_URL": "",
        "MPESA_CALLBACK_BASE_URL": "",
        "SMS_BACKEND": "local",
        "EMAIL_ESP": "console",
        "Q_SYNC": "0",
        "LOG_LEVEL": "WARNING",
    }
    pinned.update(overrides)
    os.environ.update(pinned)
    try:
        import django
        from django.core.management import call_command

        django.setup()
        started = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)
        print(f"scratch database migrated in {time.monotonic() - started:.1f} s: {workdir}", flush=True)
        yield workdir, dict(os.environ)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def timed(action: Callable[[], object], *, repeat: int) -> tuple[float, object]:
    """Median milliseconds over `repeat` runs after one warm-up, and the last result."""
    result = action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A database of its own on the given server, dropped afterwards."""
    import psycopg

    name = f"backoffice_bench_{secrets.token_hex(4)}"
    base, _, _old = admin_url.rpartition("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_redis(url: str) -> Iterator[str]:
    """The Redis database at `url`, emptied before and after (give it a database number of its own)."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()


@contextlib.contextmanager
def scratch_database(
    *, postgres: str | None = None, redis: str | None = None, keep: bool = False, **overrides: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    """scratch_project on SQLite, or on a scratch database of the PostgreSQL server at `postgres`; with
    `redis`, that Redis database (emptied) is the cache and the django-q2 broker, as in production."""
    with contextlib.ExitStack() as stack:
        overrides = {"DATABASE_CONN_MAX_AGE": "600", **overrides}
        if postgres:
            overrides["DATABASE_URL"] = stack.enter_context(scratch_postgres(postgres))
        if redis:
            overrides["REDIS_URL"] = stack.enter_context(scratch_redis(redis))
        yield stack.enter_context(scratch_project(keep=keep, **overrides))


DB_CONNECTIONS = {
    "persistent": {"DATABASE_CONN_MAX_AGE": "600", "DATABASE_CONN_HEALTH_CHECKS": "true"},
    "per-request": {"DATABASE_CONN_MAX_AGE": "0", "DATABASE_CONN_HEALTH_CHECKS": "false"},
}


def backend_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The environment the --db-connections choice stands for."""
    return dict(DB_CONNECTIONS[getattr(args, "db_connections", "persistent")])


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """--postgres and --redis: run on a scratch PostgreSQL database and a Redis database instead of the
    embedded default (SQLite, database cache, ORM broker)."""
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on a scratch database on this PostgreSQL server, e.g. "
        "postgres://backoffice:backoffice@127.0.0.1:5432/backoffice (scripts/ensure-postgres)",
    )
    parser.add_argument(
        "--db-connections",
        choices=sorted(DB_CONNECTIONS),
        default="persistent",
        help="PostgreSQL connections: persistent (CONN_MAX_AGE=600 with health checks, production's default) "
        "or per-request (CONN_MAX_AGE=0)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="use this Redis database (emptied before and after) as cache and task broker, e.g. "
        "redis://127.0.0.1:6390/9 (scripts/ensure-redis)",
    )


def backend_name() -> str:
    """What the scratch project runs on, for the printed settings line."""
    from django.db import connection

    database = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(connection.vendor, connection.vendor)
    if database == "PostgreSQL":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            database += " " + cursor.fetchone()[0].split()[0]
    cache = "Redis" if os.environ.get("REDIS_URL") else "database cache"
    if database.startswith("PostgreSQL"):
        from django.conf import settings

        options = settings.DATABASES["default"]
        database += (
            f" (CONN_MAX_AGE={options['CONN_MAX_AGE']}, health checks {options['CONN_HEALTH_CHECKS']})"
        )
    return f"{database}, {cache}"


def migrate_other_database(env: dict[str, str], database_url: str) -> None:
    """Migrate a second scratch database (e.g. the simulator's own) in a child process."""
    subprocess.run(  # noqa: S603 - our own venv's python, fixed arguments
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": database_url},
        check=True,
        timeout=60,
    )


# --- memory -------------------------------------------------------------------------------------------
class RssSampler:
    """The process's resident memory, sampled every 10 ms from /proc (Linux) while the block runs: its
    value at the start and its peak. (ru_maxrss would also count Django's start-up, which peaks higher.)"""

    def __init__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


# --- gunicorn on loopback ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def gunicorn(
    name: str,
    env: dict[str, str],
    workdir: Path,
    *,
    workers: int = 2,
    threads: int = 8,
    port: int | None = None,
) -> Iterator[Server]:
    """The real WSGI app under gunicorn (gthread) on a free loopback port; stopped on exit, whatever happens."""
    port = port or free_port()
    log_path = workdir / f"{name}.log"
    argv = [
        str(BIN / "gunicorn"),
        "backoffice.wsgi:application",
        f"--bind={LOOPBACK}:{port}",
        f"--workers={workers}",
        f"--threads={threads}",
        "--timeout=60",
        "--graceful-timeout=5",
        "--log-level=warning",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own venv's gunicorn, fixed arguments
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name=name, base_url=f"http://{LOOPBACK}:{port}", process=process, log_path=log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(server.base_url + READY_PATH, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready within {READY_TIMEOUT:.0f} s:\n{server.log_tail()}")


def _stop(server: Server) -> None:
    process = server.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # the arbiter stops its own workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    # start_new_session made the arbiter's pid its group id: a worker it left behind goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT)


# --- the load ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] | None = None


@dataclass
class LoadResult:
    label: str
    planned: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    refused: int = 0  # answered, but not the answer `accept` wanted
    errors: int = 0  # no HTTP answer (timeout, connection reset)
    wall_seconds: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.completed / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in ms."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def run_load(
    label: str,
    base_url: str,
    calls: list[Call],
    *,
    concurrency: int,
    max_seconds: float,
    rate: float = 0.0,
    accept: Callable[[requests.Response], bool] = lambda response: response.ok,
) -> LoadResult:
    """Send `calls` in order from `concurrency` threads, each with its own keep-alive connection.

    rate = 0: closed loop, as fast as the server answers. rate > 0: call i is due at start + i / rate and its
    latency counts from that moment, so a server that falls behind is not flattered by the client waiting
    (coordinated omission). Nothing new is sent after `max_seconds`; each call times out after
    REQUEST_TIMEOUT, so the phase ends by itself.
    """
    result = LoadResult(label=label, planned=len(calls))
    lock = threading.Lock()
    next_index = iter(range(len(calls)))
    start = time.perf_counter()
    stop_at = start + max_seconds

    def worker() -> None:
        session = requests.Session()
        mine = LoadResult(label=label, planned=0)
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    break
                due = start + index / rate if rate else time.perf_counter()
                if due > stop_at or time.perf_counter() > stop_at:
                    break
                if rate:
                    time.sleep(max(0.0, due - time.perf_counter()))
                call = calls[index]
                try:
                    response = session.request(
                        call.method,
                        base_url + call.path,
                        data=call.body,
                        headers=call.headers,
                        timeout=REQUEST_TIMEOUT,
                    )
                except requests.RequestException:
                    mine.errors += 1
                    continue
                mine.latencies_ms.append((time.perf_counter() - due) * 1000)
                mine.statuses[response.status_code] += 1
                try:
                    accepted = accept(response)
                except ValueError:  # not the JSON we expected
                    accepted = False
                mine.refused += not accepted
        finally:
            session.close()
            with lock:
                result.latencies_ms.extend(mine.latencies_ms)
                result.statuses.update(mine.statuses)
                result.refused += mine.refused
                result.errors += mine.errors

    threads = [threading.Thread(target=worker, name=f"load-{n}", daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + REQUEST_TIMEOUT + 5)
    result.wall_seconds = time.perf_counter() - start
    return result


# --- reporting -----------------------------------------------------------------------------------------
def print_table(results: list[LoadResult]) -> None:
    header = (
        f"{'phase':<40} {'sent':>6} {'ok':>6} {'bad':>5} {'err':>4} {'req/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.label:<40} {r.completed + r.errors:>6} {r.completed - r.refused:>6} {r.refused:>5} "
            f"{r.errors:>4} {r.throughput:>8.1f} {r.percentile(50):>8.1f} {r.percentile(95):>8.1f} "
            f"{r.percentile(99):>8.1f} {max(r.latencies_ms, default=math.nan):>8.1f}"
        )
    for r in results:
        if r.completed + r.errors < r.planned:
            print(f"note: {r.label} stopped at the time cap after {r.completed + r.errors} of {r.planned}")


def print_ratio(subject: LoadResult, baseline: LoadResult) -> None:
    p99_ratio = subject.percentile(99) / baseline.percentile(99)
    throughput_ratio = subject.throughput / baseline.throughput if baseline.throughput else math.nan
    print(
        f"ratio {subject.label} / baseline: p99 x{p99_ratio:.2f}, p50 x"
        f"{subject.percentile(50) / baseline.percentile(50):.2f}, throughput x{throughput_ratio:.2f}"
    )


def load_settings_line(
    *, requests_count: int, concurrency: int, rate: float, workers: int, threads: int
) -> str:
    mode = f"open loop at {rate:g} req/s" if rate else "closed loop (as fast as answered)"
    return (
        f"load: {requests_count} requests per phase, {concurrency} client threads, {mode}; "
        f"server: gunicorn {workers} workers x {threads} threads, {backend_name()}, loopback; "
        f"{os.cpu_count()} CPUs"
    )


def load_parser(
    description: str, *, requests: int, requests_max: int, concurrency: int, server: str = "gunicorn"
) -> argparse.ArgumentParser:
    """The options every benchmark shares: load size and shape, the server under test, clean-up."""
    parser = argparse.ArgumentParser(description=description)
    parser.set_defaults(requests_max=requests_max)
    parser.add_argument(
        "--requests", type=int, default=requests, help=f"requests per phase (default {requests})"
    )
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help=f"client threads (default {concurrency})"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="open loop at this many req/s; 0 = closed loop (default)"
    )
    parser.add_argument("--workers", type=int, default=2, help=f"{server} workers (default 2)")
    parser.add_argument("--threads", type=int, default=8, help=f"{server} threads per worker (default 8)")
    parser.add_argument("--max-seconds", type=float, default=25.0, help="cap per phase (default 25)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, server logs)")
    add_backend_args(parser)
    return parser


def check_load_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse load settings outside the bounds that keep a benchmark short and on this machine."""
    if not 1 <= args.requests <= args.requests_max:
        parser.error(f"--requests must be 1 to {args.requests_max}")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be 1 to 64")
    if not 0 <= args.rate <= 2000:
        parser.error("--rate must be 0 to 2000")
    if not (1 <= args.workers <= 8 and 1 <= args.threads <= 32):
        parser.error("--workers must be 1 to 8 and --threads 1 to 32")
    if not 1 <= args.max_seconds <= 60:
        parser.error("--max-seconds must be 1 to 60")


# --- django-q2 cluster ---------------------------------------------------------------------------------
@contextlib.contextmanager
def qcluster(
    env: dict[str, str], workdir: Path, *, workers: int = 2, name: str = "qcluster", nice: int = 0
) -> Iterator[Server]:
    """A real `manage.py qcluster` with `workers` workers; stopped on exit with SIGTERM to its main pid only
    (a signal to its process group hangs it: ecosystem.md §3.3), then SIGKILL to whatever is left.

    `nice` lowers its CPU priority: on one machine it then stands for workers on hardware of their own,
    taking what the web tier leaves instead of competing with it."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own venv's python, fixed arguments
            [*(["nice", "-n", str(nice)] if nice else []), sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env={**env, "Q_WORKERS": str(workers)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name=name, base_url="", process=process, log_path=log_path)
    try:
        yield server
    finally:
        _stop(server)
