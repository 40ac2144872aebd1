"""`GET /api/v1/reports/summary`: the analytics selectors as JSON for staff scripts (token scope `reports`).

Money is a string with 2 decimals, rates are numbers 0..1 (null when there is nothing to divide), dates are
Africa/Nairobi dates, both ends inclusive.
"""

from ninja import Field, Query, Router, Schema

from payments.api import NO_NUL_PATTERN
from payments.models import PaymentMethod, SettledBy
from reports import selectors
from reports.exceptions import ReportError
from reports.periods import NAIROBI, PeriodError, period_between
from reports.permissions import FIGURES_PERMISSION, can_see_figures

router = Router(tags=["reports"])


class SummaryQuery(Schema):
    first: str = Field(..., alias="from", description="First Nairobi date, YYYY-MM-DD (inclusive).")
    last: str = Field(..., alias="to", description="Last Nairobi date, YYYY-MM-DD (inclusive).")
    method: PaymentMethod | None = Field(None, description="Only this payment method.")
    channel: str | None = Field(
        None, max_length=150, pattern=NO_NUL_PATTERN, description="Only orders placed by this API user."
    )


class AttemptsOut(Schema):
    total: int
    completed: int
    failed: int
    inFlight: int
    underReview: int


class OrdersOut(Schema):
    withMpesaAttempt: int
    paid: int


class RatesOut(Schema):
    attemptSuccess: float | None
    technicalSuccess: float | None
    orderConversion: float | None


class MoneyOut(Schema):
    currency: str = "KES"
    collected: str
    refunded: str
    net: str
    refundsInFlight: str
    codAwaiting: str


class SettledByOut(Schema):
    callback: int
    query: int
    staff: int
    push: int
    system: int


class TimeToResultOut(Schema):
    p50: float | None
    p90: float | None


class FailureOut(Schema):
    class_: str = Field(..., alias="class")
    resultCode: str
    reason: str
    count: int


class DayOut(Schema):
    date: str
    attempts: int
    completed: int
    failed: int
    collected: str
    refunded: str
    attemptSuccess: float | None


class SummaryOut(Schema):
    from_: str = Field(..., alias="from")
    to: str
    timezone: str
    attempts: AttemptsOut
    orders: OrdersOut
    rates: RatesOut
    money: MoneyOut
    settledBy: SettledByOut
    timeToResultSeconds: TimeToResultOut
    failures: list[FailureOut]
    daily: list[DayOut]
    formulas: dict[str, str]


def summary_json(summary: selectors.Summary) -> dict:
    """The summary in the API's shape (also what report emails attach as their figures)."""
    return {
        "from": summary.period.first.isoformat(),
        "to": summary.period.last.isoformat(),
        "timezone": str(NAIROBI),
        "attempts": {
            "total": summary.attempts_total,
            "completed": summary.attempts_completed,
            "failed": summary.attempts_failed,
            "inFlight": summary.attempts_in_flight,
            "underReview": summary.attempts_under_review,
        },
        "orders": {"withMpesaAttempt": summary.orders_with_mpesa_attempt, "paid": summary.orders_paid},
        "rates": {
            "attemptSuccess": summary.attempt_success,
            "technicalSuccess": summary.technical_success,
            "orderConversion": summary.order_conversion,
        },
        "money": {
            "currency": "KES",
            "collected": str(summary.collected),
            "refunded": str(summary.refunded),
            "net": str(summary.net),
            "refundsInFlight": str(summary.refunds_in_flight),
            "codAwaiting": str(summary.cod_awaiting),
        },
        "settledBy": {choice: summary.settled_by[choice] for choice in SettledBy.values if choice},
        "timeToResultSeconds": {"p50": summary.time_to_result_p50, "p90": summary.time_to_result_p90},
        "failures": [
            {"class": f.failure_class, "resultCode": f.result_code, "reason": f.reason, "count": f.count}
            for f in summary.failures
        ],
        "daily": [
            {
                "date": day.date.isoformat(),
                "attempts": day.attempts,
                "completed": day.completed,
                "failed": day.failed,
                "collected": str(day.collected),
                "refunded": str(day.refunded),
                "attemptSuccess": day.attempt_success,
            }
            for day in summary.daily
        ],
        "formulas": selectors.FORMULAS,
    }


@router.get(
    "/summary",
    response=SummaryOut,
    by_alias=True,
    summary="Collections and success rates for a period (staff)",
    description="Every figure of the finance dashboard for the Nairobi days `from`..`to` (inclusive, at "
    "most 366 days), with a daily series. `formulas` states how each figure is computed. Needs a staff "
    f"user with the `{FIGURES_PERMISSION}` permission.",
)
def report_summary(request, query: Query[SummaryQuery]):
    if not can_see_figures(request.auth):
        raise ReportError(
            "forbidden", f"Reports are for staff with the {FIGURES_PERMISSION} permission.", http_status=403
        )
    try:
        period = period_between(query.first, query.last)
    except PeriodError as exc:
        field = "from" if str(exc).startswith("from") else "to"
        raise ReportError("validation_error", str(exc), fields={field: str(exc)}) from exc
    filters = selectors.Filters(method=query.method, channel=query.channel)
    return summary_json(selectors.summary(period, filters))
