"""gunicorn's access and error logs never carry the callback or delivery-report secret.

One test drives MaskingLogger through gunicorn's own Logger.access() API; the other runs the real
gunicorn command line of `make run` (scripts/run.py) on a free loopback port and reads what it wrote.
"""

import contextlib
import datetime as dt
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from django.urls import reverse
from gunicorn.config import Config

from backoffice.gunicorn_logging import MaskingLogger
from backoffice.log_masking import SecretMaskingFilter
from notifications.hooks import webhook_token
from tests.conftest import stk_callback

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def masking_logger(tmp_path):
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    logger = MaskingLogger(cfg)
    yield logger
    for log in (logger.error_log, logger.access_log):  # process-wide loggers: leave them as found
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        for log_filter in list(log.filters):
            log.removeFilter(log_filter)


def access_line(logger: MaskingLogger, path: str, *, referer: str = "-") -> str:
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": path,
        "PATH_INFO": path.split("?")[0],
        "QUERY_STRING": path.partition("?")[2],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "196.201.214.200",
        "HTTP_REFERER": referer,
        "HTTP_USER_AGENT": "Apache-HttpClient/4.5.5",
    }
    response = SimpleNamespace(status="404 Not Found", headers=[("Content-Type", "text/html")], sent=179)
    request = SimpleNamespace(headers=[("REFERER", referer)])
    logger.access(response, request, environ, dt.timedelta(milliseconds=12))
    for handler in logger.access_log.handlers:
        handler.flush()
    return Path(logger.cfg.accesslog).read_text()


def test_access_log_shows_the_path_with_its_secret_segment_masked(masking_logger):
    token = secrets.token_hex(20)

    line = access_line(
        masking_logger,
        f"/hooks/daraja/stk/{token}/?retry=1",
        referer=f"https://x.example/hooks/sms/delivery/{token}/",
    )

    assert token not in line
    assert '"POST /hooks/daraja/stk/***/?retry=1 HTTP/1.1" 404 179' in line
    assert '"https://x.example/hooks/sms/delivery/***/"' in line


def test_access_log_masks_the_secret_in_any_access_log_format(masking_logger):
    token = secrets.token_hex(20)
    masking_logger.cfg.set("access_log_format", "%(U)s %({raw_uri}e)s %({referer}i)s %(r)s")

    line = access_line(masking_logger, f"/hooks/daraja/result/{token}/", referer=f"/hooks/a/b/{token}")

    assert token not in line
    assert line.count("***") == 4


def test_error_log_is_masked_and_the_filter_is_added_once_across_reloads(masking_logger):
    token = secrets.token_hex(20)

    masking_logger.setup(masking_logger.cfg)  # what SIGHUP does
    masking_logger.error("Error handling request /hooks/daraja/stk/%s/", token)
    for handler in masking_logger.error_log.handlers:
        handler.flush()

    assert "Error handling request /hooks/daraja/stk/***/" in Path(masking_logger.cfg.errorlog).read_text()
    for log in (masking_logger.error_log, masking_logger.access_log):
        assert sum(isinstance(f, SecretMaskingFilter) for f in log.filters) == 1


# --- the real thing ---------------------------------------------------------------------------------
def make_run_gunicorn_args() -> list[str]:
    """scripts/run.py's gunicorn arguments (logger class included), as `make run` passes them."""
    spec = importlib.util.spec_from_file_location("make_run_script", ROOT / "scripts" / "run.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return list(script.GUNICORN_ARGS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_server(tmp_path, settings):
    """`make run`'s gunicorn on a scratch SQLite database; yields (base URL, log path, the two secrets)."""
    secret_key = secrets.token_urlsafe(50)
    callback = "cb" + secrets.token_hex(19)
    settings.SECRET_KEY, settings.NOTIFICATIONS_WEBHOOK_TOKEN = secret_key, ""
    delivery = webhook_token()  # derived from the server's secret key, as when the setting is empty
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DJANGO_SECRET_KEY": secret_key,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_SSL": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "MPESA_ENVIRONMENT": "simulator",
        "SITE_BASE_URL": f"http://127.0.0.1:{port}",
        "MPESA_CALLBACK_BASE_URL": "",
        "MPESA_CALLBACK_TOKEN": callback,
        "MPESA_CALLBACK_ALLOWED_IPS": "",
        "NOTIFICATIONS_WEBHOOK_TOKEN": "",
        "SMS_BACKEND": "local",
        "EMAIL_ESP": "console",
        "Q_SYNC": "0",
        "LOG_LEVEL": "DEBUG",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    args = make_run_gunicorn_args()
    args[args.index("-b") + 1] = f"127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "backoffice.wsgi:application", *args, "-w", "1", "--log-level", "debug"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/api/v1/products", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield base, log_path, callback, delivery
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # the group id is the arbiter's pid (start_new_session)
        process.wait(timeout=10)


def test_real_gunicorn_logs_callbacks_and_delivery_reports_without_their_secrets(gunicorn_server):
    base, log_path, callback, delivery = gunicorn_server
    stk = base + reverse("payments:stk-callback", kwargs={"token": callback})
    report = base + reverse("notifications:sms-delivery-report", kwargs={"token": delivery})

    answers = [
        requests.post(stk, json=stk_callback("ws_CO_never_created"), timeout=10).status_code,
        requests.post(
            stk, data="{not json", headers={"Content-Type": "application/json"}, timeout=10
        ).status_code,
        requests.get(stk, timeout=10).status_code,
        requests.post(stk.replace(callback, callback[::-1]), json={}, timeout=10).status_code,
        requests.post(report, data={"id": "ATXid_unknown", "status": "Success"}, timeout=10).status_code,
        requests.post(
            report, data={"status": "Success"}, headers={"Referer": report}, timeout=10
        ).status_code,
        requests.get(report, timeout=10).status_code,
    ]
    time.sleep(0.3)  # let the worker flush its last lines
    logged = log_path.read_text()

    assert answers == [200, 400, 405, 404, 200, 400, 405]
    assert callback not in logged and callback[::-1] not in logged
    assert delivery not in logged
    assert '"POST /hooks/daraja/stk/***/ HTTP/1.1" 200' in logged  # gunicorn's access log
    assert '"GET /hooks/sms/delivery/***/ HTTP/1.1" 405' in logged
    assert "Method Not Allowed (GET): /hooks/sms/delivery/***/" in logged  # Django's request log
    assert "[DEBUG] POST /hooks/daraja/stk/***/" in logged  # gunicorn's error log, at debug level
