"""What the statement leaves for a person, told everywhere attention is: the alert rule "Completed but not
on the statement" (fires from its threshold, clears when none is left), the report's "Needs attention now"
(the payments, masked, and the open exceptions by kind) and the dashboard's attention list."""

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from reports.alerts.services import alert_evaluate_all, describe_figures
from reports.attention import attention_items
from reports.models import Alert, AlertKind, AlertRule, AlertStatus, RunTrigger
from reports.periods import Period
from reports.report_email import report_figures
from reports.report_services import report_send
from statements.imports import statement_import
from statements.models import ImportSource, ItemKind, ItemStatus, ReconciliationItem, ReconciliationRun
from tests.payments.refunds_support import pay
from tests.statements.statement_files import customer_payment, statement_csv

pytestmark = pytest.mark.django_db

PHONE = "254708374149"


@pytest.fixture(autouse=True)
def alerting(settings):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_SMS_NUMBERS = []
    settings.STATEMENT_MISSING_GRACE_MINUTES = 5
    AlertRule.objects.exclude(kind=AlertKind.MISSING_FROM_STATEMENT).update(enabled=False)


@pytest.fixture
def rule():
    """Created by the migration, as on every installation."""
    return AlertRule.objects.get(kind=AlertKind.MISSING_FROM_STATEMENT)


@pytest.fixture
def paid(fake_daraja, place_order, django_capture_on_commit_callbacks):
    """Two payments completed an hour ago."""
    payments = []
    with django_capture_on_commit_callbacks(execute=True):
        for receipt in ("SGR7MISS001", "SGR7MISS002"):
            _order, payment = place_order(phone=PHONE)
            payments.append(pay(payment, receipt=receipt))
    hour_ago = timezone.now() - dt.timedelta(hours=1)
    for payment in payments:
        type(payment).objects.filter(pk=payment.pk).update(completed_at=hour_ago)
        payment.refresh_from_db()
    return payments


def import_statement(lines: list[dict], *, reconcile: bool = True):
    now = timezone.localtime()
    content = statement_csv(lines, period=(now - dt.timedelta(hours=3), now))
    return statement_import(
        fileobj=io.BytesIO(content),
        file_name="statement.csv",
        actor=None,
        source=ImportSource.COMMAND,
        reconcile=reconcile,
    )


def a_line_for(payment) -> dict:
    return customer_payment(
        payment.mpesa_receipt_number, payment.amount, at=timezone.localtime(payment.completed_at)
    )


def test_the_migration_creates_the_rule_firing_from_one_payment(rule):
    assert rule.enabled and rule.min_volume == 1


def test_no_statement_no_alert_then_payments_missing_from_one_open_it_with_their_figures(rule, paid):
    alert_evaluate_all(now=timezone.now())
    assert not Alert.objects.exists()  # no statement covers them yet: nothing to compare

    import_statement([a_line_for(paid[0])])  # the statement shows only the first
    alert_evaluate_all(now=timezone.now())

    alert = Alert.objects.get(rule=rule)
    assert alert.status == AlertStatus.OPEN
    assert alert.figures["payments"] == 1
    assert alert.figures["amount_kes"] == f"{paid[1].amount:.2f}"
    assert alert.figures["oldest_completed"] == paid[1].completed_at.isoformat()
    assert alert.figures["list"].startswith("/admin/statements/reconciliationitem/")
    assert "1 completed M-Pesa payment (KES" in alert.title
    assert "Payments not on the statement: 1" in describe_figures(alert.figures)


def test_below_the_rules_threshold_it_stays_quiet(rule, paid):
    AlertRule.objects.filter(pk=rule.pk).update(min_volume=3)
    import_statement([a_line_for(paid[0])], reconcile=False)
    alert_evaluate_all(now=timezone.now())
    assert not Alert.objects.filter(rule=rule).exists()


def test_it_clears_when_the_statement_shows_every_payment(rule, paid):
    import_statement([a_line_for(paid[0])])
    alert_evaluate_all(now=timezone.now())
    alert = Alert.objects.get(rule=rule)

    import_statement([a_line_for(paid[0]), a_line_for(paid[1])])  # a fuller statement, reconciled
    later = timezone.now() + dt.timedelta(minutes=rule.resolve_after_minutes + 1)
    alert_evaluate_all(now=timezone.now())
    alert_evaluate_all(now=later)

    alert.refresh_from_db()
    assert alert.latest_figures["payments"] == 0
    assert alert.status == AlertStatus.RESOLVED


def _open_items(kind: str, count: int) -> None:
    now = timezone.now()
    run = ReconciliationRun.objects.create(shortcode="174379", period_start=now, period_end=now)
    for number in range(count):
        ReconciliationItem.objects.create(
            key=f"{kind}:test-{number}",
            kind=kind,
            shortcode="174379",
            amount=Decimal("100"),
            occurred_at=now,
            first_run=run,
            last_run=run,
        )
    ReconciliationItem.objects.create(
        key=f"{kind}:resolved",
        kind=kind,
        status=ItemStatus.RESOLVED,
        shortcode="174379",
        amount=Decimal("100"),
        occurred_at=now,
        first_run=run,
        last_run=run,
    )


def test_the_report_lists_the_missing_payments_masked_and_open_exceptions_by_kind(paid):
    at = timezone.localtime() - dt.timedelta(hours=2)
    import_statement([customer_payment("SGR7OTHER01", 50, at=at)], reconcile=False)  # neither of ours
    _open_items(ItemKind.UNRECORDED_LINE, 2)
    _open_items(ItemKind.DOUBLE_PAYMENT, 1)
    today = timezone.localdate()

    report_send(
        period=Period(today, today), frequency="daily", to=["finance@example.com"], file_format="csv",
        trigger=RunTrigger.COMMAND,
    )  # fmt: skip

    figures = report_figures(Period(today, today)).statement
    assert figures.missing_count == 2
    assert figures.missing_amount == sum(p.amount for p in paid)
    assert [p.reference for p in figures.missing] == [p.order.reference for p in paid]
    assert {(row.kind, row.count) for row in figures.open_by_kind} == {
        (ItemKind.UNRECORDED_LINE, 2),
        (ItemKind.DOUBLE_PAYMENT, 1),
    }
    message = mail.outbox[-1]
    html = dict((mimetype, content) for content, mimetype in message.alternatives)["text/html"]
    for part in (html, message.body):
        assert "Completed but not on the statement: 2 payments" in part
        assert paid[0].order.reference in part and "2547*****149" in part
        assert PHONE not in part
        assert "Open reconciliation exceptions: 3" in part
        assert "Received but not recorded" in part and "Order paid twice" in part
    assert 'data-attention="missing_from_statement"' in html


def test_the_dashboard_attention_list_counts_both(admin_user, paid):
    import_statement([a_line_for(paid[0])])
    _open_items(ItemKind.AMOUNT_DIFFERENCE, 1)

    items = {item.key: item for item in attention_items(admin_user)}

    assert items["missing_from_statement"].count == 1
    assert items["missing_from_statement"].severity == "danger"
    # The run's exception for the payment missing from the statement, and the amount difference.
    assert items["reconciliation_exceptions"].count == 2
    assert "status=open" in items["reconciliation_exceptions"].url
