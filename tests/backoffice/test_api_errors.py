"""Errors Django answers itself on /api/ paths come in the API's JSON error body, not as HTML pages."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from payments.callback_urls import callback_token
from payments.models import CallbackInbox

LEGACY_CALLBACK = "/api/v1/payments/mpesa/callback"


def error_of(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"code", "message", "fields"}
    return body["error"]


def test_order_body_over_the_upload_limit_is_a_413_json_error(api_client, products, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {"items": [{"productId": products[0].pk, "quantity": 1}], "note": "x" * 20_000}

    response = api_client.post_json("/api/v1/orders", body)

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large" and "10000 bytes" in error["message"]
    assert error["fields"] == {}


def test_unknown_api_path_is_a_404_json_error(api_client):
    response = api_client.get("/api/v1/nope")

    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "Not found.", "fields": {}}


def test_method_an_endpoint_does_not_take_is_a_405_json_error_that_keeps_allow(api_client):
    response = api_client.get("/api/v1/orders")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "POST"


def test_suspicious_request_is_a_400_json_error(db):
    response = Client().get("/api/v1/products", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


def test_uncaught_exception_with_debug_off_is_a_500_json_error(db, settings, monkeypatch):
    from orders.models import Product

    def broken(*args, **kwargs):
        raise RuntimeError("the catalogue table went away")

    settings.DEBUG = False
    monkeypatch.setattr(Product.objects, "filter", broken)

    response = Client(raise_request_exception=False).get("/api/v1/products")

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "server_error"
    assert "catalogue" not in error["message"]  # no internals in the answer


def test_pages_outside_the_api_keep_django_s_html_errors(client, db):
    response = client.get("/hooks/nope/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- Daraja's endpoints keep their own size handling and answers ---------------------------------------
def test_legacy_callback_path_keeps_its_own_413_over_both_limits(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    settings.MPESA_CALLBACK_MAX_BYTES = 2_000

    response = client.post(LEGACY_CALLBACK, data="x" * 5_000, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["ResultCode"] == 1  # Daraja's shape, with the standard error riding along
    assert response.json()["error"]["code"] == "payload_too_large"
    assert CallbackInbox.objects.get().error.startswith("Body larger than MPESA_CALLBACK_MAX_BYTES")


def test_legacy_callback_under_its_own_cap_is_accepted_even_over_the_upload_limit(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = json.dumps({"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_unknown", "ResultCode": 1032}}})

    response = client.post(LEGACY_CALLBACK, data=body + " " * 200, content_type="application/json")

    assert response.status_code == 200 and response.json()["ResultCode"] == 0


@pytest.mark.parametrize("route", ["payments:stk-callback", "payments:daraja-result"])
def test_secret_callback_urls_keep_their_413(client, db, settings, route):
    settings.MPESA_CALLBACK_MAX_BYTES = 1_000

    response = client.post(
        reverse(route, kwargs={"token": callback_token()}), data="x" * 5_000, content_type="application/json"
    )

    assert response.status_code == 413 and response.json()["ResultCode"] == 1
