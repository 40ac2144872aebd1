"""Every figure of the analytics layer, exact, on a hand-built history (tests/reports/dataset.py)."""

import datetime as dt
from decimal import Decimal

import pytest

from reports import selectors
from reports.periods import Period, PeriodError, period_between, period_named
from tests.reports import dataset

NOVEMBER_10_11 = Period(dt.date(2026, 11, 10), dt.date(2026, 11, 11))


@pytest.fixture
def history(api_user):
    return dataset.build(api_user)


def test_every_figure_of_the_period_is_exact(history):
    figures = selectors.summary(NOVEMBER_10_11)

    assert (
        figures.attempts_total,
        figures.attempts_completed,
        figures.attempts_failed,
        figures.attempts_in_flight,
        figures.attempts_under_review,
    ) == (7, 2, 3, 1, 1)
    assert figures.attempt_success == pytest.approx(0.4)
    assert figures.technical_success == pytest.approx(0.5)
    assert (figures.orders_with_mpesa_attempt, figures.orders_paid) == (6, 2)
    assert figures.order_conversion == pytest.approx(1 / 3)
    assert figures.settled_by == {"callback": 2, "query": 2, "staff": 0, "push": 0, "system": 1}
    assert (figures.time_to_result_p50, figures.time_to_result_p90) == (28.0, 60.0)
    assert figures.collected == Decimal("500.00") and str(figures.collected) == "500.00"
    assert figures.refunded == Decimal("100.00")
    assert figures.net == Decimal("400.00")
    assert (figures.refunds_in_flight, figures.refunds_in_flight_count) == (Decimal("20.00"), 1)
    assert (figures.cod_awaiting, figures.cod_awaiting_count) == (Decimal("300.00"), 1)


def test_failures_are_broken_down_by_class_and_code_in_plain_words(history):
    failures = selectors.summary(NOVEMBER_10_11).failures

    assert [(f.failure_class, f.result_code, f.reason, f.count) for f in failures] == [
        ("customer", "1032", "Cancelled by the customer", 1),
        ("expired", "", "No answer before the deadline", 1),
        ("system", "26", "M-Pesa busy", 1),
    ]


def test_the_daily_series_splits_at_nairobi_midnight(history):
    daily = selectors.summary(NOVEMBER_10_11).daily

    assert [(d.date, d.attempts, d.completed, d.failed, d.collected, d.refunded) for d in daily] == [
        (dt.date(2026, 11, 10), 3, 1, 2, Decimal("150.00"), Decimal("0.00")),
        (dt.date(2026, 11, 11), 4, 1, 1, Decimal("350.00"), Decimal("100.00")),
    ]
    assert daily[0].attempt_success == pytest.approx(1 / 3)


def test_a_refund_paid_out_after_the_period_counts_in_the_next(history):
    next_day = selectors.summary(Period(dt.date(2026, 11, 12), dt.date(2026, 11, 12)))

    assert next_day.refunded == Decimal("50.00")
    assert next_day.attempts_total == 0 and next_day.collected == Decimal("0.00")


def test_a_period_without_attempts_has_no_rates_rather_than_zero(db):
    figures = selectors.summary(NOVEMBER_10_11)

    assert figures.attempts_total == 0
    assert (figures.attempt_success, figures.technical_success, figures.order_conversion) == (
        None,
        None,
        None,
    )
    assert (figures.time_to_result_p50, figures.time_to_result_p90) == (None, None)
    assert figures.collected == Decimal("0.00") and figures.failures == []
    assert [d.attempts for d in figures.daily] == [0, 0]
    assert all(d.attempt_success is None for d in figures.daily)


def test_only_in_flight_attempts_give_no_success_rate_and_no_failure(api_user):
    dataset.attempt(dataset.order(api_user), created=dataset.eat(10, 9), status="initiated")
    dataset.attempt(dataset.order(api_user), created=dataset.eat(10, 9), status="pending")

    figures = selectors.summary(NOVEMBER_10_11)

    assert (figures.attempts_total, figures.attempts_in_flight, figures.attempts_failed) == (2, 2, 0)
    assert figures.attempt_success is None and figures.order_conversion == 0


def test_a_method_filter_narrows_money_and_attempts(history):
    cash = selectors.summary(NOVEMBER_10_11, selectors.Filters(method="cod"))
    mpesa = selectors.summary(NOVEMBER_10_11, selectors.Filters(method="mpesa"))

    assert cash.attempts_total == 0 and cash.collected == Decimal("150.00")
    assert cash.cod_awaiting == Decimal("300.00") and cash.refunded == Decimal("0.00")
    assert mpesa.attempts_total == 7 and mpesa.collected == Decimal("350.00")
    assert mpesa.refunded == Decimal("100.00")


def test_a_channel_filter_keeps_one_storefronts_orders(history, django_user_model):
    other_shop = django_user_model.objects.create_user("other-shop")
    dataset.attempt(dataset.order(other_shop), created=dataset.eat(10, 9), status="completed", took=5,
                    settled_by="callback")  # fmt: skip

    assert selectors.summary(NOVEMBER_10_11).attempts_total == 8
    assert selectors.summary(NOVEMBER_10_11, selectors.Filters(channel="other-shop")).attempts_total == 1


def test_attempts_by_hour_of_day_are_nairobi_hours(history):
    hours = selectors.hourly_profile(NOVEMBER_10_11)

    assert len(hours) == 24
    assert hours[8] == {"hour": 8, "attempts": 2, "completed": 1, "failed": 1, "failed_not_by_customer": 0}
    assert hours[23]["attempts"] == 1 and hours[0]["attempts"] == 1
    assert sum(h["attempts"] for h in hours) == 7


# --- periods --------------------------------------------------------------------------------------
def test_named_periods_are_whole_nairobi_days():
    today = dt.date(2026, 12, 6)

    assert period_named("today", today=today) == Period(today, today, "today")
    assert period_named("yesterday", today=today).first == dt.date(2026, 12, 5)
    assert period_named("last_7_days", today=today).days == 7
    assert period_named("last_30_days", today=today).first == dt.date(2026, 11, 7)
    month = period_named("this_month", today=today)
    assert (month.first, month.last) == (dt.date(2026, 12, 1), today)
    assert month.previous() == Period(dt.date(2026, 11, 1), dt.date(2026, 11, 6), "previous_month")
    assert period_named("last_7_days", today=today).previous().last == dt.date(2026, 11, 29)
    assert NOVEMBER_10_11.start.isoformat() == "2026-11-10T00:00:00+03:00"
    assert NOVEMBER_10_11.end.isoformat() == "2026-11-12T00:00:00+03:00"


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-11-30", "2026-11-01", "ends before it starts"),
        ("2026-13-01", "2026-11-01", "YYYY-MM-DD"),
        ("2024-01-01", "2026-01-01", "at most 366 days"),
    ],
)
def test_a_bad_custom_period_is_refused_with_a_reason(first, last, message):
    with pytest.raises(PeriodError, match=message):
        period_between(first, last)


def test_figures_people_read_are_cached_for_a_short_while_and_fresh_on_request(history, api_user, settings):
    settings.REPORTS_CACHE_SECONDS = 60
    first = selectors.summary(NOVEMBER_10_11)
    dataset.attempt(dataset.order(api_user), created=dataset.eat(10, 9), status="completed", took=5,
                    settled_by="callback")  # fmt: skip

    assert selectors.summary(NOVEMBER_10_11).attempts_total == first.attempts_total == 7
    assert selectors.summary(NOVEMBER_10_11).computed_at == first.computed_at
    assert selectors.summary(NOVEMBER_10_11, fresh=True).attempts_total == 8
    settings.REPORTS_CACHE_SECONDS = 0
    assert selectors.summary(NOVEMBER_10_11).attempts_total == 8
