"""The whole M-Pesa flow over real HTTP: storefront API -> STK push to the built-in simulator -> callback.

Every outcome the simulator documents (payments/simulator/README.md) is driven by the paying number.
"""

import logging
import re
import time

import pytest
import requests
from django.conf import settings
from django.core.cache import cache

from backoffice.services import api_token_issue
from payments.callback_urls import callback_token
from payments.daraja.client import DarajaClient
from payments.models import CallbackInbox, EventKind, FailureClass, InboxStatus, Payment, ReviewReason
from tests.conftest import order_body, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SUCCESS = "254708374149"
NEVER_CALLS_BACK = "254700000404"
CALLS_BACK_TWICE = "254700000002"
ONE_SHILLING_SHORT = "254700000098"
BUSY = "254700000500"


class Storefront:
    """The storefront's side of the API, spoken over HTTP to the live server."""

    def __init__(self, base_url: str, token: str):
        self.base = f"{base_url}/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def place(self, product_id: int, phone: str) -> tuple[dict, dict]:
        response = self.session.post(
            f"{self.base}/orders", json=order_body(product_id=product_id, phone=phone), timeout=20
        )
        assert response.status_code == 201, response.text
        return response.json()["order"], response.json()["payment"]

    def payment(self, payment_id: int) -> dict:
        response = self.session.get(f"{self.base}/payments/{payment_id}/status", timeout=20)
        assert response.status_code == 200, response.text
        return response.json()

    def ask_mpesa(self, payment_id: int) -> dict:
        response = self.session.get(f"{self.base}/payments/mpesa/{payment_id}/status", timeout=20)
        assert response.status_code == 200, response.text
        return response.json()

    def order(self, order_id: int) -> dict:
        response = self.session.get(f"{self.base}/orders/{order_id}", timeout=20)
        assert response.status_code == 200, response.text
        return response.json()

    def retry(self, payment_id: int, phone: str) -> requests.Response:
        return self.session.post(
            f"{self.base}/payments/{payment_id}/retry", json={"phone": phone}, timeout=20
        )

    def settled(self, payment_id: int) -> dict:
        """Wait until the payment leaves `initiated` (the simulator answers after 0.2 s)."""
        return wait_for(lambda: (p := self.payment(payment_id))["status"] != "initiated" and p)


@pytest.fixture
def shop(daraja, products):
    _token, raw, _ = api_token_issue(username="storefront-e2e")
    return Storefront(daraja.url, raw)


def test_paid_order_is_confirmed_with_the_mpesa_receipt(shop, products):
    order, payment = shop.place(products[0].pk, SUCCESS)
    assert payment["status"] == "initiated"
    assert "checkoutRequestId" not in payment

    paid = shop.settled(payment["id"])

    assert paid["status"] == "completed"
    assert re.fullmatch(r"[A-Z0-9]{10}", paid["mpesaReceiptNumber"])
    assert paid["orderStatus"] == "CONFIRMED"
    assert shop.order(order["id"])["status"] == "CONFIRMED"
    stored = Payment.objects.get(pk=payment["id"])
    assert stored.paid_amount == stored.amount == 10
    assert list(stored.events.values_list("kind", flat=True)) == [
        EventKind.CREATED,
        EventKind.PUSH_ACCEPTED,
        EventKind.RESULT_APPLIED,
    ]
    assert CallbackInbox.objects.get().status == InboxStatus.PROCESSED


@pytest.mark.parametrize(
    ("phone", "result_code", "failure_class"),
    [
        pytest.param("254700000032", "1032", FailureClass.CUSTOMER, id="cancelled"),
        pytest.param("254700000037", "1037", FailureClass.CUSTOMER, id="unreachable"),
        pytest.param("254700000001", "1", FailureClass.CUSTOMER, id="insufficient-funds"),
        pytest.param("254700002001", "2001", FailureClass.CUSTOMER, id="wrong-pin"),
        pytest.param("254700001019", "1019", FailureClass.EXPIRED, id="expired"),
    ],
)
def test_declined_payment_fails_with_its_reason_and_the_order_stays_payable(
    shop, products, phone, result_code, failure_class
):
    order, payment = shop.place(products[0].pk, phone)

    failed = shop.settled(payment["id"])

    assert failed["status"] == "failed"
    assert failed["resultCode"] == result_code
    assert failed["failureReason"]
    assert failed["retryable"] is True
    assert failed["orderStatus"] == "PENDING"
    assert shop.order(order["id"])["status"] == "PENDING"
    assert Payment.objects.get(pk=payment["id"]).failure_class == failure_class


def test_declined_payment_retried_to_another_phone_confirms_the_order(shop, products):
    order, payment = shop.place(products[0].pk, "254700000032")
    assert shop.settled(payment["id"])["status"] == "failed"

    response = shop.retry(payment["id"], "0708374149")

    assert response.status_code == 201, response.text
    paid = shop.settled(response.json()["id"])
    assert paid["status"] == "completed"
    assert [p["status"] for p in shop.order(order["id"])["payments"]] == ["completed", "failed"]
    assert shop.order(order["id"])["status"] == "CONFIRMED"


def test_lost_callback_leaves_the_payment_open_until_asking_mpesa_completes_it(shop, products):
    order, payment = shop.place(products[0].pk, NEVER_CALLS_BACK)
    time.sleep(settings.SIMULATOR_CALLBACK_DELAY + 0.4)  # the customer has answered by now

    assert shop.payment(payment["id"])["status"] == "initiated"
    assert not CallbackInbox.objects.exists()

    answered = shop.ask_mpesa(payment["id"])

    assert answered["status"] == "completed"
    assert answered["orderStatus"] == "CONFIRMED"
    assert Payment.objects.get(pk=payment["id"]).receipt_pending  # STK Query carries no receipt


def test_callback_sent_twice_counts_once(shop, products):
    _order, payment = shop.place(products[0].pk, CALLS_BACK_TWICE)

    events = Payment.objects.get(pk=payment["id"]).events
    wait_for(lambda: events.filter(kind=EventKind.DUPLICATE_RESULT).exists())

    # The second copy is stored only if it arrived while the first was still being processed; otherwise
    # it is counted on the first row.
    copies = sum(1 + row.duplicates for row in CallbackInbox.objects.filter(status=InboxStatus.PROCESSED))
    assert copies == 2
    paid = shop.payment(payment["id"])
    assert paid["status"] == "completed"
    assert paid["orderStatus"] == "CONFIRMED"
    assert events.filter(kind=EventKind.RESULT_APPLIED).count() == 1
    assert events.filter(kind=EventKind.DUPLICATE_RESULT).count() == 1


def test_callback_one_shilling_short_goes_to_review_and_the_order_is_not_confirmed(shop, products):
    order, payment = shop.place(products[0].pk, ONE_SHILLING_SHORT)

    settled = shop.settled(payment["id"])

    assert settled["status"] == "needs_review"
    assert settled["orderStatus"] == "PENDING"
    stored = Payment.objects.get(pk=payment["id"])
    assert stored.review_reason == ReviewReason.AMOUNT_MISMATCH
    assert stored.paid_amount == stored.amount - 1
    assert shop.order(order["id"])["status"] == "PENDING"


def test_busy_daraja_fails_the_push_at_once_as_a_system_failure(shop, products):
    order, payment = shop.place(products[0].pk, BUSY)

    assert payment["status"] == "failed"
    assert payment["resultCode"] == "500.003.02"
    assert payment["retryable"] is True
    assert order["status"] == "PENDING"
    assert Payment.objects.get(pk=payment["id"]).failure_class == FailureClass.SYSTEM


def test_logs_of_a_whole_flow_hold_no_phone_number_secret_or_token(shop, products, caplog):
    caplog.set_level(logging.DEBUG)

    _order, paid = shop.place(products[0].pk, SUCCESS)
    _order, declined = shop.place(products[0].pk, "254700000032")
    shop.place(products[0].pk, BUSY)
    shop.settled(paid["id"])
    shop.settled(declined["id"])
    retried = shop.retry(declined["id"], "0712345678").json()
    shop.settled(retried["id"])
    shop.ask_mpesa(retried["id"])
    requests.post(f"{shop.base}/orders", json=order_body(phone="0722 000 111 x"), timeout=20)

    access_token = cache.get(DarajaClient()._token_cache_key())
    assert access_token
    logged = "\n".join(f"{record.name} {record.getMessage()}" for record in caplog.records)
    assert "STK push to 2547*****149" in logged  # logging works, masked
    for secret in (
        SUCCESS,
        "0708374149",
        "254700000032",
        "254712345678",
        "0712345678",
        settings.MPESA_CONSUMER_SECRET,
        settings.MPESA_PASSKEY,
        access_token,
    ):
        assert secret not in logged, secret
    assert callback_token() not in "\n".join(
        record.getMessage() for record in caplog.records if record.levelno >= logging.INFO
    )
