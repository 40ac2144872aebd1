"""Database or Redis unreachable: 503 with Retry-After (JSON for the API and Daraja's hooks), logged once."""

import json
import logging
from unittest import mock

import pytest
from django.db import IntegrityError, OperationalError
from django.http import HttpResponse
from django.test import Client
from django.urls import path, reverse
from redis.exceptions import ConnectionError as RedisConnectionError

from common import outage
from payments.callback_urls import callback_token
from payments.models import CallbackInbox, PaymentStatus
from tests.conftest import stk_callback


def database_down(request):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')


def redis_down(request):
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


def wrapped_database_down(request):
    try:
        database_down(request)
    except OperationalError as exc:
        raise RuntimeError("could not load the page") from exc


def integrity_bug(request):
    raise IntegrityError("duplicate key value violates unique constraint")


def fine(request):
    return HttpResponse("ok")


urlpatterns = [
    path("api/v1/boom", database_down),
    path("api/v1/cache", redis_down),
    path("hooks/daraja/boom", database_down),
    path("admin/boom", database_down),
    path("admin/wrapped", wrapped_database_down),
    path("admin/integrity", integrity_bug),
    path("admin/fine", fine),
]


class DatabaseDownAfterTheView:
    """Like a session saved after the view while the database is gone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        self.get_response(request)
        raise OperationalError("server closed the connection unexpectedly")


@pytest.fixture(autouse=True)
def outage_urls(settings):
    settings.ROOT_URLCONF = __name__


@pytest.fixture(autouse=True)
def fresh_outage_log(monkeypatch):
    monkeypatch.setattr(outage, "outage_log", outage._OutageLog())


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def test_database_down_under_the_api_answers_503_json_with_retry_after(client):
    response = client.get("/api/v1/boom")

    assert response.status_code == 503
    assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
    assert response.json()["error"]["code"] == "unavailable"


def test_redis_down_under_the_api_answers_503_json(client):
    response = client.get("/api/v1/cache")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def test_database_down_under_the_hooks_answers_503_json_so_daraja_retries(client):
    response = client.post("/hooks/daraja/boom", data="{}", content_type="application/json")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def test_database_down_on_a_page_answers_a_503_page(client):
    response = client.get("/admin/boom")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"Temporarily unavailable" in response.content
    assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)


def test_an_error_raised_from_a_database_error_is_an_outage_too(client):
    assert client.get("/admin/wrapped").status_code == 503


def test_an_integrity_error_is_a_bug_and_stays_a_500(client):
    assert client.get("/admin/integrity").status_code == 500


def test_database_down_inside_a_later_middleware_answers_503(client, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.DatabaseDownAfterTheView"]

    response = client.get("/admin/fine")

    assert response.status_code == 503
    assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)


def test_an_outage_is_logged_once_not_once_per_request(client, caplog):
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            assert client.get("/api/v1/boom").status_code == 503
            assert client.get("/admin/boom").status_code == 503

    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].name == "common.outage"
    assert "Database unavailable" in errors[0].getMessage()


def test_a_callback_that_cannot_be_stored_is_not_acknowledged(client, settings, fake_daraja, place_order):
    settings.ROOT_URLCONF = "backoffice.urls"
    _order, payment = place_order()
    body = json.dumps(stk_callback(payment.checkout_request_id, amount=float(payment.amount)))
    path_ = reverse("payments:stk-callback", kwargs={"token": callback_token()})

    with mock.patch.object(
        CallbackInbox.objects, "create", side_effect=OperationalError("the database system is shutting down")
    ):
        response = client.post(path_, data=body, content_type="application/json")

    assert response.status_code == 503
    assert not CallbackInbox.objects.exists()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INITIATED
