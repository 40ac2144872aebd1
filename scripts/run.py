"""Supervisor for `make run`: the web server (with the built-in Daraja simulator) and the django-q2 worker.

Run with the venv's Python after migrate/collectstatic/seed_demo (the Makefile does that). Stdlib only.

`--prod` (`make run-prod`) runs the production-like topology instead: gunicorn with deploy/gunicorn.conf.py
(GUNICORN_WORKERS processes, default 2) and QCLUSTERS `manage.py qcluster` processes (default 2), against
the PostgreSQL and Redis named by DATABASE_URL and REDIS_URL (the Makefile sets them).

- Each child gets its own session, so a terminal Ctrl-C reaches only this supervisor.
- Ctrl-C / SIGTERM: SIGTERM to each child's MAIN pid (never its group: qcluster hangs if its workers are
  killed under it), up to STOP_TIMEOUT seconds' grace, then SIGKILL to the child's process group for
  whatever is left. Exit 0.
- A child that exits on its own stops the others, and this script exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin/ (this script is run with the venv's python)
PORT = os.environ.get("PORT", "8000")
BASE = f"http://127.0.0.1:{PORT}"
READY_URL = f"{BASE}/admin/login/"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

CURL_ORDER = """\
curl -X POST BASE/api/v1/orders -H "Content-Type: application/json" \\
  -H "Authorization: Bearer TOKEN" -d '{"items": [{"productId": 1, "quantity": 1, "price": 10.00}],
  "shipping": {"fullName": "Test User", "address": "123 Test St", "city": "Nairobi",
  "postalCode": "00100", "phone": "+254700000000"},
  "payment": {"method": "mpesa", "phone": "+254708374149"}}'"""
CURL_STATUS = 'curl BASE/api/v1/payments/<PAYMENT_ID>/status -H "Authorization: Bearer TOKEN"'
# The logger class masks the secret path segment of callback URLs in the access and error logs.
# (--prod: deploy/gunicorn.conf.py sets it, with the rest of production's gunicorn settings.)
GUNICORN_ARGS = (
    f"-b 127.0.0.1:{PORT} -w 2 --threads 8 --timeout 60 --access-logfile - "
    "--logger-class backoffice.gunicorn_logging.MaskingLogger"
).split()

# --prod: gunicorn processes (GUNICORN_WORKERS) and qcluster processes (QCLUSTERS) unless set. The
# clusters share one name, so they share the Redis queue; the scheduler's row locks run each schedule once.
PROD_WEB_PROCESSES = "2"
PROD_QCLUSTERS = "2"

signalled: list[int] = []


def on_signal(signum: int, _frame) -> None:
    signalled.append(signum)


def say(msg: str) -> None:
    print(f"[run] {msg}", file=sys.stderr, flush=True)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(name: str, argv: list[str], env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    say(f"starting {name}: {' '.join(argv)}")
    return name, subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603


def stop_all(children: list[tuple[str, subprocess.Popen]]) -> None:
    for name, proc in children:
        if proc.poll() is None:
            say(f"stopping {name} (SIGTERM to pid {proc.pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)  # main pid only, not the group
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and any(p.poll() is None for _, p in children):
        time.sleep(0.1)
    for name, proc in children:
        # The group id is the child's pid (start_new_session). Kill leftovers: the main process if it
        # did not stop in time, or orphaned workers/threads' processes if it did.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                say(f"{name} did not stop within {STOP_TIMEOUT:.0f}s: killed its process group")
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def check_children(children: list[tuple[str, subprocess.Popen]]) -> str | None:
    for name, proc in children:
        code = proc.poll()
        if code is not None:
            return f"{name} exited unexpectedly with code {code}"
    return None


def probe() -> str | None:
    """None when the web server answers the admin login page, else a short reason."""
    try:
        with urllib.request.urlopen(READY_URL, timeout=2) as resp:  # noqa: S310 (fixed http URL)
            return None if resp.status < 400 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        return str(getattr(exc, "reason", exc))


def read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def banner(topology: list[str], manage_env: str) -> str:
    token = read(ROOT / "var" / "demo_api_token")
    logins = read(ROOT / "var" / "demo_logins.txt")
    bearer = token or "<TOKEN>"
    lines = [
        "",
        "=" * 78,
        "  M-Pesa back office is running (simulator mode). Ctrl-C stops it.",
        *topology,
        "=" * 78,
        f"  Admin:          {BASE}/admin/",
        "  Demo logins:",
        *(f"    {line}" for line in (logins or "see seed_demo output above").splitlines()),
        f"  Simulator:      {BASE}/simulator/daraja/",
        f"  API docs:       {BASE}/api/v1/docs",
        f"  API token:      {token or 'missing: run seed_demo --token-file var/demo_api_token'}",
        "",
        "  Create an order and start an STK push:",
        "",
        CURL_ORDER.replace("BASE", BASE).replace("TOKEN", bearer),
        "",
        "  Then poll the payment (PAYMENT_ID from the response above):",
        "",
        CURL_STATUS.replace("BASE", BASE).replace("TOKEN", bearer),
        "",
        "  Close the day: write the simulator's M-PESA statement (with a paybill payment nobody recorded),",
        "  then import it as manager under Reconciliation > Statement imports:",
        "",
        f"{manage_env}.venv/bin/python manage.py simulator_statement --paybill 254712345678:750",
        "=" * 78,
        "",
    ]
    return "\n".join(lines)


def prod_commands(env: dict[str, str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """--prod's children, and the banner's lines about them."""
    web_processes = env.setdefault("GUNICORN_WORKERS", PROD_WEB_PROCESSES)
    env["GUNICORN_BIND"] = f"127.0.0.1:{PORT}"
    qclusters = int(env.get("QCLUSTERS") or PROD_QCLUSTERS)
    gunicorn = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "backoffice.wsgi:application"]
    qcluster = [str(BIN / "python"), "manage.py", "qcluster"]
    commands = [("web", gunicorn), *((f"qcluster-{n}", qcluster) for n in range(1, qclusters + 1))]
    topology = [
        f"  Production-like topology: PostgreSQL, Redis (cache and task broker), {web_processes} gunicorn",
        f"  web processes (deploy/gunicorn.conf.py), {qclusters} qcluster task processes.",
        "  PostgreSQL and Redis keep running after Ctrl-C; the next `make run-prod` reuses them.",
    ]
    return commands, topology


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the back office until Ctrl-C.")
    parser.add_argument(
        "--prod",
        action="store_true",
        help="the production-like topology (make run-prod): gunicorn with deploy/gunicorn.conf.py and "
        "several qcluster processes, on PostgreSQL and Redis",
    )
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    if port_in_use(int(PORT)):
        say(f"port {PORT} on 127.0.0.1 is already in use (another `make run`?). Stop it or set PORT=...")
        return 1

    env = dict(os.environ)
    env.setdefault("SITE_BASE_URL", BASE)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if args.prod:
        database_url, redis_url = env.get("DATABASE_URL", ""), env.get("REDIS_URL", "")
        if not (database_url.startswith(("postgres://", "postgresql://")) and redis_url):
            say("--prod needs DATABASE_URL (PostgreSQL) and REDIS_URL: start it with `make run-prod`")
            return 1
        commands, topology = prod_commands(env)
        # The simulator's ledger is in the cache (Redis here), so the statement command needs it.
        manage_env = f"DATABASE_URL={database_url} REDIS_URL={redis_url} "
    else:
        gunicorn = [str(BIN / "gunicorn"), "backoffice.wsgi:application", *GUNICORN_ARGS]
        commands = [("web", gunicorn), ("qcluster", [str(BIN / "python"), "manage.py", "qcluster"])]
        topology, manage_env = [], ""

    children: list[tuple[str, subprocess.Popen]] = []
    try:
        for name, command in commands:
            children.append(start(name, command, env))

        # Wait for the web server, watching the children and the signals meanwhile.
        deadline = time.monotonic() + READY_TIMEOUT
        reason = "not started"
        while True:
            if signalled:
                say("interrupted before the server was ready")
                stop_all(children)
                return 0
            died = check_children(children)
            if died:
                say(f"{died}; stopping everything")
                stop_all(children)
                return 1
            reason = probe()
            if reason is None:
                break
            if time.monotonic() > deadline:
                say(f"{READY_URL} did not answer within {READY_TIMEOUT:.0f}s (last: {reason}); stopping")
                stop_all(children)
                return 1
            time.sleep(0.5)

        print(banner(topology, manage_env), flush=True)

        while not signalled:
            died = check_children(children)
            if died:
                say(f"{died}; stopping the others")
                stop_all(children)
                return 1
            time.sleep(0.2)
        say(f"got {signal.Signals(signalled[0]).name}; shutting down")
        stop_all(children)
        say("stopped")
        return 0
    except BaseException:
        stop_all(children)
        raise


if __name__ == "__main__":
    sys.exit(main())
