"""Right before money is sent, with the payment locked, an approved refund must still fit the payment."""

from decimal import Decimal

import pytest
import requests

from payments import refunds
from payments.models import PaymentStatus, RefundEventKind, RefundStatus
from tests.payments import refunds_support as support
from tests.payments.refunds_support import B2C, post_result, result_envelope

paid = support.paid
result_apis = support.result_apis
maker = support.maker
checker = support.checker


@pytest.fixture
def b2c(settings):
    settings.MPESA_B2C_SHORTCODE = "600992"
    settings.REFUND_APPROVAL_THRESHOLD = 1  # every refund waits for a second person


def test_an_approved_refund_that_no_longer_fits_is_failed_and_nothing_is_sent(
    b2c, paid, maker, checker, result_apis, client
):
    # A payout timed out and was settled as "not paid" too early; a second one was approved meanwhile.
    result_apis.replies[B2C].append(requests.ReadTimeout("read timed out"))
    first = refunds.refund_request(payment_id=paid.pk, amount=Decimal("6"), reason="Partial", actor=maker)
    refunds.refund_approve(refund_id=first.pk, actor=checker)
    refunds.refund_submit(refund_id=first.pk)
    refunds.refund_resolve(refund_id=first.pk, actor=checker, succeeded=False, note="Not on the statement")
    second = refunds.refund_request(payment_id=paid.pk, amount=Decimal("6"), reason="Again", actor=maker)
    refunds.refund_approve(refund_id=second.pk, actor=checker)
    # Before the second is sent, the first turns out to have paid out after all.
    post_result(
        client,
        result_envelope(originator=first.idempotency_key, conversation="AG_1", transaction_id="SKB0000001"),
    )
    payouts_before = len(result_apis.b2c_payments)

    second = refunds.refund_submit(refund_id=second.pk)

    second.refresh_from_db()
    paid.refresh_from_db()
    assert second.status == RefundStatus.FAILED
    assert "no longer fits" in second.result_desc.lower()
    assert "only KES 4" in second.events.get(kind=RefundEventKind.SEND_REFUSED).message
    assert len(result_apis.b2c_payments) == payouts_before  # nothing was sent
    assert (paid.status, paid.refunded_amount) == (PaymentStatus.PARTIALLY_REFUNDED, Decimal("6"))
