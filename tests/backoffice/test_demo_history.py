"""seed_demo --history: bulk demo history that obeys every rule the services keep, event for event."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count, Q, Sum
from django.utils import timezone

from backoffice.demo_history import HistoryWriter
from orders.models import Order, OrderStatus
from payments.models import (
    OPEN_STATUSES,
    PAID_STATUSES,
    EventKind,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from reports import selectors
from reports.periods import Period
from tests.payments.refunds_support import pay

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def history(db, products, django_user_model):
    storefront = django_user_model.objects.create_user("storefront")
    finance = django_user_model.objects.create_user("finance", is_staff=True)
    writer = HistoryWriter(owner=storefront, staff=finance, now=NOW, seed=11)
    counts = writer.run(days=20, attempts=1500)
    return counts


def test_the_history_has_the_volume_asked_for_and_nothing_in_flight(history):
    assert 1400 <= history.attempts <= 1600
    assert Payment.objects.count() == history.attempts
    assert not Payment.objects.filter(status__in=OPEN_STATUSES).exists()
    assert Payment.objects.filter(created_at__gte=NOW).count() == 0
    first = Payment.objects.order_by("created_at").first().created_at
    assert first >= NOW - dt.timedelta(days=20)


def test_every_row_keeps_the_rules_the_services_keep(history):
    # Every settled attempt says what settled it; a receipt belongs to one payment (the database says so).
    settled = Payment.objects.filter(status__in=(*PAID_STATUSES, PaymentStatus.FAILED))
    assert not settled.filter(settled_by="").exists()
    # Refunded amounts are the sum of the refunds that paid out.
    for payment in Payment.objects.filter(refunds__isnull=False).distinct():
        paid_out = payment.refunds.filter(status=RefundStatus.SUCCEEDED).aggregate(total=Sum("amount"))[
            "total"
        ]
        assert payment.refunded_amount == (paid_out or 0)
    # An order is confirmed iff it has a paid attempt or accepted cash on delivery.
    accepted = Q(payments__status__in=(*PAID_STATUSES, PaymentStatus.PENDING_DELIVERY))
    orders = Order.objects.annotate(accepted=Count("payments", filter=accepted))
    assert not orders.filter(status=OrderStatus.CONFIRMED, accepted=0).exists()
    assert not orders.filter(accepted__gt=0).exclude(status=OrderStatus.CONFIRMED).exists()
    # Each attempt's history ends in its status, through legal steps from its creation.
    for payment in Payment.objects.order_by("?")[:200]:
        steps = list(payment.events.exclude(to_status="").values_list("from_status", "to_status"))
        assert steps[0][0] == "" and steps[-1][1] == payment.status, (payment.pk, steps)
        for (_before, after), (following_from, _after) in zip(steps, steps[1:], strict=False):
            assert following_from == after, (payment.pk, steps)


def test_a_history_attempt_paid_by_callback_has_the_events_the_services_write(
    history, place_order, fake_daraja
):
    _order, live = place_order()
    pay(live)
    served = list(live.events.order_by("pk").values_list("kind", "source", "from_status", "to_status"))
    sample = (
        Payment.objects.filter(
            method=PaymentMethod.MPESA, status=PaymentStatus.COMPLETED, settled_by="callback"
        )
        .exclude(pk=live.pk)
        .first()
    )
    written = list(sample.events.order_by("pk").values_list("kind", "source", "from_status", "to_status"))

    assert written == served
    assert [kind for kind, *_ in written] == [
        EventKind.CREATED,
        EventKind.PUSH_ACCEPTED,
        EventKind.RESULT_APPLIED,
    ]


def test_the_history_shows_a_business_on_the_dashboard(history):
    period = Period(dt.date(2026, 11, 17), dt.date(2026, 12, 6))
    figures = selectors.summary(period)

    assert 0.7 < figures.attempt_success < 0.9
    assert figures.technical_success > 0.9
    assert figures.settled_by["query"] > 0 and figures.settled_by["system"] > 0
    assert {failure.result_code for failure in figures.failures} >= {"1032", "1", "2001"}
    assert Refund.objects.filter(status=RefundStatus.SUCCEEDED).exists()
    assert figures.collected > 0 and figures.refunded > 0
    assert Payment.objects.filter(method=PaymentMethod.COD, status=PaymentStatus.COMPLETED).exists()


def test_in_the_bad_hour_safaricom_fails_most_prompts(db, products, django_user_model):
    writer = HistoryWriter(owner=None, staff=None, now=NOW, seed=3)
    bad = writer.bad_hour() + dt.timedelta(minutes=20)
    normal = bad - dt.timedelta(hours=3)

    system_failures = sum(writer.outcome(bad)[1] in ("1025", "26", "") for _ in range(400))
    usual_failures = sum(writer.outcome(normal)[1] in ("1025", "26") for _ in range(400))

    assert bad.astimezone(dt.timezone(dt.timedelta(hours=3))).hour == 14
    assert system_failures > 200 and usual_failures < 20


def test_seed_demo_writes_history_once(db, products):
    out = StringIO()
    call_command("seed_demo", "--history", "3", "--attempts", "60", "--logins-file", "", stdout=out)
    attempts = Payment.objects.count()
    call_command("seed_demo", "--history", "3", "--attempts", "60", "--logins-file", "", stdout=out)

    assert 40 <= attempts <= 80 and Payment.objects.count() == attempts
    assert "Demo history is already there" in out.getvalue()
    assert timezone.now() > Payment.objects.latest("created_at").created_at


def test_history_written_again_later_repeats_no_receipt_or_key(history, django_user_model):
    writer = HistoryWriter(
        owner=django_user_model.objects.get(username="storefront"),
        staff=django_user_model.objects.get(username="finance"),
        now=NOW + dt.timedelta(days=30),
        seed=11,
    )

    counts = writer.run(days=20, attempts=800)

    assert counts.attempts > 700
    receipts = Payment.objects.exclude(mpesa_receipt_number=None)
    assert receipts.values("mpesa_receipt_number").distinct().count() == receipts.count()
