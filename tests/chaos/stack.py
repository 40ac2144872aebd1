"""The production topology on this machine, for the chaos runs, and the means to break it.

A scratch database on the PostgreSQL server of scripts/ensure-postgres, a Redis database of its own on the
Redis of scripts/ensure-redis (cache and django-q2 broker), the app under gunicorn (2 workers), the Daraja
simulator in its own gunicorn with its own SQLite database and cache (Safaricom's side: our outages are
not its outages), and a real `manage.py qcluster`. The test process reads the scratch database through
the ORM alias `chaos` (connections to it are made here, not by pytest-django).

Breaking it: SIGKILL to one process of the cluster or to all of it, a PostgreSQL or Redis restart (the
shared servers: other runs on this machine see the outage too, so it stays a few seconds), the simulator
stopped and started again on its port.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench import harness

ROOT = harness.ROOT
ALIAS = "chaos"
POSTGRES_URL = os.environ.get(
    "CHAOS_POSTGRES_URL", "postgres://backoffice:backoffice@127.0.0.1:5432/backoffice"
)
REDIS_URL = os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6390/12")
STAFF_USERNAME = "chaos-staff"
PRODUCT_PRICE = 10
# Numbers with a documented outcome at the simulator (payments/simulator/README.md).
NO_CALLBACK_PHONE = "254700000404"  # paid; the callback never comes, STK Query says success
SILENT_REFUND_PHONE = "254700000103"  # paid; a refund to it moves money but no Result is ever posted
STOP_TIMEOUT = 15.0


def wait_until(
    what: str,
    check: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.5,
    explain: Callable[[], object] | None = None,
):
    """Poll `check` until it returns something truthy; a database error while a server restarts is a
    "not yet". Fails with `what` (and what `explain` returns then) after `timeout` seconds."""
    from django.db import DatabaseError, connections

    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = check()
        except DatabaseError as exc:
            connections[ALIAS].close()
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            detail = explain() if explain is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error}) {detail}"
            )
        time.sleep(interval)


# --- processes -------------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    children, found, todo = _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _tcp_inodes(*, local_port: int | None = None, remote_port: int | None = None) -> set[int]:
    """Inodes of established TCP connections with that local or remote port (this network namespace)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                local, remote, state = parts[1], parts[2], parts[3]
                if state != "01":
                    continue
                if local_port is not None and int(local.rsplit(":", 1)[1], 16) != local_port:
                    continue
                if remote_port is not None and int(remote.rsplit(":", 1)[1], 16) != remote_port:
                    continue
                inodes.add(int(parts[9]))
    return inodes


def pids_connected(pids: list[int], *, local_port: int | None = None, remote_port: int | None = None):
    """Those of `pids` holding an established TCP connection from `local_port` or to `remote_port`."""
    wanted = _tcp_inodes(local_port=local_port, remote_port=remote_port)
    return [pid for pid in pids if _socket_inodes(pid) & wanted]


@dataclass
class Cluster:
    """`manage.py qcluster`, started, stopped, killed and started again; one log for all its lives."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    lives: int = 0

    def start(self, **extra_env: str) -> None:
        assert self.process is None or self.process.poll() is not None, "the cluster is running"
        with self.log_path.open("ab") as log:
            log.write(f"\n===== qcluster life {self.lives + 1} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env={**self.env, **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.lives += 1
        # Ready when the workers are forked (they are what the tests kill).
        wait_until("the qcluster workers", lambda: len(self.pids()) >= 4, timeout=30, interval=0.2)

    def restart(self, **extra_env: str) -> None:
        """Stopped (or found dead) and started again, with these settings on top of its own."""
        self.stop()
        self.start(**extra_env)

    def pids(self) -> list[int]:
        """The main process and everything it forked (sentinel, workers, monitor, pusher)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *descendants(self.process.pid)]

    def kill(self) -> None:
        """SIGKILL to every process of the cluster at once: a host that lost power."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM to the main pid only (a signal to its process group hangs it: ecosystem.md §3.3)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log(self, *, since: int = 0) -> str:
        """What the cluster logged (from byte `since` on: see log_size), all its lives together."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")


def alive(pid: int) -> bool:
    """Running (a zombie has closed everything already)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- the shared servers -------------------------------------------------------------------------------
def _as_root(argv: list[str]) -> list[str]:
    return argv if os.geteuid() == 0 else ["sudo", *argv]


def _postgres_cluster(port: int) -> tuple[str, str]:
    """(version, name) of the cluster on `port`, as scripts/ensure-postgres finds it."""
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        version, name, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return version, name
    raise RuntimeError(f"no PostgreSQL cluster on port {port} (run scripts/ensure-postgres)")


def restart_postgres(*, port: int, down_seconds: float) -> float:
    """Stop the server (fast: sessions are cut), keep it down, start it; returns the seconds it was down."""
    version, name = _postgres_cluster(port)
    started = time.monotonic()
    try:
        subprocess.run(
            _as_root(["pg_ctlcluster", version, name, "stop", "-m", "fast"]), check=True, timeout=60
        )
        time.sleep(down_seconds)
    finally:  # the server is shared: it comes back whatever happened
        subprocess.run(_as_root(["pg_ctlcluster", version, name, "start"]), check=True, timeout=60)
    _close_scratch_connections()  # the test's own connection went with the server
    wait_until("PostgreSQL to accept connections", lambda: _postgres_answers(port), timeout=60, interval=0.2)
    return time.monotonic() - started


def _postgres_answers(port: int) -> bool:
    ready = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], timeout=10)
    return ready.returncode == 0


def restart_redis(*, port: int, down_seconds: float) -> float:
    """`shutdown nosave` (its data is gone, as after a crash without persistence), then the same server
    scripts/ensure-redis starts; returns the seconds it was down."""
    started = time.monotonic()
    try:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=30)
        wait_until("Redis to stop", lambda: not _redis_answers(port), timeout=10, interval=0.1)
        time.sleep(down_seconds)
    finally:  # the server is shared: it comes back whatever happened
        if not _redis_answers(port):
            _start_redis(port)
    wait_until("Redis to answer", lambda: _redis_answers(port), timeout=30, interval=0.1)
    return time.monotonic() - started


def _redis_answers(port: int) -> bool:
    ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, timeout=10)
    return b"PONG" in ping.stdout


def _start_redis(port: int) -> None:
    """The server scripts/ensure-redis starts: loopback only, no persistence."""
    subprocess.run(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


# --- the stack ----------------------------------------------------------------------------------------
@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    simulator_env: dict[str, str]
    app_url: str
    simulator_port: int
    postgres_port: int
    redis_port: int
    shopper_token: str
    staff_token: str
    staff_password: str
    product_id: int
    cluster: Cluster
    web: harness.Server | None = None
    _simulator: contextlib.ExitStack | None = None
    simulator: harness.Server | None = None
    _phones: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**6)))

    # --- processes ---------------------------------------------------------------------------------
    def start_simulator(self) -> None:
        if self._simulator is not None:
            return
        self._simulator = contextlib.ExitStack()
        self.simulator = self._simulator.enter_context(
            harness.gunicorn(
                "daraja-simulator",
                self.simulator_env,
                self.workdir,
                workers=1,
                threads=8,
                port=self.simulator_port,
            )
        )

    def stop_simulator(self, *, crash: bool = False) -> None:
        """Stopped (a clean shutdown, its pending deliveries posted), or crashed: SIGKILL, and the
        callbacks and Results it still owed are lost, as when Daraja drops them."""
        if self._simulator is None:
            return
        if crash and self.simulator.process.poll() is None:
            processes = [self.simulator.process.pid, *descendants(self.simulator.process.pid)]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.simulator.process.pid, signal.SIGKILL)
            self.simulator.process.wait(timeout=STOP_TIMEOUT)
            # Gone for good, sockets closed, before anyone calls it: a request sent into a dying process
            # is one whose outcome nobody knows (and rightly goes to review).
            wait_until(
                "the simulator to die", lambda: not any(map(alive, processes)), timeout=10, interval=0.05
            )
        self._simulator.close()
        self._simulator = self.simulator = None

    # --- http --------------------------------------------------------------------------------------
    def next_phone(self) -> str:
        """A number of its own for every order (the simulator pays any number it does not list)."""
        return f"2547221{next(self._phones):05d}"

    def place_order(self, phone: str | None = None, *, session: requests.Session | None = None, timeout=10.0):
        body = {
            "items": [{"productId": self.product_id, "quantity": 1}],
            "shipping": {"fullName": "Chaos Shopper", "address": "1 Loop Rd", "city": "Nairobi"},
            "payment": {"method": "mpesa", "phone": phone or self.next_phone()},
        }
        return (session or requests).post(
            self.app_url + "/api/v1/orders",
            json=body,
            headers={
                "Authorization": f"Bearer {self.shopper_token}",
                "Idempotency-Key": secrets.token_hex(16),
            },
            timeout=timeout,
        )

    def retry_payment(self, payment_id: int, *, phone: str | None = None) -> dict:
        response = requests.post(
            f"{self.app_url}/api/v1/payments/{payment_id}/retry",
            json={"phone": phone} if phone else {},
            headers={"Authorization": f"Bearer {self.shopper_token}"},
            timeout=15,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def request_refund(self, payment_id: int, *, amount: int | None = None):
        body = {"reason": "Chaos run refund"}
        if amount is not None:
            body["amount"] = amount
        response = requests.post(
            f"{self.app_url}/api/v1/payments/{payment_id}/refunds",
            json=body,
            headers={"Authorization": f"Bearer {self.staff_token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def callback_path(self) -> str:
        return f"/hooks/daraja/stk/{self.env['MPESA_CALLBACK_TOKEN']}/"

    def staff_session(self) -> requests.Session:
        """A signed-in admin session, as a browser gets it from the sign-in form."""
        session = requests.Session()
        page = session.get(self.app_url + "/admin/login/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = session.post(
            self.app_url + "/admin/login/?next=/admin/",
            data={"username": STAFF_USERNAME, "password": self.staff_password, "csrfmiddlewaretoken": csrf},
            headers={"Referer": self.app_url + "/admin/login/"},
            timeout=10,
        )
        assert response.ok and "sessionid" in session.cookies, response.status_code
        return session

    def simulator_stats(self, api: str, since: float) -> int:
        """Requests `api` received at the simulator since `since` (epoch seconds)."""
        response = requests.get(
            f"http://{harness.LOOPBACK}:{self.simulator_port}/simulator/daraja/stats",
            params={"since": int(since) - 1, "until": int(time.time()) + 1, "api": api},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["apis"][api]["requests"]

    # --- schedules -----------------------------------------------------------------------------------
    def run_schedules_now(self, *names: str) -> None:
        """Make these schedules due now: the cluster's scheduler (every 15 s) runs them next. It only
        shortens their minute-long interval; the tasks are the ones the schedules run anyway."""
        from django.utils import timezone
        from django_q.models import Schedule

        updated = Schedule.objects.using(ALIAS).filter(name__in=names).update(next_run=timezone.now())
        assert updated == len(names), f"schedules missing: {names}"


def _seed(env: dict[str, str], password: str) -> dict:
    script = f"""
import json
from django.contrib.auth import get_user_model
from backoffice.services import api_token_issue
from orders.models import Product
product = Product.objects.create(sku="CHAOS-1", name="Chaos item", price={PRODUCT_PRICE})
get_user_model().objects.create_superuser({STAFF_USERNAME!r}, "staff@example.com", {password!r})
_t, shopper, _ = api_token_issue(username="chaos-shopper")
_t, staff, _ = api_token_issue(username={STAFF_USERNAME!r}, scopes=["orders", "refunds"])
print("SEED " + json.dumps({{"product": product.pk, "shopper": shopper, "staff": staff}}))
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out.split("SEED ", 1)[1])


def _use_scratch_database(url: str) -> None:
    """The ORM alias `chaos` for the scratch database (no persistent connection: servers restart)."""
    import environ
    from django.db import connections

    config = environ.Env.db_url_config(url)
    config["CONN_MAX_AGE"] = 0
    connections.settings[ALIAS] = connections.configure_settings({"default": config})["default"]


def _environment(*, database_url: str, redis_url: str, app_port: int, simulator_port: int) -> dict[str, str]:
    """Every setting that could reach outside the machine or change the code path is pinned (a developer's
    .env is read with overwrite=False); the waits that the sweepers honour are shortened to seconds."""
    seconds = {
        "SIMULATOR_CALLBACK_DELAY": "2",
        # The status sweeper: first STK Query 10 s after the push, then every 2..5 s; the deadline 20 s.
        "MPESA_FIRST_QUERY_DELAY": "10",
        "MPESA_QUERY_INTERVAL": "2",
        "MPESA_QUERY_INTERVAL_MAX": "5",
        "MPESA_PAYMENT_DEADLINE": "20",
        # A push that never got an answer recorded (the process or its cache went away mid-push) fails after 20 s.
        "MPESA_PENDING_TIMEOUT": "20",
        "MPESA_READ_TIMEOUT": "10",
        # Inbox rows left `received` by a dead worker: applied again after 5 s.
        "INBOX_RETRY_AFTER": "5",
        # Refunds: `submitting` without an answer for 15 s becomes unknown, then Transaction Status.
        "REFUND_SUBMITTING_TIMEOUT": "15",
        "REFUND_RESULT_TIMEOUT": "30",
        "REFUND_STATUS_INTERVAL": "5",
        "REFUND_STATUS_INTERVAL_MAX": "10",
        # Notifications: a claim 10 s old lost its worker.
        "NOTIFICATIONS_SENDING_STALE_SECONDS": "10",
        "NOTIFICATIONS_RETRY_BASE_SECONDS": "5",
    }
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "600",
        "DATABASE_CONN_HEALTH_CHECKS": "true",
        "REDIS_URL": redis_url,
        "MPESA_ENVIRONMENT": "simulator",
        "MPESA_CALLBACK_APPLY": "worker",
        "DJANGO_DEBUG": "false",
        "DJANGO_BEHIND_PROXY": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MPESA_CALLBACK_ALLOWED_IPS": "",
        "MPESA_CALLBACK_TOKEN": "chaos" + secrets.token_hex(16),
        "MPESA_BASE_URL": f"http://{harness.LOOPBACK}:{simulator_port}/simulator/daraja",
        "MPESA_CALLBACK_BASE_URL": f"http://{harness.LOOPBACK}:{app_port}",
        "MPESA_RESULT_BASE_URL": "",
        "MPESA_B2C_SHORTCODE": "600000",
        "MPESA_PULL_TRANSACTIONS_ENABLED": "false",
        "SMS_BACKEND": "local",
        "EMAIL_ESP": "console",
        "EMAIL_FILE_PATH": "",
        "Q_SYNC": "0",
        "Q_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
        **seconds,
    }


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    app_port, simulator_port = harness.free_port(), harness.free_port()
    postgres_port = int(POSTGRES_URL.rsplit(":", 1)[1].split("/")[0])
    redis_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(harness.scratch_postgres(POSTGRES_URL))
        redis_url = stack.enter_context(harness.scratch_redis(REDIS_URL))
        env = _environment(
            database_url=database_url, redis_url=redis_url, app_port=app_port, simulator_port=simulator_port
        )
        simulator_env = {
            **env,
            "DATABASE_URL": f"sqlite:///{workdir / 'simulator.sqlite3'}",
            "DATABASE_CONN_MAX_AGE": "0",
            "REDIS_URL": "",
            "SIMULATOR_REFUND_LATENCY_MS": os.environ.get("CHAOS_REFUND_LATENCY_MS", "4000"),
        }
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            migrations = [
                pool.submit(harness.migrate_other_database, env, database_url),
                pool.submit(harness.migrate_other_database, simulator_env, simulator_env["DATABASE_URL"]),
                # Production settings serve hashed static files from a manifest: without it the admin's
                # pages fail, as they would on a host where nobody ran collectstatic.
                pool.submit(_collect_static, env),
            ]
            for migration in migrations:
                migration.result()
        password = secrets.token_urlsafe(16)
        seeded = _seed(env, password)
        print(
            f"chaos: scratch database migrated and seeded in {time.monotonic() - started:.1f} s", flush=True
        )
        _use_scratch_database(database_url)
        cluster = Cluster(env={**env, "LOG_LEVEL": "INFO"}, log_path=workdir / "qcluster.log")
        chaos = Stack(
            workdir=workdir,
            env=env,
            simulator_env=simulator_env,
            app_url=f"http://{harness.LOOPBACK}:{app_port}",
            simulator_port=simulator_port,
            postgres_port=postgres_port,
            redis_port=redis_port,
            shopper_token=seeded["shopper"],
            staff_token=seeded["staff"],
            staff_password=password,
            product_id=seeded["product"],
            cluster=cluster,
        )
        stack.callback(_close_scratch_connections)
        chaos.start_simulator()
        stack.callback(chaos.stop_simulator)
        chaos.web = stack.enter_context(
            harness.gunicorn("app", env, workdir, workers=2, threads=8, port=app_port)
        )
        cluster.start()
        stack.callback(cluster.stop)
        yield chaos


def _close_scratch_connections() -> None:
    from django.db import connections

    with contextlib.suppress(Exception):
        connections[ALIAS].close()


def nairobi_timestamp() -> int:
    nairobi = dt.timezone(dt.timedelta(hours=3))
    return int(dt.datetime.now(nairobi).strftime("%Y%m%d%H%M%S"))


def keep_logs(workdir: Path, destination: str | None) -> None:
    """Copy the servers' logs somewhere CI keeps them, when asked to."""
    if destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, Path(destination) / log.name)


def _collect_static(env: dict[str, str]) -> None:
    subprocess.run(  # noqa: S603 - our own venv's python, fixed arguments
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=harness.ROOT,
        env=env,
        check=True,
        timeout=300,
    )
