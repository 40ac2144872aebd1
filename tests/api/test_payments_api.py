import datetime as dt
import json

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from backoffice.services import api_token_issue
from payments.callback_urls import callback_token
from payments.models import Payment, PaymentStatus, Refund
from tests.conftest import ApiClient, order_body, stk_callback
from tests.payments.refunds_support import staff_user

ORDERS = "/api/v1/orders"


@pytest.fixture
def placed(fake_daraja, api_client, products):
    """An M-Pesa order placed through the API, its STK push accepted."""
    response = api_client.post_json(ORDERS, order_body(product_id=products[0].pk))
    assert response.status_code == 201
    payment = response.json()["payment"]
    # The API never hands out the CheckoutRequestID (it is what a forged callback needs); Daraja knows it.
    assert "checkoutRequestId" not in payment
    return {**payment, "checkout": Payment.objects.get(pk=payment["id"]).checkout_request_id}


def deliver(client, checkout_request_id, **kwargs):
    path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
    response = client.post(
        path, json.dumps(stk_callback(checkout_request_id, **kwargs)), content_type="application/json"
    )
    assert response.status_code == 200


def status_of(api_client, payment_id):
    return api_client.get(f"/api/v1/payments/{payment_id}/status")


def test_status_shows_the_payment_as_the_callback_left_it(client, api_client, placed):
    deliver(client, placed["checkout"], receipt="NLJ7RT61SV")

    response = status_of(api_client, placed["id"])

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["mpesaReceiptNumber"] == "NLJ7RT61SV"
    assert body["orderStatus"] == "CONFIRMED"
    assert body["resultCode"] == "0"
    assert body["retryable"] is False


def test_failed_payment_explains_itself_to_the_customer(client, api_client, placed):
    deliver(client, placed["checkout"], result_code=1032, result_desc="Request cancelled by user")

    body = status_of(api_client, placed["id"]).json()

    assert body["status"] == "failed"
    assert body["resultCode"] == "1032"
    assert body["failureReason"] == "The payment was cancelled on the phone."
    assert body["retryable"] is True
    assert body["orderStatus"] == "PENDING"


def test_unknown_payment_is_404_in_the_error_shape(api_client):
    response = status_of(api_client, 999999)

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}


# --- "ask M-Pesa now" ---------------------------------------------------------------------------
def test_mpesa_status_asks_daraja_and_applies_a_final_answer(api_client, placed, fake_daraja):
    fake_daraja.answer_query("0")

    response = api_client.get(f"/api/v1/payments/mpesa/{placed['id']}/status")

    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["orderStatus"] == "CONFIRMED"
    assert len(fake_daraja.queries) == 1


def test_mpesa_status_asked_repeatedly_queries_daraja_at_most_once_every_few_seconds(
    api_client, placed, fake_daraja
):
    for _ in range(5):
        response = api_client.get(f"/api/v1/payments/mpesa/{placed['id']}/status")
        assert response.status_code == 200
        assert response.json()["status"] == "initiated"

    assert len(fake_daraja.queries) == 1


def test_mpesa_status_of_a_finished_payment_does_not_query(client, api_client, placed, fake_daraja):
    deliver(client, placed["checkout"])

    response = api_client.get(f"/api/v1/payments/mpesa/{placed['id']}/status")

    assert response.json()["status"] == "completed"
    assert fake_daraja.queries == []


def test_mpesa_status_when_daraja_is_busy_answers_200_with_the_open_payment(api_client, placed, fake_daraja):
    fake_daraja.query_replies.append(
        (500, {"errorCode": "500.003.02", "errorMessage": "Spike Arrest Violation"})
    )

    response = api_client.get(f"/api/v1/payments/mpesa/{placed['id']}/status")

    assert response.status_code == 200
    assert response.json()["status"] == "initiated"


# --- retry ---------------------------------------------------------------------------------------
def retry(api_client, payment_id, body=None):
    return api_client.post_json(f"/api/v1/payments/{payment_id}/retry", body)


@pytest.mark.parametrize("result_code", [None, 0])
def test_retry_of_a_payment_that_is_not_failed_is_409(client, api_client, placed, fake_daraja, result_code):
    if result_code is not None:
        deliver(client, placed["checkout"], result_code=result_code)

    response = retry(api_client, placed["id"])

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_retryable"
    assert len(fake_daraja.pushes) == 1


def test_retry_within_two_minutes_is_409_until_the_window_has_passed(client, api_client, placed, fake_daraja):
    deliver(client, placed["checkout"], result_code=1032)

    too_soon = retry(api_client, placed["id"])

    assert too_soon.status_code == 409
    assert too_soon.json()["error"]["code"] == "retry_too_soon"
    assert 0 < int(too_soon["Retry-After"]) <= 121
    assert too_soon.json()["error"]["retry_after"] == int(too_soon["Retry-After"])
    assert len(fake_daraja.pushes) == 1

    with time_machine.travel(timezone.now() + dt.timedelta(minutes=2, seconds=5)):
        response = retry(api_client, placed["id"])

    assert response.status_code == 201, response.content
    new = response.json()
    assert new["id"] != placed["id"]
    assert new["status"] == "initiated"
    assert new["orderId"] == placed["orderId"]
    assert len(fake_daraja.pushes) == 2
    order = api_client.get(f"{ORDERS}/{placed['orderId']}").json()
    assert [p["status"] for p in order["payments"]] == ["initiated", "failed"]


def test_retry_to_another_phone_goes_at_once_and_the_second_click_is_refused(
    client, api_client, placed, fake_daraja
):
    deliver(client, placed["checkout"], result_code=1)

    first = retry(api_client, placed["id"], {"phone": "0712 345 678"})
    second = retry(api_client, placed["id"], {"phone": "0712 345 678"})

    assert first.status_code == 201
    assert fake_daraja.pushes[-1]["PartyA"] == "254712345678"
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "attempt_in_progress"
    assert Payment.objects.filter(order_id=placed["orderId"]).count() == 2


def test_retry_with_an_invalid_phone_is_400_and_sends_nothing(client, api_client, placed, fake_daraja):
    deliver(client, placed["checkout"], result_code=1032)

    response = retry(api_client, placed["id"], {"phone": "not-a-phone"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_phone"
    assert len(fake_daraja.pushes) == 1


def test_retry_that_daraja_refuses_answers_201_with_the_failed_attempt(
    client, api_client, placed, fake_daraja
):
    deliver(client, placed["checkout"], result_code=1032)
    fake_daraja.push_replies.append((500, {"errorCode": "500.003.02", "errorMessage": "System is busy."}))

    response = retry(api_client, placed["id"], {"phone": "0712345678"})

    assert response.status_code == 201
    assert response.json()["status"] == PaymentStatus.FAILED
    assert response.json()["retryable"] is True


@pytest.mark.parametrize("field", ["reason", "note"])
def test_null_character_in_a_refund_is_a_400_not_a_crash(client, placed, django_user_model, field):
    # PostgreSQL text cannot hold NUL: saving the refund was a 500 (DataError).
    deliver(client, placed["checkout"])
    staff_user(django_user_model, "maker", "add_refund")
    maker = ApiClient(api_token_issue(username="maker", scopes=["refunds"])[1])
    body = {"reason": "Out of stock", field: "Out of\x00stock"}

    response = maker.post_json(f"/api/v1/payments/{placed['id']}/refunds", body)

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Refund.objects.exists()
