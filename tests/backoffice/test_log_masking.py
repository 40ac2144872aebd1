"""No log line carries the callback or delivery-report secret (faults.md #40), whoever writes it."""

import io
import json
import logging
import secrets

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from backoffice.log_masking import SecretMaskingFilter, mask_secrets
from notifications.hooks import webhook_token
from payments.callback_urls import callback_token
from tests.conftest import stk_callback

pytestmark = pytest.mark.django_db


def routes_with_a_token(resolver=None, namespace: str = "") -> list[str]:
    """Names of every route whose path carries a `token`: the secret-bearing ones."""
    found = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += routes_with_a_token(entry, inner)
        elif isinstance(entry, URLPattern) and "token" in entry.pattern.converters and entry.name:
            found.append(f"{namespace}{entry.name}")
    return found


@pytest.fixture(params=["configured", "derived"])
def url_secrets(request, settings):
    """The two URL secrets, set explicitly or (empty settings) derived from SECRET_KEY."""
    if request.param == "configured":
        settings.MPESA_CALLBACK_TOKEN = "cb" + secrets.token_hex(19)
        settings.NOTIFICATIONS_WEBHOOK_TOKEN = "dr" + secrets.token_hex(19)
    else:
        settings.MPESA_CALLBACK_TOKEN = ""
        settings.NOTIFICATIONS_WEBHOOK_TOKEN = ""
    settings.MPESA_CALLBACK_ALLOWED_IPS = []
    return callback_token(), webhook_token()


@pytest.fixture
def console():
    """What the handlers configured by settings.LOGGING write, captured."""
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if type(handler) is logging.StreamHandler  # not pytest's capture handlers
    ]
    assert handlers, "settings.LOGGING configures no console handler on the root logger"
    buffer = io.StringIO()
    previous = [handler.setStream(buffer) for handler in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


def test_every_secret_bearing_route_is_masked_by_its_shape_alone():
    routes = routes_with_a_token()
    unknown = secrets.token_hex(20)  # not a configured value: only the path rule can mask it

    assert {"payments:stk-callback", "payments:daraja-result", "notifications:sms-delivery-report"} <= set(
        routes
    )
    for route in routes:
        path = reverse(route, kwargs={"token": unknown})
        masked = mask_secrets(f'"POST {path}?x=1 HTTP/1.1" 404')
        assert unknown not in masked, route
        assert "/***/" in masked or "/***?" in masked, route


def test_configured_secret_values_are_masked_wherever_they_appear(url_secrets):
    callback, delivery = url_secrets

    masked = mask_secrets(f"token={callback} and https://x.example/other/{delivery}")

    assert callback not in masked and delivery not in masked
    assert masked == "token=*** and https://x.example/other/***"


@pytest.mark.parametrize(
    "name", ["MPESA_CONSUMER_SECRET", "MPESA_PASSKEY", "MPESA_INITIATOR_PASSWORD", "AFRICASTALKING_API_KEY"]
)
def test_credentials_are_masked_too(settings, name):
    value = secrets.token_hex(16)
    setattr(settings, name, value)

    assert mask_secrets(f"Daraja said: bad credential {value}") == "Daraja said: bad credential ***"


def test_callbacks_and_delivery_reports_leave_no_secret_in_any_log(
    url_secrets, caplog, console, fake_daraja, monkeypatch
):
    callback, delivery = url_secrets
    caplog.set_level(logging.DEBUG)
    client = Client(raise_request_exception=False)
    stk = reverse("payments:stk-callback", kwargs={"token": callback})
    report = reverse("notifications:sms-delivery-report", kwargs={"token": delivery})
    near_miss = callback[:-1] + ("0" if callback[-1] != "0" else "1")
    body = json.dumps(stk_callback("ws_CO_never_created"))

    answers = [
        client.post(stk, body, content_type="application/json").status_code,  # valid, unmatched
        client.post(stk, "{not json", content_type="application/json").status_code,
        client.get(stk).status_code,
        client.post(stk.replace(callback, near_miss), body, content_type="application/json").status_code,
        client.get(reverse("payments:daraja-result", kwargs={"token": callback})).status_code,
        client.post(report, {"id": "ATXid_unknown", "status": "Success"}).status_code,
        client.post(report, {"status": "Success"}).status_code,  # "Bad Request: <path>"
        client.get(report).status_code,  # "Method Not Allowed (GET): <path>"
        client.post(report.replace(delivery, "wrong"), {"id": "x", "status": "Success"}).status_code,
    ]

    def crash(**kwargs):
        raise RuntimeError(f"cannot store the request to {stk}")

    monkeypatch.setattr("payments.inbox.inbox_store", crash)
    answers.append(client.post(stk, body, content_type="application/json").status_code)

    assert answers == [200, 400, 405, 404, 405, 200, 400, 405, 404, 500]
    logged = {
        "caplog": caplog.text,
        "messages": "\n".join(record.getMessage() for record in caplog.records),
        "console": console.getvalue(),
    }
    for where, text in logged.items():
        assert callback not in text and delivery not in text, where
        assert near_miss not in text, where
    assert "/hooks/sms/delivery/***/" in logged["console"]  # the lines were written, masked
    assert "Internal Server Error: /hooks/daraja/stk/***/" in logged["console"]
    assert "RuntimeError: cannot store the request to /hooks/daraja/stk/***/" in logged["console"]


def test_the_task_cluster_log_is_masked(url_secrets, console):
    callback, _ = url_secrets
    url = "https://backoffice.example.co.ke" + reverse("payments:stk-callback", kwargs={"token": callback})

    logging.getLogger("django-q").error("Failed 'deliver' - ConnectionError: %s", url)

    assert "Failed 'deliver' - ConnectionError: https://backoffice.example.co.ke/hooks/daraja/stk/***/" in (
        console.getvalue()
    )


def test_every_handler_django_configured_masks_secrets():
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    unmasked = {
        f"{logger.name}: {handler!r}"
        for logger in loggers
        for handler in logger.handlers
        # pytest's capture handlers and libraries' NullHandlers write nothing of ours
        if not type(handler).__module__.startswith("_pytest")
        and not isinstance(handler, logging.NullHandler)
        and not any(isinstance(f, SecretMaskingFilter) for f in handler.filters)
    }

    assert unmasked == set()
