"""Production settings: `check --deploy` is clean with the documented environment; dev stays plain HTTP.

Settings are read once, at import, from the environment: each case runs Django in a child process with
exactly the environment given (a developer's .env is not read, so it cannot change the outcome).
"""

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = "backoffice.example.co.ke"
# What .env.example's "Production" section asks for, with made-up credentials.
PRODUCTION_ENV = {
    "MPESA_ENVIRONMENT": "production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": HOST,
    "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
    "DJANGO_BEHIND_PROXY": "true",
    "SITE_BASE_URL": f"https://{HOST}",
    "DATABASE_URL": "postgres://backoffice:secret@db.internal:5432/backoffice",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "MPESA_CONSUMER_KEY": "prod-consumer-key-0123456789",
    "MPESA_CONSUMER_SECRET": "prod-consumer-secret-0123456789",
    "MPESA_SHORTCODE": "4123456",
    "MPESA_PASSKEY": secrets.token_hex(32),
    "MPESA_CALLBACK_BASE_URL": f"https://{HOST}",
    "MPESA_CALLBACK_TOKEN": secrets.token_hex(20),
    "MPESA_CALLBACK_ALLOWED_IPS": "196.201.214.200,196.201.214.206,196.201.213.114,196.201.212.0/24",
    "MPESA_INITIATOR_NAME": "backofficeapi",
    "MPESA_SECURITY_CREDENTIAL": secrets.token_urlsafe(256),
    "SMS_BACKEND": "africastalking",
    "AFRICASTALKING_USERNAME": "duka",
    "AFRICASTALKING_API_KEY": secrets.token_hex(32),
    "NOTIFICATIONS_WEBHOOK_TOKEN": secrets.token_hex(20),
    "EMAIL_ESP": "postmark",
    "ANYMAIL_API_KEY": secrets.token_hex(16),
    "NOTIFICATIONS_FROM_EMAIL": "Duka Bora <noreply@duka.example>",
}
SSL_SETTINGS = (
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
)
# The environment given is the whole environment: .env (read with overwrite=False) is not consulted.
WITHOUT_DOTENV = "import environ; environ.Env.read_env = lambda *args, **kwargs: None; "
MANAGE = WITHOUT_DOTENV + (
    "import sys; from django.core.management import execute_from_command_line; "
    "execute_from_command_line(sys.argv)"
)
PRINT_SETTINGS = WITHOUT_DOTENV + (
    "import json, sys, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({name: getattr(settings, name, None) for name in sys.argv[1:]}))"
)


def run_python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={"DJANGO_SETTINGS_MODULE": "backoffice.settings", "PYTHONDONTWRITEBYTECODE": "1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_python(MANAGE, "check", "--deploy", "--fail-level", "WARNING", env=env)


def settings_of(env: dict[str, str], *names: str) -> dict:
    done = run_python(PRINT_SETTINGS, *names, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def warning_ids(output: str) -> set[str]:
    return set(re.findall(r"\((\w+\.W\d+)\)", output))


@pytest.mark.parametrize("environment", ["production", "sandbox"])
def test_check_deploy_passes_without_a_warning_with_the_documented_production_environment(environment):
    done = check_deploy({**PRODUCTION_ENV, "MPESA_ENVIRONMENT": environment})

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout + done.stderr
    assert not warning_ids(done.stdout + done.stderr)


def test_production_turns_on_https_redirect_hsts_and_secure_cookies():
    values = settings_of(PRODUCTION_ENV, *SSL_SETTINGS)

    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is False  # an opt-in: DJANGO_SECURE_HSTS_PRELOAD
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_an_empty_secure_ssl_as_in_env_example_means_the_default():
    values = settings_of({**PRODUCTION_ENV, "DJANGO_SECURE_SSL": ""}, "SECURE_SSL_REDIRECT")

    assert values["SECURE_SSL_REDIRECT"] is True


def test_secure_ssl_false_turns_the_ssl_settings_off_for_a_plain_http_rig():
    env = {**PRODUCTION_ENV, "DJANGO_SECURE_SSL": "false"}

    values = settings_of(env, *SSL_SETTINGS)
    done = check_deploy(env)

    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False and values["CSRF_COOKIE_SECURE"] is False
    # What .env.example says check --deploy reports then, and nothing else.
    assert done.returncode != 0
    assert warning_ids(done.stdout + done.stderr) == {
        "security.W004",
        "security.W008",
        "security.W012",
        "security.W016",
    }


def test_simulator_default_stays_plain_http_for_make_run():
    values = settings_of({}, "MPESA_ENVIRONMENT", "DEBUG", *SSL_SETTINGS)

    assert values["MPESA_ENVIRONMENT"] == "simulator"
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False and values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_PROXY_SSL_HEADER"] is None


def test_debug_outside_the_simulator_keeps_plain_http_unless_asked():
    env = {**PRODUCTION_ENV, "MPESA_ENVIRONMENT": "sandbox", "DJANGO_DEBUG": "true"}

    assert settings_of(env, "SECURE_SSL_REDIRECT")["SECURE_SSL_REDIRECT"] is False
    assert settings_of({**env, "DJANGO_SECURE_SSL": "true"}, "SECURE_SSL_REDIRECT")["SECURE_SSL_REDIRECT"]


def test_every_variable_of_the_production_environment_is_documented_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))

    assert set(PRODUCTION_ENV) - documented == set()
    assert {"DJANGO_SECURE_SSL", "DJANGO_SECURE_HSTS_SECONDS", "DJANGO_SECURE_HSTS_PRELOAD"} <= documented
