"""Refunds end to end over real HTTP: Reversal / B2C / Transaction Status against the built-in simulator,
whose Results come back to our ResultURL and QueueTimeOutURL on the live server.

Outcomes are chosen by the phone that made the original payment (payments/simulator/README.md).
"""

from decimal import Decimal

import pytest

from payments import refunds, services
from payments.daraja.client import DarajaClient, get_client
from payments.daraja.results import parse_stk_callback
from payments.models import EventSource, Payment, PaymentStatus, RefundEventKind, RefundMethod, RefundStatus
from tests.conftest import stk_callback, wait_for
from tests.payments.refunds_support import DiesAfterDarajaAnswers, staff_user

pytestmark = pytest.mark.django_db(transaction=True)

SUCCESS = "254708374149"
INSUFFICIENT_FLOAT = "254700000101"
QUEUE_TIMEOUT = "254700000102"
SILENT = "254700000103"
NEVER_CALLS_BACK = "254700000404"


@pytest.fixture
def refunder(django_user_model):
    return staff_user(django_user_model, "refunder", "add_refund")


@pytest.fixture
def paid_with(daraja, place_order):
    """A payment made through the simulator by `phone`, completed by the simulator's own callback."""

    def pay(phone: str) -> Payment:
        _order, payment = place_order(phone=phone)
        return wait_for(lambda: Payment.objects.filter(pk=payment.pk, status=PaymentStatus.COMPLETED).first())

    return pay


def refund_of(payment, actor, amount=None):
    return refunds.refund_request(payment_id=payment.pk, amount=amount, reason="Order cancelled", actor=actor)


def settled(refund, status=None):
    statuses = (status,) if status else (RefundStatus.SUCCEEDED, RefundStatus.FAILED)
    return wait_for(lambda: type(refund).objects.filter(pk=refund.pk, status__in=statuses).first())


def test_full_refund_is_reversed_and_the_result_arrives(paid_with, refunder):
    payment = paid_with(SUCCESS)

    refund = settled(refund_of(payment, refunder))

    payment.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.method == RefundMethod.REVERSAL
    assert len(refund.transaction_id) == 10 and refund.transaction_id != payment.mpesa_receipt_number
    assert payment.status == PaymentStatus.REFUNDED


def test_a_receipt_reversed_elsewhere_is_already_reversed_and_counts_as_success(paid_with, refunder, daraja):
    payment = paid_with(SUCCESS)
    # Reversed before (e.g. on the M-Pesa org portal); that Result goes somewhere else.
    DarajaClient().reversal(
        receipt=payment.mpesa_receipt_number,
        amount=payment.amount,
        remarks="Portal reversal",
        result_url=f"{daraja.url}/elsewhere/",
        timeout_url=f"{daraja.url}/elsewhere/",
    )

    refund = settled(refund_of(payment, refunder))

    assert (refund.status, refund.result_code) == (RefundStatus.SUCCEEDED, "R000001")


def test_a_receipt_mpesa_never_issued_fails_r000002(daraja, place_order, refunder):
    _order, payment = place_order(phone=NEVER_CALLS_BACK)
    services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id,
        result=parse_stk_callback(stk_callback(payment.checkout_request_id, receipt="SKE1234567")),
        source=EventSource.CALLBACK,
    )

    refund = settled(refund_of(payment, refunder))

    payment.refresh_from_db()
    assert (refund.status, refund.result_code) == (RefundStatus.FAILED, "R000002")
    assert payment.status == PaymentStatus.COMPLETED


def test_insufficient_float_fails_and_the_payment_stays_paid(paid_with, refunder):
    payment = paid_with(INSUFFICIENT_FLOAT)

    refund = settled(refund_of(payment, refunder))

    payment.refresh_from_db()
    assert (refund.status, refund.result_code) == (RefundStatus.FAILED, "1")
    assert payment.status == PaymentStatus.COMPLETED


def test_queue_timeout_is_unknown_until_transaction_status_shows_the_money_moved(
    paid_with, refunder, settings
):
    settings.REFUND_STATUS_INTERVAL = 0
    payment = paid_with(QUEUE_TIMEOUT)

    refund = settled(refund_of(payment, refunder), RefundStatus.UNKNOWN)
    assert refund.events.filter(kind=RefundEventKind.QUEUE_TIMEOUT).exists()
    refunds.refunds_sweep()
    refund = settled(refund)

    payment.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.transaction_id
    assert payment.status == PaymentStatus.REFUNDED


def test_no_result_at_all_is_settled_by_the_sweeper(paid_with, refunder, settings):
    settings.REFUND_RESULT_TIMEOUT = 0
    payment = paid_with(SILENT)
    refund = settled(refund_of(payment, refunder), RefundStatus.SUBMITTED)

    counts = refunds.refunds_sweep()
    refund = settled(refund)

    assert counts == {"sent": 0, "unknown": 1, "status_queries": 1}
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.events.filter(kind=RefundEventKind.STATUS_QUERY_SENT).count() == 1


def test_crash_after_daraja_accepted_is_settled_by_the_late_result(paid_with, refunder, settings):
    payment = paid_with(SUCCESS)
    session = get_client().session
    reversal_url = settings.MPESA_BASE_URL + "/mpesa/reversal/"
    session.mount(reversal_url, DiesAfterDarajaAnswers())
    try:
        refund = refund_of(payment, refunder)
    finally:
        session.adapters.pop(reversal_url)

    refund = settled(refund)
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.events.filter(kind=RefundEventKind.ACCEPTED).count() == 0  # the ack was never written


def test_partial_refund_is_a_b2c_payment(paid_with, refunder, settings):
    settings.MPESA_B2C_SHORTCODE = "600992"
    payment = paid_with(SUCCESS)

    refund = settled(refund_of(payment, refunder, amount=Decimal("4")))

    payment.refresh_from_db()
    assert (refund.status, refund.method) == (RefundStatus.SUCCEEDED, RefundMethod.B2C)
    assert refund.transaction_id
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED
    assert payment.refunded_amount == Decimal("4")
