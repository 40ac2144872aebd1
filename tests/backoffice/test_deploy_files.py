"""deploy/ holds what production runs: the checks here need no nginx, systemd or network.

scripts/check-deploy (CI) runs the same files for real: gunicorn --check-config, nginx in front of a test
backend, systemd-analyze verify.
"""

import importlib.util
import inspect
import re
import secrets
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from gunicorn.config import Config

from backoffice.gunicorn_logging import MaskingLogger

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX_SITE = DEPLOY / "nginx" / "backoffice.conf"
# Every URL with a secret path segment, as the app builds it.
SECRET_ROUTES = (
    "payments:stk-callback",
    "payments:daraja-result",
    "payments:daraja-queue-timeout",
    "notifications:sms-delivery-report",
)


def gunicorn_config(monkeypatch, **environ: str) -> Config:
    """deploy/gunicorn.conf.py read as gunicorn reads it, every value through gunicorn's validators."""
    for name in ("GUNICORN_BIND", "GUNICORN_WORKERS", "GUNICORN_THREADS", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", DEPLOY / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = Config()
    unknown = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if name not in cfg.settings:
            unknown.append(name)
            continue
        cfg.set(name, value)
    assert not unknown, f"not gunicorn settings (a typo is silently ignored by gunicorn): {unknown}"
    return cfg


def unit(name: str) -> dict[str, list[str]]:
    """`Section.Key` -> values of a systemd unit in deploy/systemd/ (a key may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def nginx_mask(text: str, variable: str) -> str:
    """What nginx's `map <variable> ...` in the site makes of `text` (its regex run by Python's re)."""
    site = NGINX_SITE.read_text()
    body = re.search(rf"map {re.escape(variable)} \$\w+ \{{(.*?)\n\}}", site, re.S)
    assert body, f"no map on {variable} in {NGINX_SITE}"
    entries = re.findall(r'^\s*"~([^"]+)"\s+"([^"]+)";', body.group(1), re.M)
    assert len(entries) == 1, body.group(1)
    pattern, replacement = entries[0]
    match = re.search(pattern.replace("(?<", "(?P<"), text)
    if not match:
        return text
    return re.sub(r"\$\{(\w+)\}", lambda name: match.group(name.group(1)), replacement)


def nginx_directives(name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", NGINX_SITE.read_text(), re.M)


def nginx_location(path: str) -> str:
    block = re.search(rf"location {re.escape(path)} \{{(.*?)\}}", NGINX_SITE.read_text(), re.S)
    assert block, f"no location {path} in {NGINX_SITE}"
    return block.group(1)


def nginx_bytes(size: str) -> int:
    number, unit_ = re.fullmatch(r"(\d+)([kKmMgG]?)", size).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit_.lower()]


# --- gunicorn -----------------------------------------------------------------------------------------
def test_gunicorn_config_loads_with_the_masking_logger_on_loopback(monkeypatch):
    cfg = gunicorn_config(monkeypatch)

    assert cfg.logger_class is MaskingLogger
    assert cfg.address == [("127.0.0.1", 8000)]
    assert cfg.worker_class_str == "gthread"
    assert cfg.workers >= 3 and cfg.threads >= 2
    assert cfg.accesslog == "-"
    assert cfg.max_requests > 0 and cfg.max_requests_jitter > 0
    assert cfg.forwarded_allow_ips == ["127.0.0.1", "::1"]
    assert cfg.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}


def test_gunicorn_config_takes_address_and_processes_from_the_environment(monkeypatch):
    cfg = gunicorn_config(
        monkeypatch, GUNICORN_BIND="127.0.0.1:8123", GUNICORN_WORKERS="2", GUNICORN_THREADS="8"
    )

    assert cfg.address == [("127.0.0.1", 8123)]
    assert (cfg.workers, cfg.threads) == (2, 8)


# --- nginx --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", SECRET_ROUTES)
def test_nginx_access_log_masks_the_secret_of_every_hook_url(route):
    token = secrets.token_hex(20)
    path = reverse(route, kwargs={"token": token})

    masked = nginx_mask(f"{path}?attempt=2", "$request_uri")
    referer = nginx_mask(f"https://backoffice.example.co.ke{path}", "$http_referer")

    assert masked == path.replace(token, "***") + "?attempt=2"
    assert referer == f"https://backoffice.example.co.ke{path.replace(token, '***')}"


def test_nginx_leaves_other_paths_as_they_are():
    for path in ("/admin/payments/payment/?q=1", "/api/v1/payments/mpesa/callback", "/hooks/daraja/"):
        assert nginx_mask(path, "$request_uri") == path


def test_nginx_logs_only_in_the_masked_format():
    site = NGINX_SITE.read_text()
    log_format = re.search(r"log_format backoffice_masked (.*?);", site, re.S).group(1)

    assert "$backoffice_masked_uri" in log_format and "$backoffice_masked_referer" in log_format
    for raw in ("$request ", "$request_uri", "$uri", "$http_referer", "$args", "$query_string"):
        assert raw not in log_format.replace("$request_method", "")
    access_logs = nginx_directives("access_log")
    assert access_logs and all(line.endswith(" backoffice_masked") for line in access_logs)
    # nginx cannot mask its error log: under /hooks/ it logs only what is critical.
    assert re.search(r"^\s*error_log \S+ crit;", nginx_location("/hooks/"), re.M)


def test_nginx_forwards_the_address_the_app_trusts():
    # common.net.client_ip takes the LAST X-Forwarded-For hop: nginx sends exactly one, the peer's address.
    headers = dict(line.split(None, 1) for line in nginx_directives("proxy_set_header"))

    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert headers["X-Forwarded-Proto"] == "$scheme"


def test_nginx_body_limits_let_the_app_answer_callbacks_and_take_statements():
    hooks = re.search(r"client_max_body_size (\S+);", nginx_location("/hooks/")).group(1)
    admin = re.search(r"client_max_body_size (\S+);", nginx_location("/admin/")).group(1)

    assert nginx_bytes(hooks) > settings.MPESA_CALLBACK_MAX_BYTES
    assert nginx_bytes(admin) > settings.STATEMENT_IMPORT_MAX_BYTES


# --- systemd ------------------------------------------------------------------------------------------
def test_worker_unit_stops_the_cluster_through_its_main_process_after_the_longest_task():
    worker = unit("backoffice-worker.service")
    longest_task = max(
        settings.Q_CLUSTER["timeout"], settings.REPORT_TASK_TIMEOUT, settings.EXPORT_TASK_TIMEOUT
    )

    assert worker["Service.KillMode"] == ["mixed"]
    assert worker["Service.KillSignal"] == ["SIGTERM"]
    assert int(worker["Service.TimeoutStopSec"][0]) > longest_task
    assert worker["Service.ExecStart"][0].endswith("manage.py qcluster")
    assert worker["Service.Restart"] == ["on-failure"]


def test_web_unit_runs_gunicorn_with_the_deploy_config_and_outlasts_its_graceful_timeout(monkeypatch):
    web = unit("backoffice-web.service")
    cfg = gunicorn_config(monkeypatch)

    assert "-c deploy/gunicorn.conf.py" in web["Service.ExecStart"][0]
    assert int(web["Service.TimeoutStopSec"][0]) > cfg.graceful_timeout
    assert web["Service.Restart"] == ["on-failure"]


def test_every_unit_reads_the_same_settings_as_the_same_user():
    units = [unit(path.name) for path in sorted((DEPLOY / "systemd").glob("*.service"))]

    assert len(units) >= 2
    for found in units:
        assert found["Service.EnvironmentFile"] == ["/etc/backoffice/env"]
        assert found["Service.User"] == ["backoffice"]
        assert found["Service.WorkingDirectory"] == ["/srv/backoffice"]
