"""Reconciliation runs: the exceptions a period holds, kept across runs, and totals that balance."""

import datetime as dt
from decimal import Decimal

import pytest

from payments.models import Payment, PaymentStatus
from statements import selectors
from statements.exceptions import ReconciliationError
from statements.models import (
    ImportSource,
    ItemKind,
    ItemStatus,
    LineKind,
    ReconciliationItem,
    Resolution,
    StatementImport,
)
from statements.reconciliation import reconcile, reconcile_import
from statements.resolution import item_mark_expected
from tests.statements.conftest import DAY_END, DAY_START, at, shortcode


def run(**kwargs):
    return reconcile(shortcode=shortcode(), period_start=DAY_START, period_end=DAY_END, **kwargs)


def items(kind: str | None = None):
    found = ReconciliationItem.objects.order_by("pk")
    return list(found.filter(kind=kind) if kind else found)


def money(value: str) -> Decimal:
    return Decimal(value)


@pytest.fixture
def day(rows):
    """One day of a shop's M-PESA account with one of every exception (amounts worked out by hand):

    customer payment lines, paid in 840.00:
      P1 100 matched; P2 took 100, line shows 90 (difference -10); L3 250 nobody recorded (a failed
      attempt of 250 fits it); order O6 paid twice, 150 + 150, both on the statement; P7 100 matched;
      a failed line of 999 (ignored)
    ours, not on the statement: P4 300 completed at 12:00 (missing); P5 completed 23:50 (within the
      grace before the file's end: not yet)
    money out, 600.00: a reversal of 100 for P7's refund (matched by receipt); 500 with no refund
    a refund of 100 succeeded today with no line (for P10, paid the day before)
    charges 5.00 + 7.50
    """
    statement = rows.statement()
    p1 = rows.payment()
    p2 = rows.payment()
    failed = rows.payment(status=PaymentStatus.FAILED, amount="250", initiated_at=at(10))
    p4 = rows.payment(amount="300", initiated_at=at(12))
    p5 = rows.payment(initiated_at=at(23, 50))
    o6 = rows.order("150")
    p6a = rows.payment(order=o6, amount="150", initiated_at=at(13))
    p6b = rows.payment(order=o6, amount="150", initiated_at=at(13, 5))
    p7 = rows.payment()
    p10 = rows.payment(initiated_at=at(15, day=9))
    r7 = rows.refund(p7, transaction_id="SRV7000001")
    r10 = rows.refund(p10)
    lines = {
        "L1": rows.paid_line(statement, p1),
        "L2": rows.paid_line(statement, p2, paid_in="90"),
        "L3": rows.masked_line(statement, amount="250", completed_at=at(10, 1)),
        "L6a": rows.paid_line(statement, p6a),
        "L6b": rows.paid_line(statement, p6b),
        "L7": rows.paid_line(statement, p7),
        "failed": rows.masked_line(statement, amount="999", status="Failed"),
        "rev7": rows.line(
            statement, kind=LineKind.REVERSAL, receipt="SRV7000001", withdrawn="100", completed_at=at(11)
        ),
        "out": rows.line(statement, kind=LineKind.B2C, withdrawn="500", completed_at=at(16)),
        "charge1": rows.line(statement, kind=LineKind.CHARGE, withdrawn="5", completed_at=at(9, 1)),
        "charge2": rows.line(statement, kind=LineKind.CHARGE, withdrawn="7.50", completed_at=at(13, 1)),
    }
    return {
        "statement": statement,
        "lines": lines,
        "p2": p2,
        "failed": failed,
        "p4": p4,
        "p5": p5,
        "o6": o6,
        "p6b": p6b,
        "r7": r7,
        "r10": r10,
    }


def test_every_exception_of_a_day_is_found(day):
    reconciliation = run()

    (unrecorded,) = items(ItemKind.UNRECORDED_LINE)
    assert unrecorded.line == day["lines"]["L3"]
    assert unrecorded.amount == money("250.00")
    assert unrecorded.suggested_payment == day["failed"]
    (difference,) = items(ItemKind.AMOUNT_DIFFERENCE)
    assert (difference.line, difference.payment) == (day["lines"]["L2"], day["p2"])
    assert difference.amount == money("-10.00")
    (missing,) = items(ItemKind.MISSING_FROM_STATEMENT)
    assert missing.payment == day["p4"]
    assert missing.amount == money("300.00")
    (double,) = items(ItemKind.DOUBLE_PAYMENT)
    assert double.key == f"double_payment:{day['o6'].pk}"
    assert double.payment == day["p6b"]
    assert double.amount == money("150.00")
    (refund_missing,) = items(ItemKind.REFUND_WITHOUT_LINE)
    assert refund_missing.refund == day["r10"]
    day["lines"]["rev7"].refresh_from_db()
    assert day["lines"]["rev7"].refund == day["r7"]
    (out,) = items(ItemKind.LINE_WITHOUT_REFUND)
    assert out.line == day["lines"]["out"]
    assert out.amount == money("500.00")
    assert {item.status for item in items()} == {ItemStatus.OPEN}
    assert {(item.first_run_id, item.last_run_id) for item in items()} == {(reconciliation.pk,) * 2}
    assert reconciliation.totals["items"] == {kind: 1 for kind in ItemKind.values}
    assert reconciliation.totals["statuses"] == {"open": 6, "resolved": 0, "cleared": 0}


def test_the_totals_explain_the_difference_to_the_shilling(day):
    totals = run().totals
    figure = {key: money(value) for key, value in totals.items() if isinstance(value, str)}

    assert figure["statement_paid_in"] == money("840.00")
    assert figure["matched_in"] == money("590.00")
    assert figure["unmatched_in"] == money("250.00")
    assert figure["statement_paid_in"] == figure["matched_in"] + figure["unmatched_in"]
    assert figure["our_completed"] == money("900.00")
    assert figure["matched_completed"] == money("600.00")
    assert figure["missing_amount"] == money("300.00")
    assert figure["our_completed"] == figure["matched_completed"] + figure["missing_amount"]
    assert figure["amount_differences_total"] == money("-10.00")
    assert figure["difference"] == figure["statement_paid_in"] - figure["our_completed"] == money("-60.00")
    assert figure["explained"] == (
        figure["unmatched_in"] - figure["missing_amount"] + figure["amount_differences_total"]
    )
    assert figure["difference"] == figure["explained"]
    assert totals["balanced"] is True
    assert figure["statement_paid_out"] == money("600.00")
    assert figure["refunds_matched"] == money("100.00")
    assert figure["lines_without_refund"] == money("500.00")
    assert figure["statement_paid_out"] == figure["refunds_matched"] + figure["lines_without_refund"]
    assert figure["refunds_without_line"] == money("100.00")
    assert figure["charges_total"] == money("12.50")
    assert totals["statement_paid_in"] == "840.00"  # money as text with two decimals
    assert totals["counts"] == {
        "customer_payment_lines": 6,
        "matched_lines": 5,
        "unmatched_lines": 1,
        "money_out_lines": 2,
        "charge_lines": 2,
    }


def test_an_empty_period_balances_at_zero(rows):
    rows.statement()
    totals = run().totals

    assert totals["difference"] == totals["explained"] == "0.00"
    assert totals["statuses"] == {"open": 0, "resolved": 0, "cleared": 0}


def test_an_ambiguous_line_is_listed_with_a_suggestion_and_fills_nothing(rows):
    statement = rows.statement()
    earlier = rows.payment(receipt_pending=True, initiated_at=at(9, 0))
    later = rows.payment(receipt_pending=True, initiated_at=at(9, 1))
    line = rows.masked_line(statement, completed_at=at(9, 2))

    reconciliation = run()

    (item,) = items(ItemKind.UNRECORDED_LINE)
    assert item.line == line
    assert item.suggested_payment == later  # the push closest before the money arrived
    earlier.refresh_from_db()
    later.refresh_from_db()
    assert earlier.receipt_pending and later.receipt_pending
    assert reconciliation.totals["matched_now"]["receipts_filled"] == 0


# --- runs over the same period ---------------------------------------------------------------------
def test_running_a_period_again_adds_no_exception_twice(day):
    first = run()
    second = run()

    assert len(items()) == 6
    assert {(item.first_run_id, item.last_run_id) for item in items()} == {(first.pk, second.pk)}
    assert second.totals["difference"] == first.totals["difference"]


def test_an_exception_fixed_since_is_cleared(day, rows):
    run()
    # The missing payment's line arrives in a later file; the double payment's extra attempt is refunded.
    later = rows.statement(period_start=at(0, day=11), period_end=at(23, day=11))
    rows.paid_line(later, day["p4"], completed_at=at(12, 0, 30))
    Payment.objects.filter(pk=day["p6b"].pk).update(
        status=PaymentStatus.REFUNDED, refunded_amount=Decimal("150")
    )
    # The payment's line is matched when its own period is reconciled.
    reconcile(shortcode=shortcode(), period_start=later.period_start, period_end=later.period_end)

    again = run()

    assert items(ItemKind.MISSING_FROM_STATEMENT)[0].status == ItemStatus.CLEARED
    assert items(ItemKind.DOUBLE_PAYMENT)[0].status == ItemStatus.CLEARED
    assert items(ItemKind.MISSING_FROM_STATEMENT)[0].last_run == again
    # Open: the four others, and P5 now that the later file covers the grace after it.
    assert again.totals["statuses"] == {"open": 5, "resolved": 0, "cleared": 2}


def test_a_resolved_exception_stays_resolved(day, resolver):
    run()
    (out,) = items(ItemKind.LINE_WITHOUT_REFUND)
    item_mark_expected(item_id=out.pk, actor=resolver, note="Salary advance paid from the shop account")

    again = run()

    out.refresh_from_db()
    assert out.status == ItemStatus.RESOLVED
    assert out.resolution == Resolution.EXPECTED
    assert out.last_run == again
    assert again.totals["statuses"]["resolved"] == 1


def test_a_cleared_difference_that_comes_back_is_open_again(day):
    run()
    ReconciliationItem.objects.filter(kind=ItemKind.UNRECORDED_LINE).update(status=ItemStatus.CLEARED)

    run()

    assert items(ItemKind.UNRECORDED_LINE)[0].status == ItemStatus.OPEN


# --- what is missing, and when ----------------------------------------------------------------------
def test_a_payment_near_the_end_of_the_file_is_flagged_once_a_later_file_covers_it(day, rows):
    run()
    assert day["p5"].pk not in [item.payment_id for item in items(ItemKind.MISSING_FROM_STATEMENT)]

    next_day = rows.statement(period_start=at(0, day=11), period_end=at(23, 59, 59, day=11))
    reconcile_import(next_day)
    run()

    flagged = [item for item in items(ItemKind.MISSING_FROM_STATEMENT) if item.payment_id == day["p5"].pk]
    assert len(flagged) == 1
    assert flagged[0].key == f"missing_from_statement:{day['p5'].pk}"


def test_another_shortcode_has_none_of_our_payments(day, rows):
    reconcile(shortcode="600999", period_start=DAY_START, period_end=DAY_END)

    assert items() == []


def test_the_selector_lists_paid_payments_a_statement_covers_without_their_line(day, rows, resolver):
    run()  # matches the day's lines

    missing = selectors.payments_missing_from_statement()
    assert set(missing) == {day["p4"]}  # p5 is within the grace before the file's end; p10 before it
    assert selectors.payments_missing_from_statement(shortcode="600999").count() == 0
    assert selectors.payments_missing_from_statement(now=at(12, 10)).count() == 0
    (item,) = items(ItemKind.MISSING_FROM_STATEMENT)
    item_mark_expected(item_id=item.pk, actor=resolver, note="Paid in cash at the counter, not M-Pesa")

    assert selectors.payments_missing_from_statement().count() == 0


def test_open_exceptions_and_a_run_summary_for_display(day):
    reconciliation = run()

    assert selectors.open_items_count() == 6
    assert selectors.open_items_by_kind() == {kind: 1 for kind in ItemKind.values}
    summary = selectors.run_summary(reconciliation)
    assert summary["balanced"] is True
    assert summary["money"]["difference"] == money("-60.00")
    assert summary["items"][ItemKind.UNRECORDED_LINE][ItemStatus.OPEN] == 1
    assert summary["open"] == 6


# --- imports -----------------------------------------------------------------------------------------
def test_an_import_is_reconciled_over_its_period_in_the_importers_name(rows, importer):
    statement = rows.statement(imported_by=importer)
    payment = rows.payment(receipt_pending=True)
    rows.masked_line(statement)

    reconciliation = reconcile_import(statement)

    assert (reconciliation.period_start, reconciliation.period_end) == (DAY_START, DAY_END)
    assert reconciliation.started_by == importer
    assert reconciliation.statement_import == statement
    payment.refresh_from_db()
    assert payment.receipt_pending is False
    assert payment.events.get(kind="receipt_from_statement").actor == importer


def test_an_import_without_a_stated_period_covers_its_lines(rows):
    statement = rows.statement(period_start=None, period_end=None)
    rows.masked_line(statement, completed_at=at(9, 5))
    rows.masked_line(statement, completed_at=at(17, 45))

    reconciliation = reconcile_import(statement)

    assert reconciliation.period_start == at(9, 5)
    assert reconciliation.period_end == at(17, 45)
    assert reconciliation.started_by is None


def test_a_period_that_ends_before_it_starts_is_refused(rows):
    with pytest.raises(ReconciliationError):
        reconcile(shortcode=shortcode(), period_start=DAY_END, period_end=DAY_START - dt.timedelta(seconds=1))


def test_a_pulled_window_holds_customer_payments_only_so_refunds_are_not_missing_from_it(rows):
    paid = rows.payment(initiated_at=at(11))
    rows.refund(paid, completed_at=at(11, 30))
    pulled = rows.statement()
    StatementImport.objects.filter(pk=pulled.pk).update(source=ImportSource.PULL)
    pulled.refresh_from_db()
    rows.paid_line(pulled, paid)

    reconcile(shortcode=shortcode(), period_start=DAY_START, period_end=DAY_END, statement_import=pulled)

    assert not items(ItemKind.REFUND_WITHOUT_LINE)
    assert not items(ItemKind.MISSING_FROM_STATEMENT)

    # The portal's statement for the day lists money out too: there the refund's line is missing.
    reconcile(
        shortcode=shortcode(), period_start=DAY_START, period_end=DAY_END, statement_import=rows.statement()
    )

    (missing,) = items(ItemKind.REFUND_WITHOUT_LINE)
    assert missing.refund.payment == paid
