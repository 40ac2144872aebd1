"""Database or Redis unreachable: 503 with Retry-After (JSON for the API and Daraja's hooks), logged once."""

import json
import logging
from unittest import mock

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import IntegrityError, OperationalError, connection
from django.http import HttpResponse, HttpResponseBadRequest
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


def unrecognisable_failure(request):
    # What django-ninja raises when the lazy queryset it serialises fails: the error only as text.
    raise ValueError(
        "1 validation error for NinjaResponseSchema: Error extracting attribute: OperationalError"
    )


def signed_in_page(request):
    request.user.is_authenticated  # noqa: B018 - loads the session, as every admin page does
    return HttpResponse("ok")


urlpatterns = [
    path("api/v1/boom", database_down),
    path("api/v1/cache", redis_down),
    path("hooks/daraja/boom", database_down),
    path("admin/boom", database_down),
    path("admin/wrapped", wrapped_database_down),
    path("admin/integrity", integrity_bug),
    path("admin/fine", fine),
    path("api/v1/unrecognisable", unrecognisable_failure),
    path("admin/signed-in", signed_in_page),
]


class SessionInterruptedAfterTheView:
    """What SessionMiddleware answers when saving the session fails: 400 "session interrupted"."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        self.get_response(request)
        return HttpResponseBadRequest("The request's session was deleted before the request completed.")


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


@pytest.fixture
def broken_connection(db, monkeypatch):
    """The request's database connection failed and cannot run a query (the server went away)."""
    monkeypatch.setattr(connection, "errors_occurred", True)
    monkeypatch.setattr(connection, "is_usable", lambda: False)


def test_a_failure_that_hides_a_broken_database_connection_answers_503(client, broken_connection):
    response = client.get("/api/v1/unrecognisable")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def test_the_same_failure_with_a_working_database_stays_a_500(client, db):
    assert client.get("/api/v1/unrecognisable").status_code == 500


def test_a_session_that_could_not_be_saved_while_the_database_is_down_answers_503(
    client, settings, broken_connection
):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.SessionInterruptedAfterTheView"]

    assert client.get("/admin/fine").status_code == 503


def test_a_signed_in_page_answers_503_without_a_logged_500(client, monkeypatch, caplog):
    def database_down_loading(self):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(SessionStore, "load", database_down_loading)
    client.cookies["sessionid"] = "a-session-key-from-before-the-outage"

    with caplog.at_level(logging.INFO):
        response = client.get("/admin/signed-in")

    assert response.status_code == 503
    assert not [record for record in caplog.records if record.name == "django.request"]
    assert "sessionid" not in response.cookies  # nothing done to the session: still signed in afterwards


def test_an_outage_is_logged_once_not_once_per_request(client, caplog):
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            assert client.get("/api/v1/boom").status_code == 503
            assert client.get("/admin/boom").status_code == 503

    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].name == "common.outage"
    assert "Database unavailable" in errors[0].getMessage()


def test_a_callback_that_cannot_be_stored_is_not_acknowledged(
    client, settings, fake_daraja, place_order, caplog
):
    settings.ROOT_URLCONF = "backoffice.urls"
    caplog.set_level(logging.INFO)
    _order, payment = place_order()
    body = json.dumps(stk_callback(payment.checkout_request_id, amount=float(payment.amount)))
    path_ = reverse("payments:stk-callback", kwargs={"token": callback_token()})

    with mock.patch.object(
        CallbackInbox.objects, "create", side_effect=OperationalError("the database system is shutting down")
    ):
        response = client.post(path_, data=body, content_type="application/json")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert not CallbackInbox.objects.exists()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INITIATED
    # One line for the outage, with the URL's secret masked; no traceback per refused callback.
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.name for record in errors] == ["common.outage"]
    assert callback_token() not in errors[0].getMessage()
    assert errors[0].exc_info is None
