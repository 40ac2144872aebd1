"""Staff resolving reconciliation exceptions: attach, mark as expected, refund a double payment."""

from decimal import Decimal

import pytest

from audit.models import AuditAction, AuditEntry
from payments.models import (
    EventKind,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundMethod,
    ReviewReason,
    SettledBy,
)
from statements.exceptions import ReconciliationError, StatementPermissionDenied
from statements.models import (
    ItemKind,
    ItemStatus,
    MatchMethod,
    ReconciliationItem,
    Resolution,
    StatementLine,
)
from statements.reconciliation import reconcile
from statements.resolution import item_attach, item_mark_expected, item_open_refund
from tests.statements.conftest import DAY_END, DAY_START, OTHER_PHONE, at, shortcode


def run():
    return reconcile(shortcode=shortcode(), period_start=DAY_START, period_end=DAY_END)


def only_item(kind: str) -> ReconciliationItem:
    return ReconciliationItem.objects.get(kind=kind)


def audited(obj, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, object_id=str(obj.pk)))


@pytest.fixture
def unrecorded(rows):
    """A line of KES 100 nobody recorded, from a number no attempt fits (so no receipt is filled)."""
    statement = rows.statement()
    line = rows.masked_line(statement, completed_at=at(9, 0, 40), suffix="999")
    run()
    return only_item(ItemKind.UNRECORDED_LINE), line


@pytest.fixture
def double_payment(rows):
    statement = rows.statement()
    order = rows.order("150")
    first = rows.payment(order=order, amount="150", initiated_at=at(13))
    second = rows.payment(order=order, amount="150", initiated_at=at(13, 5))
    rows.paid_line(statement, first)
    rows.paid_line(statement, second)
    run()
    return only_item(ItemKind.DOUBLE_PAYMENT), second


# --- permissions -----------------------------------------------------------------------------------
def test_every_resolution_needs_the_permission(unrecorded, rows, viewer):
    item, _line = unrecorded
    payment = rows.payment(status=PaymentStatus.INITIATED, phone=OTHER_PHONE)
    for actor in (None, viewer):
        with pytest.raises(StatementPermissionDenied):
            item_attach(item_id=item.pk, payment_id=payment.pk, actor=actor)
        with pytest.raises(StatementPermissionDenied):
            item_mark_expected(item_id=item.pk, actor=actor, note="Paybill payment")
        with pytest.raises(StatementPermissionDenied):
            item_open_refund(item_id=item.pk, actor=actor, reason="Paid twice")
    item.refresh_from_db()
    assert item.status == ItemStatus.OPEN
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INITIATED


def test_opening_a_refund_also_needs_the_right_to_request_refunds(double_payment, resolver):
    item, payment = double_payment

    with pytest.raises(StatementPermissionDenied, match="refunds"):
        item_open_refund(item_id=item.pk, actor=resolver, reason="Paid twice")

    item.refresh_from_db()
    assert item.status == ItemStatus.OPEN
    assert not Refund.objects.exists()


# --- attach ----------------------------------------------------------------------------------------
def test_attaching_an_unrecorded_line_completes_an_open_attempt(unrecorded, rows, resolver):
    item, line = unrecorded
    payment = rows.payment(status=PaymentStatus.INITIATED, phone=OTHER_PHONE)

    item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver, note="Customer forwarded the SMS")

    item.refresh_from_db()
    line.refresh_from_db()
    payment.refresh_from_db()
    assert (item.status, item.resolution) == (ItemStatus.RESOLVED, Resolution.ATTACHED)
    assert (item.resolved_by, item.note, item.payment) == (resolver, "Customer forwarded the SMS", payment)
    assert item.resolved_at is not None
    assert (line.payment, line.match_method, line.matched_by) == (payment, MatchMethod.STAFF, resolver)
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.mpesa_receipt_number == line.receipt
    assert payment.settled_by == SettledBy.STAFF
    assert audited(item, AuditAction.STATEMENT_LINE_ATTACHED)[0].actor == resolver
    assert audited(payment, AuditAction.STATEMENT_LINE_ATTACHED)[0].actor == resolver


def test_attaching_to_a_failed_attempt_sends_it_to_review(unrecorded, rows, resolver):
    item, line = unrecorded
    payment = rows.payment(status=PaymentStatus.FAILED, phone=OTHER_PHONE)

    item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.NEEDS_REVIEW
    assert payment.review_reason == ReviewReason.LATE_PAYMENT
    assert payment.mpesa_receipt_number == line.receipt


def test_attaching_to_a_receipt_pending_payment_fills_its_receipt(unrecorded, rows, resolver):
    item, line = unrecorded
    payment = rows.payment(receipt_pending=True, phone=OTHER_PHONE)

    item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.receipt_pending is False
    assert payment.mpesa_receipt_number == line.receipt
    assert payment.events.filter(kind=EventKind.STATEMENT_ATTACHED, actor=resolver).exists()


def test_the_attached_line_is_no_longer_an_exception(unrecorded, rows, resolver):
    item, _line = unrecorded
    payment = rows.payment(status=PaymentStatus.INITIATED, phone=OTHER_PHONE)
    item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver)

    again = run()

    item.refresh_from_db()
    assert item.status == ItemStatus.RESOLVED
    assert again.totals["items"][ItemKind.UNRECORDED_LINE] == 0
    assert again.totals["difference"] == again.totals["explained"]


@pytest.mark.parametrize(
    ("payment_fields", "message"),
    [
        ({"status": PaymentStatus.INITIATED, "amount": "120"}, "KES 120"),
        ({"status": PaymentStatus.PENDING_DELIVERY, "method": PaymentMethod.COD}, "Cash on delivery"),
        ({"status": PaymentStatus.COMPLETED}, "already has receipt"),
    ],
    ids=["another_amount", "not_mpesa", "another_receipt"],
)
def test_attaching_to_a_payment_that_does_not_fit_is_refused(
    unrecorded, rows, resolver, payment_fields, message
):
    item, line = unrecorded
    payment = rows.payment(phone=OTHER_PHONE, **payment_fields)

    with pytest.raises(ReconciliationError, match=message):
        item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver)

    item.refresh_from_db()
    line.refresh_from_db()
    assert item.status == ItemStatus.OPEN
    assert line.payment is None
    assert not audited(payment, AuditAction.STATEMENT_LINE_ATTACHED)


def test_a_payment_that_has_its_line_takes_no_other(unrecorded, rows, resolver):
    item, _line = unrecorded
    payment = rows.payment(receipt_pending=True, phone=OTHER_PHONE)
    statement = rows.statement(period_start=at(0, day=11), period_end=at(23, day=11))
    other = rows.line(statement, paid_in="100", completed_at=at(9, day=11))
    StatementLine.objects.filter(pk=other.pk).update(payment=payment)

    with pytest.raises(ReconciliationError, match="already has statement line"):
        item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver)


def test_a_payment_under_review_for_another_reason_is_refused_with_the_reason(unrecorded, rows, resolver):
    item, _line = unrecorded
    payment = rows.payment(
        status=PaymentStatus.NEEDS_REVIEW, review_reason=ReviewReason.AMOUNT_MISMATCH, phone=OTHER_PHONE
    )

    with pytest.raises(ReconciliationError, match="review"):
        item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver)


def test_only_unrecorded_lines_are_attached(double_payment, rows, resolver):
    item, payment = double_payment
    with pytest.raises(ReconciliationError, match="cannot be resolved that way"):
        item_attach(item_id=item.pk, payment_id=payment.pk, actor=resolver)


# --- expected --------------------------------------------------------------------------------------
def test_marking_as_expected_needs_a_note_and_closes_the_exception(unrecorded, resolver):
    item, _line = unrecorded
    with pytest.raises(ReconciliationError, match="why"):
        item_mark_expected(item_id=item.pk, actor=resolver, note="   ")

    item_mark_expected(item_id=item.pk, actor=resolver, note="A paybill payment for rent, not the shop")

    item.refresh_from_db()
    assert (item.status, item.resolution) == (ItemStatus.RESOLVED, Resolution.EXPECTED)
    assert item.note == "A paybill payment for rent, not the shop"
    (entry,) = audited(item, AuditAction.RECONCILIATION_EXPECTED)
    assert entry.reason == item.note
    assert entry.changes["status"] == {"before": "open", "after": "resolved"}
    with pytest.raises(ReconciliationError, match="already resolved"):
        item_mark_expected(item_id=item.pk, actor=resolver, note="Again")


# --- refund of a double payment --------------------------------------------------------------------
def test_a_double_payment_opens_a_refund_of_the_extra_attempt(double_payment, refunder):
    item, second = double_payment
    assert item.amount == Decimal("150.00")

    refund = item_open_refund(item_id=item.pk, actor=refunder, reason="You paid twice for one order")

    item.refresh_from_db()
    assert refund.payment == second
    assert refund.amount == Decimal("150.00")
    assert refund.method == RefundMethod.REVERSAL
    assert refund.requested_by == refunder
    assert (item.status, item.resolution, item.refund) == (
        ItemStatus.RESOLVED,
        Resolution.REFUND_OPENED,
        refund,
    )
    assert audited(item, AuditAction.RECONCILIATION_REFUND_OPENED)[0].actor == refunder
    assert audited(refund, AuditAction.REFUND_REQUESTED)

    run()
    item.refresh_from_db()
    assert (item.status, item.refund) == (ItemStatus.RESOLVED, refund)


def test_only_a_double_payment_opens_a_refund(unrecorded, refunder):
    item, _line = unrecorded
    with pytest.raises(ReconciliationError):
        item_open_refund(item_id=item.pk, actor=refunder, reason="Paid twice")
    assert not Refund.objects.exists()
