"""The one source of every figure shown to people: the dashboard, the staff API, report emails and alerts.

Every function takes a Period (whole Africa/Nairobi days) and optional Filters, aggregates in the database
(conditional aggregates, Nairobi date truncation) and returns plain data: counts as int, money as Decimal
with 2 places, rates as float 0..1 or None when there is nothing to divide. FORMULAS states each figure the
way it is shown next to it and in the README.
"""

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Count,
    DecimalField,
    F,
    Func,
    Max,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from payments.daraja.codes import known_result_code, meaning_of
from payments.models import (
    OPEN_STATUSES,
    PAID_STATUSES,
    REFUND_IN_FLIGHT_STATUSES,
    CallbackInbox,
    FailureClass,
    InboxKind,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    SettledBy,
)
from reports.functions import NairobiDate, NairobiHour, SecondsBetween
from reports.periods import Period

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MONEY = DecimalField(max_digits=14, decimal_places=2)

FORMULAS = {
    "attempt_success": "Completed M-Pesa attempts ÷ attempts that reached a final state (completed + failed), "
    "of the attempts created in the period. In-flight and under-review attempts are not counted as failures.",
    "technical_success": "Completed ÷ (completed + failures not caused by the customer). Customer outcomes "
    "(cancelled on the phone, wrong PIN, insufficient balance, phone unreachable, limits, PIN locked) are "
    "left out; system, configuration, expired and unknown failures count. Low means we or Safaricom fail.",
    "order_conversion": "Orders with a paid M-Pesa attempt ÷ orders with at least one M-Pesa attempt, of the "
    "attempts created in the period (a retry that succeeds counts once).",
    "collected": "Sum of what was paid (M-Pesa and cash on delivery) on payments completed in the period, "
    "before refunds.",
    "refunded": "Sum of refunds (reversals and B2C) whose money went out in the period.",
    "net": "Collected − refunded.",
    "refunds_in_flight": "Refunds requested in the period that are not settled yet (awaiting approval, being "
    "sent, or outcome unknown).",
    "cod_awaiting": "Cash-on-delivery orders placed in the period whose cash is not collected yet.",
    "paid_orders": "Orders with a paid M-Pesa attempt created in the period.",
    "in_flight": "M-Pesa attempts created in the period still waiting for M-Pesa's answer.",
    "settled_by": "What first gave each settled attempt its final state: the callback, an STK Query, staff, "
    "a refusal when the prompt was sent, or the deadline. A rising query share means callbacks are lost.",
    "time_to_result": "Seconds from the accepted prompt to M-Pesa's final answer (callback or STK Query), "
    "nearest-rank percentiles.",
    "query_share": "Attempts settled by an STK Query ÷ attempts settled by the callback or an STK Query. The "
    "sweeper only asks when no callback came, so a rising share means callbacks are being lost.",
}


@dataclass(frozen=True)
class Filters:
    """Narrow every figure: `method` (mpesa, cod, card) and `channel` (the API user that placed the order,
    i.e. the storefront or app)."""

    method: str | None = None
    channel: str | None = None

    def payments(self, queryset: QuerySet[Payment]) -> QuerySet[Payment]:
        if self.method:
            queryset = queryset.filter(method=self.method)
        if self.channel:
            queryset = queryset.filter(order__owner__username=self.channel)
        return queryset

    def refunds(self, queryset: QuerySet[Refund]) -> QuerySet[Refund]:
        if self.method:
            queryset = queryset.filter(payment__method=self.method)
        if self.channel:
            queryset = queryset.filter(payment__order__owner__username=self.channel)
        return queryset


NO_FILTERS = Filters()


@dataclass(frozen=True)
class Failure:
    failure_class: str
    result_code: str
    reason: str
    count: int


@dataclass(frozen=True)
class Day:
    date: dt.date
    attempts: int
    completed: int
    failed: int
    collected: Decimal
    refunded: Decimal

    @property
    def attempt_success(self) -> float | None:
        return ratio(self.completed, self.completed + self.failed)


@dataclass(frozen=True)
class Summary:
    period: Period
    attempts_total: int
    attempts_completed: int
    attempts_failed: int
    attempts_in_flight: int
    attempts_under_review: int
    failed_not_by_customer: int
    orders_with_mpesa_attempt: int
    orders_paid: int
    collected: Decimal
    refunded: Decimal
    settled_by: dict[str, int]
    time_to_result_p50: float | None
    time_to_result_p90: float | None
    failures: list[Failure] = field(default_factory=list)
    daily: list[Day] = field(default_factory=list)
    refunds_in_flight: Decimal | None = None
    refunds_in_flight_count: int | None = None
    cod_awaiting: Decimal | None = None
    cod_awaiting_count: int | None = None
    computed_at: dt.datetime = field(default_factory=timezone.now)

    @property
    def attempt_success(self) -> float | None:
        return ratio(self.attempts_completed, self.attempts_completed + self.attempts_failed)

    @property
    def technical_success(self) -> float | None:
        return ratio(self.attempts_completed, self.attempts_completed + self.failed_not_by_customer)

    @property
    def order_conversion(self) -> float | None:
        return ratio(self.orders_paid, self.orders_with_mpesa_attempt)

    @property
    def net(self) -> Decimal:
        return self.collected - self.refunded

    @property
    def attempts_finished(self) -> int:
        return self.attempts_completed + self.attempts_failed

    @property
    def query_share(self) -> float | None:
        by_query = self.settled_by.get(SettledBy.QUERY, 0)
        return ratio(by_query, by_query + self.settled_by.get(SettledBy.CALLBACK, 0))


def ratio(part: int, whole: int) -> float | None:
    return None if not whole else part / whole


def money(value) -> Decimal:
    return (value or ZERO).quantize(CENT)


# --- querysets every figure starts from -------------------------------------------------------------
def mpesa_attempts(period: Period, filters: Filters = NO_FILTERS) -> QuerySet[Payment]:
    """M-Pesa attempts created in the period (a retry is an attempt of its own)."""
    if filters.method and filters.method != PaymentMethod.MPESA:
        return Payment.objects.none()
    return filters.payments(
        Payment.objects.filter(
            method=PaymentMethod.MPESA, created_at__gte=period.start, created_at__lt=period.end
        )
    )


def payments_collected(period: Period, filters: Filters = NO_FILTERS) -> QuerySet[Payment]:
    """Paid payments (any method) whose money came in during the period."""
    return filters.payments(
        Payment.objects.filter(
            status__in=PAID_STATUSES, completed_at__gte=period.start, completed_at__lt=period.end
        )
    )


def refunds_paid_out(period: Period, filters: Filters = NO_FILTERS) -> QuerySet[Refund]:
    """Refunds whose money went out during the period (an over-refund went out too)."""
    return filters.refunds(
        Refund.objects.filter(
            status__in=(RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED),
            completed_at__gte=period.start,
            completed_at__lt=period.end,
        )
    )


PAID_AMOUNT = Coalesce("paid_amount", "amount", output_field=MONEY)


# --- the summary ------------------------------------------------------------------------------------
def attempt_counts(attempts: QuerySet[Payment]) -> dict[str, int]:
    paid = Q(status__in=PAID_STATUSES)
    failed = Q(status=PaymentStatus.FAILED)
    settled = {
        f"settled_{choice}": Count("pk", filter=Q(settled_by=choice)) for choice in SettledBy.values if choice
    }
    return attempts.aggregate(
        total=Count("pk"),
        completed=Count("pk", filter=paid),
        failed=Count("pk", filter=failed),
        in_flight=Count("pk", filter=Q(status__in=OPEN_STATUSES)),
        under_review=Count("pk", filter=Q(status=PaymentStatus.NEEDS_REVIEW)),
        failed_not_by_customer=Count("pk", filter=failed & ~Q(failure_class=FailureClass.CUSTOMER)),
        orders=Count("order_id", distinct=True),
        orders_paid=Count("order_id", distinct=True, filter=paid),
        **settled,
    )


def failure_reason(result_code: str, failure_class: str, sample_desc: str = "") -> str:
    """Plain words for staff: the code's label, else what M-Pesa said, else the failure class."""
    if result_code and known_result_code(result_code):
        return meaning_of(result_code).label
    if failure_class == FailureClass.EXPIRED:
        return "No answer before the deadline"
    if sample_desc:
        return sample_desc[:120]
    return FailureClass(failure_class or "").label if failure_class in FailureClass.values else "Unknown"


def failures(attempts: QuerySet[Payment]) -> list[Failure]:
    rows = (
        attempts.filter(status=PaymentStatus.FAILED)
        .values("failure_class", "result_code")
        .annotate(count=Count("pk"), sample=Max("result_desc"))
        .order_by("-count", "failure_class", "result_code")
    )
    return [
        Failure(
            failure_class=row["failure_class"] or FailureClass.UNKNOWN,
            result_code=row["result_code"],
            reason=failure_reason(row["result_code"], row["failure_class"], row["sample"] or ""),
            count=row["count"],
        )
        for row in rows
    ]


class PercentileDisc(Func):
    """PostgreSQL's nearest-rank percentile: the first value at or above the fraction of the ordered set."""

    function = "PERCENTILE_DISC"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    contains_aggregate = True

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def time_to_result(attempts: QuerySet[Payment], fractions=(0.5, 0.9)) -> list[float | None]:
    """Seconds from the accepted prompt to M-Pesa's final answer (callback or query), nearest rank.

    PostgreSQL computes the percentiles itself; elsewhere the database sorts and we read the ranked rows,
    which gives the same values.
    """
    answered = attempts.filter(
        initiated_at__isnull=False,
        settled_by__in=(SettledBy.CALLBACK, SettledBy.QUERY),
        status__in=(*PAID_STATUSES, PaymentStatus.FAILED),
    ).annotate(took=SecondsBetween(Coalesce("completed_at", "failed_at"), F("initiated_at")))
    if connection.vendor == "postgresql":
        found = answered.aggregate(
            **{f"p{index}": PercentileDisc(F("took"), fraction) for index, fraction in enumerate(fractions)}
        )
        values = [found[f"p{index}"] for index in range(len(fractions))]
    else:
        count = answered.count()
        ordered = answered.order_by("took").values_list("took", flat=True)
        values = [ordered[math.ceil(fraction * count) - 1] if count else None for fraction in fractions]
    return [None if value is None else round(value, 1) for value in values]


def money_figures(period: Period, filters: Filters = NO_FILTERS, *, detail: bool = True) -> dict:
    collected = payments_collected(period, filters).aggregate(total=Sum(PAID_AMOUNT))["total"]
    refunded = refunds_paid_out(period, filters).aggregate(total=Sum("amount"))["total"]
    figures = {"collected": money(collected), "refunded": money(refunded)}
    if not detail:
        return figures
    in_flight = filters.refunds(
        Refund.objects.filter(
            status__in=REFUND_IN_FLIGHT_STATUSES, created_at__gte=period.start, created_at__lt=period.end
        )
    ).aggregate(total=Sum("amount"), count=Count("pk"))
    cod = filters.payments(
        Payment.objects.filter(
            method=PaymentMethod.COD,
            status=PaymentStatus.PENDING_DELIVERY,
            created_at__gte=period.start,
            created_at__lt=period.end,
        )
    ).aggregate(total=Sum("amount"), count=Count("pk"))
    return {
        **figures,
        "refunds_in_flight": money(in_flight["total"]),
        "refunds_in_flight_count": in_flight["count"],
        "cod_awaiting": money(cod["total"]),
        "cod_awaiting_count": cod["count"],
    }


def daily_series(period: Period, filters: Filters = NO_FILTERS) -> list[Day]:
    """One row per Nairobi day of the period, days without activity included as zeros."""
    attempts = (
        mpesa_attempts(period, filters)
        .annotate(day=NairobiDate("created_at"))
        .values("day")
        .annotate(
            attempts=Count("pk"),
            completed=Count("pk", filter=Q(status__in=PAID_STATUSES)),
            failed=Count("pk", filter=Q(status=PaymentStatus.FAILED)),
        )
        .order_by()
    )
    collected = (
        payments_collected(period, filters)
        .annotate(day=NairobiDate("completed_at"))
        .values("day")
        .annotate(total=Sum(PAID_AMOUNT))
        .order_by()
    )
    refunded = (
        refunds_paid_out(period, filters)
        .annotate(day=NairobiDate("completed_at"))
        .values("day")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    by_day = {row["day"]: row for row in attempts}
    collected_by_day = {row["day"]: row["total"] for row in collected}
    refunded_by_day = {row["day"]: row["total"] for row in refunded}
    series = []
    for day in period.dates():
        counts = by_day.get(day, {})
        series.append(
            Day(
                date=day,
                attempts=counts.get("attempts", 0),
                completed=counts.get("completed", 0),
                failed=counts.get("failed", 0),
                collected=money(collected_by_day.get(day)),
                refunded=money(refunded_by_day.get(day)),
            )
        )
    return series


def hourly_profile(period: Period, filters: Filters = NO_FILTERS, *, fresh: bool = False) -> list[dict]:
    """Attempts by Nairobi hour of day over the period: when customers pay, when M-Pesa fails.
    Cached like `summary`."""
    return _cached("hourly", period, filters, fresh=fresh, compute=lambda: _hourly_profile(period, filters))


def _hourly_profile(period: Period, filters: Filters) -> list[dict]:
    rows = (
        mpesa_attempts(period, filters)
        .annotate(hour=NairobiHour("created_at"))
        .values("hour")
        .annotate(
            attempts=Count("pk"),
            completed=Count("pk", filter=Q(status__in=PAID_STATUSES)),
            failed=Count("pk", filter=Q(status=PaymentStatus.FAILED)),
            failed_not_by_customer=Count(
                "pk", filter=Q(status=PaymentStatus.FAILED) & ~Q(failure_class=FailureClass.CUSTOMER)
            ),
        )
        .order_by()
    )
    by_hour = {row["hour"]: row for row in rows}
    empty = {"attempts": 0, "completed": 0, "failed": 0, "failed_not_by_customer": 0}
    return [{"hour": hour, **{k: by_hour.get(hour, empty)[k] for k in empty}} for hour in range(24)]


def summary(
    period: Period, filters: Filters = NO_FILTERS, *, detail: bool = True, fresh: bool = False
) -> Summary:
    """Every headline figure of a period. See FORMULAS for what each one means.

    `detail=False` gives the headline only (what a comparison with another period needs): attempts,
    orders, rates, settled by, collected and refunded; the time to result, failures, daily series, refunds
    in flight and cash awaiting are then not computed (None or empty).

    What people look at is at most REPORTS_CACHE_SECONDS old: the first reader of a period computes it and
    the others (every web process: the cache is shared) read that within the time; `computed_at` says when.
    At millions of attempts a period takes seconds to aggregate, a cached one milliseconds. `fresh=True`
    always computes (report emails, checks that need the figures of this instant).
    """
    return _cached(
        f"summary:{int(detail)}",
        period,
        filters,
        fresh=fresh,
        compute=lambda: _summary(period, filters, detail=detail),
    )


def _cached(what: str, period: Period, filters: Filters, *, fresh: bool, compute):
    """Figures computed by the first reader and shared by the others for REPORTS_CACHE_SECONDS."""
    seconds = settings.REPORTS_CACHE_SECONDS
    if fresh or seconds <= 0:
        return compute()
    key = f"reports:{what}:1:{period.first}:{period.last}:{filters.method}:{filters.channel}"
    found = cache.get(key)
    if found is None:
        found = compute()
        cache.set(key, found, seconds)
    return found


def _attempt_figures(attempts: QuerySet[Payment]) -> dict:
    """The Summary fields that come from one aggregate over a set of attempts."""
    counts = attempt_counts(attempts)
    return {
        "attempts_total": counts["total"],
        "attempts_completed": counts["completed"],
        "attempts_failed": counts["failed"],
        "attempts_in_flight": counts["in_flight"],
        "attempts_under_review": counts["under_review"],
        "failed_not_by_customer": counts["failed_not_by_customer"],
        "orders_with_mpesa_attempt": counts["orders"],
        "orders_paid": counts["orders_paid"],
        "settled_by": {choice: counts[f"settled_{choice}"] for choice in SettledBy.values if choice},
    }


def _summary(period: Period, filters: Filters, *, detail: bool) -> Summary:
    attempts = mpesa_attempts(period, filters)
    p50, p90 = time_to_result(attempts) if detail else (None, None)
    return Summary(
        period=period,
        **_attempt_figures(attempts),
        time_to_result_p50=p50,
        time_to_result_p90=p90,
        failures=failures(attempts) if detail else [],
        daily=daily_series(period, filters) if detail else [],
        **money_figures(period, filters, detail=detail),
    )


# --- rolling windows (alerts) -----------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Exact instants [start, end), e.g. the last 30 minutes: what alerts look at instead of whole days.
    Accepted wherever a Period's start and end are read."""

    start: dt.datetime
    end: dt.datetime

    def days_before(self, days: int) -> "Window":
        return Window(self.start - dt.timedelta(days=days), self.end - dt.timedelta(days=days))


def attempts_between(
    start: dt.datetime, end: dt.datetime, filters: Filters = NO_FILTERS
) -> QuerySet[Payment]:
    """M-Pesa attempts created in [start, end)."""
    return mpesa_attempts(Window(start, end), filters)


def attempts_in_windows(windows: list[Window], filters: Filters = NO_FILTERS) -> QuerySet[Payment]:
    """M-Pesa attempts created in any of the windows (the same hours of earlier days: a baseline)."""
    if not windows or (filters.method and filters.method != PaymentMethod.MPESA):
        return Payment.objects.none()
    # The method inside each range, so that every range is a search of the (method, created_at) index
    # (SQLite's multi-index OR; outside, SQLite reads every M-Pesa attempt).
    created = Q()
    for window in windows:
        created |= Q(method=PaymentMethod.MPESA, created_at__gte=window.start, created_at__lt=window.end)
    return filters.payments(Payment.objects.filter(created))


def attempt_summary(period, attempts: QuerySet[Payment]) -> Summary:
    """The attempt figures of any set of attempts (a window, a baseline) with the Summary's formulas.

    Only attempts are counted: money is not computed (zero), nor time to result, failures or the daily
    series. `period` is the Period or Window the attempts were taken from.
    """
    return Summary(
        period=period,
        **_attempt_figures(attempts),
        time_to_result_p50=None,
        time_to_result_p90=None,
        collected=ZERO,
        refunded=ZERO,
    )


def pushes_accepted_between(start: dt.datetime, end: dt.datetime) -> QuerySet[Payment]:
    """M-Pesa attempts whose STK push Daraja accepted in [start, end): each should bring a callback."""
    return Payment.objects.filter(method=PaymentMethod.MPESA, initiated_at__gte=start, initiated_at__lt=end)


def stk_callbacks_between(start: dt.datetime, end: dt.datetime) -> QuerySet[CallbackInbox]:
    """STK callbacks received on the secret callback URL in [start, end), whatever they said."""
    return CallbackInbox.objects.filter(
        kind=InboxKind.STK_CALLBACK, received_at__gte=start, received_at__lt=end
    )
