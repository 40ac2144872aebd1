"""Which payment or refund a statement line is: receipts, then phone digits, amount and time."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditAction, AuditEntry
from payments.models import EventKind, EventSource, Payment, PaymentStatus, RefundMethod
from statements.matching import match_lines
from statements.models import LineKind, MatchMethod, StatementLine
from tests.statements.conftest import DAY_END, DAY_START, OTHER_PHONE, PHONE, at, shortcode


def match(actor=None):
    return match_lines(shortcode=shortcode(), period_start=DAY_START, period_end=DAY_END, actor=actor)


def fresh(obj):
    obj.refresh_from_db()
    return obj


# --- receipts --------------------------------------------------------------------------------------
def test_a_line_takes_the_payment_with_its_receipt(rows):
    statement = rows.statement()
    payment = rows.payment()
    line = rows.paid_line(statement, payment)

    counts = match()

    line = fresh(line)
    assert counts.by_receipt == 1
    assert line.payment == payment
    assert line.match_method == MatchMethod.RECEIPT
    assert line.matched_at is not None


def test_lines_that_moved_no_money_are_not_matched(rows):
    statement = rows.statement()
    payment = rows.payment()
    line = rows.paid_line(statement, payment, status="Failed")

    match()

    assert fresh(line).payment is None


def test_lines_outside_the_period_are_left_for_their_own_run(rows):
    statement = rows.statement()
    payment = rows.payment(initiated_at=at(9, day=11))
    line = rows.paid_line(statement, payment)

    match()

    assert fresh(line).payment is None


# --- phone, amount and time: the receipt the statement brings -----------------------------------------
def test_a_masked_line_fills_the_receipt_of_the_one_payment_completed_on_a_query(rows, importer):
    statement = rows.statement(imported_by=importer)
    payment = rows.payment(receipt_pending=True)
    line = rows.masked_line(statement, amount="100", completed_at=at(9, 0, 40))

    counts = match(actor=importer)

    line, payment = fresh(line), fresh(payment)
    assert counts.receipts_filled == 1
    assert line.payment == payment
    assert line.match_method == MatchMethod.DETAILS
    assert payment.mpesa_receipt_number == line.receipt
    assert payment.receipt_pending is False
    event = payment.events.get(kind=EventKind.RECEIPT_FROM_STATEMENT)
    assert (event.source, event.actor) == (EventSource.STATEMENT, importer)
    entry = AuditEntry.objects.get(action=AuditAction.RECEIPT_FROM_STATEMENT, object_id=str(payment.pk))
    assert entry.actor == importer
    assert entry.data == {"line": str(line.pk)}


def test_an_unmasked_number_matches_too(rows):
    statement = rows.statement()
    payment = rows.payment(receipt_pending=True)
    line = rows.line(statement, paid_in="100", prefix=PHONE, suffix="", length=12)

    match()

    assert fresh(line).payment == payment
    assert fresh(payment).receipt_pending is False


def test_other_visible_digits_are_another_customer(rows):
    statement = rows.statement()
    payment = rows.payment(receipt_pending=True, phone=OTHER_PHONE)
    line = rows.masked_line(statement)  # 2547*****149

    match()

    assert fresh(line).payment is None
    assert fresh(payment).receipt_pending is True


def test_another_amount_is_another_payment(rows):
    statement = rows.statement()
    payment = rows.payment(receipt_pending=True, amount="100")
    line = rows.masked_line(statement, amount="101")

    match()

    assert fresh(line).payment is None
    assert fresh(payment).receipt_pending is True


def test_a_push_accepted_longer_ago_than_the_window_is_not_a_candidate(rows, settings):
    statement = rows.statement()
    settings.STATEMENT_MATCH_WINDOW_MINUTES = 10
    payment = rows.payment(receipt_pending=True, initiated_at=at(9))
    late = rows.masked_line(statement, completed_at=at(9, 10, 1))
    # A minute of slack for whole-second statement times and Safaricom's clock, not more.
    early = rows.masked_line(statement, completed_at=at(8, 58, 59))

    match()

    assert fresh(late).payment is None
    assert fresh(early).payment is None
    assert fresh(payment).receipt_pending is True


def test_a_line_timed_a_moment_before_the_push_was_recorded_is_still_its_payment(rows):
    # The statement's whole seconds and Safaricom's clock against ours: the line may read 09:00:00 for a
    # push we recorded as accepted at 09:00:00.7.
    statement = rows.statement()
    payment = rows.payment(receipt_pending=True, initiated_at=at(9) + dt.timedelta(milliseconds=700))
    line = rows.masked_line(statement, completed_at=at(9))

    match()

    assert fresh(line).payment == payment


def test_an_attempt_never_initiated_is_timed_by_its_creation(rows):
    statement = rows.statement()
    payment = rows.payment(receipt_pending=True)
    Payment.objects.filter(pk=payment.pk).update(initiated_at=None, created_at=at(9, 0, 5))
    line = rows.masked_line(statement, completed_at=at(9, 0, 40))

    match()

    assert fresh(line).payment == payment


def test_two_payments_that_fit_are_left_to_staff(rows):
    statement = rows.statement()
    first = rows.payment(receipt_pending=True, initiated_at=at(9, 0))
    second = rows.payment(receipt_pending=True, initiated_at=at(9, 1))
    line = rows.masked_line(statement, completed_at=at(9, 2))

    counts = match()

    assert counts.receipts_filled == 0
    assert fresh(line).payment is None
    assert fresh(first).receipt_pending and fresh(second).receipt_pending


def test_a_retry_completed_on_a_query_takes_the_line_beside_its_failed_first_attempt(rows):
    statement = rows.statement()
    order = rows.order()
    failed = rows.payment(order=order, status=PaymentStatus.FAILED, initiated_at=at(9, 0))
    retry = rows.payment(order=order, receipt_pending=True, initiated_at=at(9, 2))
    line = rows.masked_line(statement, completed_at=at(9, 3))

    counts = match()

    assert counts.receipts_filled == 1
    assert fresh(line).payment == retry
    assert fresh(retry).mpesa_receipt_number == line.receipt
    assert fresh(failed).status == PaymentStatus.FAILED and fresh(failed).mpesa_receipt_number is None


def test_a_payment_two_lines_fit_is_left_to_staff(rows):
    statement = rows.statement()
    payment = rows.payment(receipt_pending=True)
    one = rows.masked_line(statement, completed_at=at(9, 0, 40))
    other = rows.masked_line(statement, completed_at=at(9, 1, 40))

    match()

    assert fresh(one).payment is None and fresh(other).payment is None
    assert fresh(payment).receipt_pending is True


def test_the_account_number_tells_two_candidates_apart(rows):
    statement = rows.statement()
    ours = rows.payment(receipt_pending=True, account_reference="ORD-1")
    theirs = rows.payment(receipt_pending=True, account_reference="ORD-2")
    line = rows.masked_line(statement, account="ord-1")

    match()

    assert fresh(line).payment == ours
    assert fresh(theirs).receipt_pending is True


@pytest.mark.parametrize(
    "state",
    [
        {"status": PaymentStatus.FAILED},
        {"status": PaymentStatus.INITIATED},
        {"status": PaymentStatus.NEEDS_REVIEW},
    ],
    ids=["failed", "initiated", "needs_review"],
)
def test_an_attempt_not_completed_is_never_matched_automatically(rows, state):
    statement = rows.statement()
    payment = rows.payment(**state)
    line = rows.masked_line(statement)

    match()

    assert fresh(line).payment is None
    assert fresh(payment).status == state["status"]
    assert fresh(payment).mpesa_receipt_number is None


def test_a_line_without_phone_digits_names_no_payment(rows):
    statement = rows.statement()
    payment = rows.payment(receipt_pending=True)
    line = rows.line(statement, paid_in="100")

    match()

    assert fresh(line).payment is None
    assert fresh(payment).receipt_pending is True


# --- money out: refunds ------------------------------------------------------------------------------
def test_a_reversal_line_takes_the_refund_with_its_receipt(rows):
    statement = rows.statement()
    refund = rows.refund(rows.payment(), transaction_id="SRV0000001")
    line = rows.line(
        statement, kind=LineKind.REVERSAL, receipt="SRV0000001", withdrawn="100", linked="whatever"
    )

    counts = match()

    line = fresh(line)
    assert counts.refunds_by_receipt == 1
    assert (line.refund, line.match_method) == (refund, MatchMethod.RECEIPT)


def test_a_reversal_whose_receipt_we_never_learnt_is_linked_by_the_reversed_receipt(rows):
    statement = rows.statement()
    payment = rows.payment()
    refund = rows.refund(payment)
    line = rows.line(
        statement,
        kind=LineKind.REVERSAL,
        withdrawn="100",
        linked=payment.mpesa_receipt_number,
        completed_at=at(11, 0, 30),
    )

    counts = match()

    line = fresh(line)
    assert counts.refunds_linked == 1
    assert (line.refund, line.match_method) == (refund, MatchMethod.LINKED)


def test_a_reversal_of_another_amount_is_not_linked(rows):
    statement = rows.statement()
    payment = rows.payment()
    rows.refund(payment)
    line = rows.line(statement, kind=LineKind.REVERSAL, withdrawn="90", linked=payment.mpesa_receipt_number)

    match()

    assert fresh(line).refund is None


def test_a_b2c_line_takes_the_refund_with_its_receipt(rows):
    statement = rows.statement()
    refund = rows.refund(rows.payment(), amount="40", transaction_id="SBC0000001")
    line = rows.line(statement, kind=LineKind.B2C, receipt="SBC0000001", withdrawn="40")

    match()

    assert fresh(line).refund == refund


def test_a_b2c_refund_without_receipt_is_linked_by_phone_amount_and_time(rows):
    statement = rows.statement()
    refund = rows.refund(rows.payment(), amount="40", submitted_at=at(11), completed_at=at(11, 2))
    line = rows.line(
        statement,
        kind=LineKind.B2C,
        withdrawn="40",
        completed_at=at(11, 0, 50),
        prefix="2547",
        suffix="149",
        length=12,
    )
    before_sending = rows.line(
        statement, kind=LineKind.B2C, withdrawn="40", completed_at=at(10, 58, 59), prefix="2547", suffix="149"
    )

    match()

    line = fresh(line)
    assert refund.method == RefundMethod.B2C
    assert (line.refund, line.match_method) == (refund, MatchMethod.LINKED)
    assert fresh(before_sending).refund is None


def test_two_b2c_lines_that_fit_one_refund_are_left_unmatched(rows):
    statement = rows.statement()
    rows.refund(rows.payment(), amount="40", submitted_at=at(11), completed_at=at(11, 2))
    lines = [
        rows.line(statement, kind=LineKind.B2C, withdrawn="40", completed_at=at(11, 0, s), prefix="2547")
        for s in (20, 40)
    ]

    match()

    assert [fresh(line).refund for line in lines] == [None, None]


# --- scale -----------------------------------------------------------------------------------------
def test_matching_is_done_by_the_database_whatever_the_number_of_lines(rows):
    """Queries do not grow with lines: 20 lines and 400 lines take as many."""

    def queries_for(count: int, day: int) -> int:
        statement = rows.statement(period_start=at(0, day=day), period_end=at(23, 59, 59, day=day))
        receipts = [f"SBK{day:02d}{n:05d}" for n in range(count)]
        order = rows.order()
        start = at(8, day=day)
        payments = [
            Payment(
                order=order,
                method="mpesa",
                status=PaymentStatus.COMPLETED,
                amount=Decimal("50"),
                paid_amount=Decimal("50"),
                phone=PHONE,
                mpesa_receipt_number=receipt,
                initiated_at=start,
                completed_at=start + dt.timedelta(seconds=30),
            )
            for receipt in receipts
        ]
        Payment.objects.bulk_create(payments)
        StatementLine.objects.bulk_create(
            StatementLine(
                statement_import=statement,
                shortcode=statement.shortcode,
                receipt=receipt,
                kind=LineKind.CUSTOMER_PAYMENT,
                completed_at=start + dt.timedelta(seconds=n),
                transaction_status="Completed",
                paid_in=Decimal("50"),
                party_phone_prefix="2547",
                party_phone_suffix="149",
                party_phone_length=12,
            )
            for n, receipt in enumerate(receipts)
        )
        with CaptureQueriesContext(connection) as captured:
            counts = match_lines(
                shortcode=statement.shortcode,
                period_start=statement.period_start,
                period_end=statement.period_end,
            )
        assert counts.by_receipt == count
        return len(captured.captured_queries)

    assert queries_for(20, day=12) == queries_for(400, day=13)
