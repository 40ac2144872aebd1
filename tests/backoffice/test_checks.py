"""The deploy checks of backoffice/checks.py."""

import pytest
from django.core.checks import Tags, Warning, run_checks


def deploy_warnings() -> dict[str, Warning]:
    return {
        message.id: message
        for message in run_checks(tags=[Tags.security], include_deployment_checks=True)
        if message.id and message.id.startswith("backoffice.")
    }


@pytest.fixture
def outside_simulator(settings):
    settings.MPESA_ENVIRONMENT = "production"
    settings.MPESA_CALLBACK_BASE_URL = "https://backoffice.example.co.ke"
    settings.MPESA_RESULT_BASE_URL = ""
    settings.MPESA_CALLBACK_ALLOWED_IPS = []
    settings.SECURE_SSL_REDIRECT = True
    return settings


def test_legacy_callback_without_an_allowlist_outside_the_simulator_is_a_deploy_warning(outside_simulator):
    outside_simulator.MPESA_LEGACY_CALLBACK_ENABLED = True

    found = deploy_warnings()

    assert isinstance(found.get("backoffice.W001"), Warning)
    assert "MPESA_CALLBACK_ALLOWED_IPS" in found["backoffice.W001"].msg


@pytest.mark.parametrize(
    ("environment", "enabled", "allowed_ips"),
    [
        ("production", False, []),
        ("sandbox", False, []),
        ("production", True, ["196.201.214.200", "196.201.212.0/24"]),
        ("simulator", True, []),
    ],
)
def test_legacy_callback_warning_only_when_it_applies(outside_simulator, environment, enabled, allowed_ips):
    outside_simulator.MPESA_ENVIRONMENT = environment
    outside_simulator.MPESA_LEGACY_CALLBACK_ENABLED = enabled
    outside_simulator.MPESA_CALLBACK_ALLOWED_IPS = allowed_ips

    assert "backoffice.W001" not in deploy_warnings()


def test_legacy_callback_warning_is_a_deploy_check_only(outside_simulator):
    outside_simulator.MPESA_LEGACY_CALLBACK_ENABLED = True

    assert "backoffice.W001" not in {message.id for message in run_checks(tags=[Tags.security])}


def test_http_callback_url_with_ssl_redirect_is_a_deploy_warning(outside_simulator):
    outside_simulator.MPESA_ENVIRONMENT = "sandbox"
    outside_simulator.MPESA_LEGACY_CALLBACK_ENABLED = False
    outside_simulator.MPESA_RESULT_BASE_URL = "http://results.example.co.ke"

    assert "backoffice.W002" in deploy_warnings()

    outside_simulator.SECURE_SSL_REDIRECT = False
    assert "backoffice.W002" not in deploy_warnings()
