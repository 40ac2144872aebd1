import datetime as dt
from decimal import Decimal
from unittest import mock

import pytest
import requests
import time_machine
from django.utils import timezone

from orders.models import OrderStatus, Product
from payments import services
from payments.daraja.results import parse_stk_callback
from payments.exceptions import AttemptInProgress, IllegalTransition, PaymentNotRetryable, RetryTooSoon
from payments.models import (
    EventKind,
    EventSource,
    FailureClass,
    Payment,
    PaymentStatus,
    ReviewReason,
)
from tests.conftest import daraja_payload, stk_callback

CHECKOUT = "ws_CO_191220191020363925"  # the id in Safaricom's published success sample


@pytest.fixture
def initiated(fake_daraja, place_order):
    """An M-Pesa order of KES 10 whose STK push Daraja accepted with CheckoutRequestID CHECKOUT."""
    fake_daraja.checkout_ids.append(CHECKOUT)
    order, payment = place_order()
    assert payment.status == PaymentStatus.INITIATED
    return payment


def apply(body: dict, source=EventSource.CALLBACK) -> Payment:
    result = parse_stk_callback(body)
    return services.payment_apply_result(
        checkout_request_id=result.checkout_request_id, result=result, source=source
    )


def kinds(payment: Payment) -> list[str]:
    return list(payment.events.values_list("kind", flat=True))


# --- successes -------------------------------------------------------------------------------------
def test_success_completes_the_payment_and_confirms_the_order(initiated):
    payment = apply(stk_callback(CHECKOUT, amount=10.0, receipt="NLJ7RT61SV"))

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.mpesa_receipt_number == "NLJ7RT61SV"
    assert payment.paid_amount == Decimal("10")
    assert payment.transaction_date == dt.datetime(2019, 12, 19, 7, 21, 15, tzinfo=dt.UTC)
    assert payment.order.status == OrderStatus.CONFIRMED
    assert payment.order.confirmed_at is not None
    assert kinds(payment) == [EventKind.CREATED, EventKind.PUSH_ACCEPTED, EventKind.RESULT_APPLIED]


@pytest.mark.parametrize(
    "fixture",
    [
        "stk_callback_success",
        "stk_callback_success_items_reordered",
        "stk_callback_success_balance_without_value",
    ],
)
def test_safaricoms_recorded_success_payloads_complete_a_one_shilling_payment(
    fake_daraja, place_order, fixture
):
    body = daraja_payload(fixture)
    fake_daraja.checkout_ids.append(body["Body"]["stkCallback"]["CheckoutRequestID"])
    one_bob = Product.objects.create(sku="ONE", name="One shilling", price=Decimal("1.00"))
    order, payment = place_order(product=one_bob)

    payment = apply(body)

    assert payment.status == PaymentStatus.COMPLETED
    assert payment.mpesa_receipt_number in {"NLJ7RT61SV", "QKH94M1Z11"}
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED


@pytest.mark.parametrize("amount", ["10", 10, 10.0, "10.00"])
def test_amount_sent_as_string_or_float_matching_the_order_completes(initiated, amount):
    assert apply(stk_callback(CHECKOUT, amount=amount)).status == PaymentStatus.COMPLETED


# --- failures ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "failure_class"),
    [
        (1032, FailureClass.CUSTOMER),
        (1037, FailureClass.CUSTOMER),
        (1, FailureClass.CUSTOMER),
        (2001, FailureClass.CUSTOMER),
        (1019, FailureClass.EXPIRED),
        (17, FailureClass.SYSTEM),
        (26, FailureClass.SYSTEM),
        ("SFC_IC0003", FailureClass.CONFIG),
        (2028, FailureClass.CONFIG),
        (1036, FailureClass.UNKNOWN),
    ],
)
def test_failure_is_recorded_with_its_cause_and_the_order_stays_payable(initiated, code, failure_class):
    payment = apply(stk_callback(CHECKOUT, result_code=code, result_desc="Daraja says no"))

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.result_code == str(code)
    assert payment.result_desc == "Daraja says no"
    assert payment.failure_class == failure_class
    assert payment.failed_at is not None
    assert payment.order.status == OrderStatus.PENDING


# --- duplicates and late results (faults 1, 3, 4, 26) -----------------------------------------------
def test_repeated_success_callbacks_change_nothing_after_the_first(initiated):
    body = stk_callback(CHECKOUT)
    apply(body)
    confirmed_at = Payment.objects.get(pk=initiated.pk).order.confirmed_at

    for _ in range(9):
        apply(body)

    payment = Payment.objects.get(pk=initiated.pk)
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1
    assert payment.events.filter(kind=EventKind.DUPLICATE_RESULT).count() == 9
    assert payment.order.confirmed_at == confirmed_at


def test_repeated_failure_callback_is_recorded_as_a_duplicate(initiated):
    apply(stk_callback(CHECKOUT, result_code=1032))
    apply(stk_callback(CHECKOUT, result_code=1032))

    payment = Payment.objects.get(pk=initiated.pk)
    assert payment.status == PaymentStatus.FAILED
    assert payment.events.filter(kind=EventKind.DUPLICATE_RESULT).count() == 1


def test_failure_after_success_never_undoes_the_payment(initiated):
    apply(stk_callback(CHECKOUT))

    apply(stk_callback(CHECKOUT, result_code=1032))

    payment = Payment.objects.get(pk=initiated.pk)
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.mpesa_receipt_number == "NLJ7RT61SV"
    assert payment.order.status == OrderStatus.CONFIRMED
    assert payment.events.last().kind == EventKind.IGNORED_LATE_EVENT


def test_success_after_failure_goes_to_review_as_a_late_payment(initiated):
    apply(stk_callback(CHECKOUT, result_code=1037))

    apply(stk_callback(CHECKOUT, receipt="QKH94M1Z11"))

    payment = Payment.objects.get(pk=initiated.pk)
    assert payment.status == PaymentStatus.NEEDS_REVIEW
    assert payment.review_reason == ReviewReason.LATE_PAYMENT
    assert payment.mpesa_receipt_number == "QKH94M1Z11"  # the money moved: keep the evidence
    assert payment.order.status == OrderStatus.PENDING  # a person decides, not the callback
    assert payment.events.last().kind == EventKind.DISAGREEMENT
    with pytest.raises(PaymentNotRetryable):
        services.payment_retry(payment_id=payment.pk)


def test_query_failure_after_a_success_callback_keeps_the_payment(initiated, fake_daraja):
    apply(stk_callback(CHECKOUT))
    fake_daraja.answer_query("1032")

    services.payment_query_status(payment_id=initiated.pk)

    payment = Payment.objects.get(pk=initiated.pk)
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.events.last().kind == EventKind.IGNORED_LATE_EVENT


# --- money that does not add up (faults 6, 7, 8, 9) ---------------------------------------------
@pytest.mark.parametrize("paid", [9.0, 11.0, 10.5, "9.99", 1])
def test_amount_other_than_asked_goes_to_review_and_the_order_is_not_confirmed(initiated, paid):
    payment = apply(stk_callback(CHECKOUT, amount=paid))

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.NEEDS_REVIEW
    assert payment.review_reason == ReviewReason.AMOUNT_MISMATCH
    assert payment.paid_amount == Decimal(str(paid))
    assert payment.mpesa_receipt_number == "NLJ7RT61SV"
    assert payment.order.status == OrderStatus.PENDING


def test_receipt_already_used_by_another_payment_goes_to_review(fake_daraja, place_order):
    _, first = place_order()
    _, second = place_order()
    apply(stk_callback(first.checkout_request_id, receipt="NLJ7RT61SV"))

    apply(stk_callback(second.checkout_request_id, receipt="NLJ7RT61SV"))

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == PaymentStatus.COMPLETED
    assert first.mpesa_receipt_number == "NLJ7RT61SV"
    assert second.status == PaymentStatus.NEEDS_REVIEW
    assert second.review_reason == ReviewReason.RECEIPT_REUSE
    assert second.mpesa_receipt_number is None
    assert second.order.status == OrderStatus.PENDING


def test_success_without_receipt_goes_to_review(initiated):
    body = stk_callback(CHECKOUT)
    del body["Body"]["stkCallback"]["CallbackMetadata"]

    payment = apply(body)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.NEEDS_REVIEW
    assert payment.review_reason == ReviewReason.MISSING_METADATA
    assert payment.order.status == OrderStatus.PENDING


def test_hostile_result_desc_is_stored_bounded_and_on_one_line(initiated):
    hostile = "<img src=x onerror=alert(1)>\r\nSet-Cookie: x=y\n" + "B" * 100_000

    payment = apply(stk_callback(CHECKOUT, result_code=1032, result_desc=hostile))

    payment.refresh_from_db()
    assert len(payment.result_desc) <= 512
    assert "\n" not in payment.result_desc and "\r" not in payment.result_desc
    assert all(len(event.message) <= 512 for event in payment.events.all())


# --- STK Query (fault 25) ------------------------------------------------------------------------
def test_query_success_completes_with_receipt_to_follow_and_a_late_callback_fills_it(initiated, fake_daraja):
    fake_daraja.answer_query("0")

    payment = services.payment_query_status(payment_id=initiated.pk)

    assert payment.status == PaymentStatus.COMPLETED
    assert payment.receipt_pending
    assert payment.mpesa_receipt_number is None
    assert payment.order.status == OrderStatus.CONFIRMED

    apply(stk_callback(CHECKOUT, receipt="NLJ7RT61SV"))

    payment.refresh_from_db()
    assert payment.mpesa_receipt_number == "NLJ7RT61SV"
    assert not payment.receipt_pending
    assert payment.events.filter(kind=EventKind.RESULT_APPLIED).count() == 2


def test_query_while_the_customer_has_not_answered_leaves_the_payment_open(initiated):
    payment = services.payment_query_status(payment_id=initiated.pk)

    assert payment.status == PaymentStatus.INITIATED
    assert payment.query_count == 1
    assert payment.events.last().kind == EventKind.QUERY_PENDING


def test_query_refused_by_daraja_is_recorded_and_leaves_the_payment_open(initiated, fake_daraja):
    fake_daraja.query_replies.append(
        (500, {"requestId": "r", "errorCode": "500.003.02", "errorMessage": "Spike Arrest Violation"})
    )

    payment = services.payment_query_status(payment_id=initiated.pk)

    assert payment.status == PaymentStatus.INITIATED
    assert payment.events.last().kind == EventKind.QUERY_FAILED


def test_query_failure_answer_fails_the_payment(initiated, fake_daraja):
    fake_daraja.answer_query("1032", "Request cancelled by user")

    payment = services.payment_query_status(payment_id=initiated.pk)

    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_class == FailureClass.CUSTOMER


# --- retries (fault 24, 27) ------------------------------------------------------------------------
def test_failed_payment_can_be_retried_after_two_minutes_with_a_new_attempt(initiated, fake_daraja):
    apply(stk_callback(CHECKOUT, result_code=1032))

    with pytest.raises(RetryTooSoon) as too_soon:
        services.payment_retry(payment_id=initiated.pk)
    assert 0 < too_soon.value.details["retry_after"] <= 121
    assert len(fake_daraja.pushes) == 1

    with time_machine.travel(timezone.now() + dt.timedelta(minutes=2, seconds=1)):
        new = services.payment_retry(payment_id=initiated.pk)

    assert new.pk != initiated.pk
    assert new.status == PaymentStatus.INITIATED
    assert new.order_id == initiated.order_id
    assert new.amount == initiated.amount
    assert len(fake_daraja.pushes) == 2
    assert Payment.objects.get(pk=initiated.pk).status == PaymentStatus.FAILED


def test_a_push_daraja_never_received_does_not_hold_a_retry_back(fake_daraja, place_order):
    refused = requests.ConnectionError(
        "HTTPConnectionPool: NewConnectionError: [Errno 111] Connection refused"
    )
    fake_daraja.push_replies.extend([refused] * 3)  # the push and the client's two reconnects
    with mock.patch("payments.daraja.client.time.sleep"):
        _order, unreachable = place_order()
    assert unreachable.status == PaymentStatus.FAILED

    new = services.payment_retry(payment_id=unreachable.pk)

    assert new.status == PaymentStatus.INITIATED
    assert new.phone == unreachable.phone
    assert len(fake_daraja.pushes) == 3 + 1  # three refused connections, then the retry's push


def test_a_push_whose_outcome_is_unknown_still_holds_a_retry_back(fake_daraja, place_order):
    fake_daraja.push_replies.append(requests.ReadTimeout("read timed out"))
    _order, unknown = place_order()

    with pytest.raises((RetryTooSoon, PaymentNotRetryable)):
        services.payment_retry(payment_id=unknown.pk)


def test_retry_to_another_phone_is_allowed_at_once(initiated, fake_daraja):
    apply(stk_callback(CHECKOUT, result_code=1))

    new = services.payment_retry(payment_id=initiated.pk, phone="254712345678")

    assert new.status == PaymentStatus.INITIATED
    assert fake_daraja.pushes[-1]["PartyA"] == "254712345678"


def test_retry_while_another_attempt_is_open_is_refused(initiated):
    apply(stk_callback(CHECKOUT, result_code=1032))
    services.payment_retry(payment_id=initiated.pk, phone="254712345678")

    with pytest.raises(AttemptInProgress):
        services.payment_retry(payment_id=initiated.pk, phone="254712345679")

    assert initiated.order.payments.count() == 2


@pytest.mark.parametrize("result_code", [0, None])
def test_paid_or_open_payments_are_not_retryable(initiated, result_code):
    if result_code is not None:
        apply(stk_callback(CHECKOUT, result_code=result_code))

    with pytest.raises(PaymentNotRetryable):
        services.payment_retry(payment_id=initiated.pk)


# --- cash on delivery -----------------------------------------------------------------------------
def test_cash_on_delivery_is_confirmed_at_once_and_completed_when_collected(
    fake_daraja, place_order, admin_user
):
    order, payment = place_order(method="cod", phone="")

    assert payment.status == PaymentStatus.PENDING_DELIVERY
    assert order.status == OrderStatus.CONFIRMED
    assert fake_daraja.pushes == []

    payment = services.payment_mark_collected(payment_id=payment.pk, actor=admin_user)

    assert payment.status == PaymentStatus.COMPLETED
    assert payment.paid_amount == payment.amount
    assert payment.events.last().actor == admin_user
    with pytest.raises(IllegalTransition):
        services.payment_mark_collected(payment_id=payment.pk, actor=admin_user)


def test_mpesa_payment_cannot_be_marked_as_cash_collected(initiated, admin_user):
    with pytest.raises(IllegalTransition):
        services.payment_mark_collected(payment_id=initiated.pk, actor=admin_user)

    assert Payment.objects.get(pk=initiated.pk).status == PaymentStatus.INITIATED
