"""The admin index: KPI cards, charts and the "needs attention" list, all read from reports.selectors.

Unfold calls `dashboard_callback(request, context)` (settings.UNFOLD["DASHBOARD_CALLBACK"]) and renders
templates/admin/index.html with what it returns. Nothing here changes state: the period comes from the
query string of a GET.
"""

import json
from dataclasses import dataclass
from decimal import Decimal

from django.contrib import messages

from reports import selectors
from reports.alerts.selectors import dashboard_alerts
from reports.attention import attention_items
from reports.periods import PRESETS, Period, PeriodError, period_between, period_named
from reports.permissions import can_see_figures

DEFAULT_PERIOD = "last_7_days"
TOP_FAILURES = 8

SUCCESS_COLOUR = "var(--color-primary-600)"
CUSTOMER_FAILURE_COLOUR = "#d8b4fe"
TECHNICAL_COLOUR = "#ef4444"
LINE_COLOUR = "#10b981"


@dataclass(frozen=True)
class Kpi:
    key: str
    title: str
    value: str
    previous: str
    change: str
    better: bool | None  # True: the change is good news, False: bad news, None: no comparison
    formula: str


def kes(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _change_of_amount(now, before, *, more_is_better: bool = True) -> tuple[str, bool | None]:
    if not before:
        return ("new" if now else "no change"), (more_is_better if now else None)
    change = (Decimal(now) - Decimal(before)) / Decimal(before) * 100
    if change == 0:
        return "no change", None
    return f"{change:+.1f}%", (change > 0) == more_is_better


def _change_of_rate(now: float | None, before: float | None) -> tuple[str, bool | None]:
    if now is None or before is None:
        return "–", None
    points = (now - before) * 100
    if abs(points) < 0.05:
        return "no change", None
    return f"{points:+.1f} pts", points > 0


def kpis(current: selectors.Summary, previous: selectors.Summary) -> list[Kpi]:
    formulas = selectors.FORMULAS
    cards = []

    def amount(key, title, now, before, shown, formula, more_is_better=True):
        change, better = _change_of_amount(now, before, more_is_better=more_is_better)
        cards.append(Kpi(key, title, shown(now), shown(before), change, better, formula))

    def rate(key, title, now, before, formula):
        change, better = _change_of_rate(now, before)
        cards.append(Kpi(key, title, percent(now), percent(before), change, better, formula))

    amount("collected", "Collected (KES)", current.collected, previous.collected, kes, formulas["collected"])
    amount(
        "paid_orders", "Paid orders", current.orders_paid, previous.orders_paid, "{:,}".format,
        formulas["paid_orders"],
    )  # fmt: skip
    rate(
        "attempt_success", "Attempt success", current.attempt_success, previous.attempt_success,
        formulas["attempt_success"],
    )  # fmt: skip
    rate(
        "technical_success", "Technical success", current.technical_success, previous.technical_success,
        formulas["technical_success"],
    )  # fmt: skip
    rate(
        "order_conversion", "Order conversion", current.order_conversion, previous.order_conversion,
        formulas["order_conversion"],
    )  # fmt: skip
    amount(
        "refunded", "Refunded (KES)", current.refunded, previous.refunded, kes, formulas["refunded"],
        more_is_better=False,
    )  # fmt: skip
    amount(
        "in_flight", "In flight", current.attempts_in_flight, previous.attempts_in_flight, "{:,}".format,
        formulas["in_flight"], more_is_better=False,
    )  # fmt: skip
    return cards


def _axis(**extra) -> dict:
    return {"grid": {"display": True}, "border": {"display": False}, "ticks": {"color": "#9ca3af"}, **extra}


def _options(*, stacked: bool = False, percent_axis: bool = False, horizontal: bool = False) -> str:
    """Chart.js options as JSON (no functions: Unfold parses them from a data attribute)."""
    scales = {"x": _axis(stacked=stacked), "y": _axis(stacked=stacked, beginAtZero=True)}
    if percent_axis:
        scales["y1"] = _axis(position="right", min=0, max=100, grid={"display": False})
    options = {
        "animation": False,
        "responsive": True,
        "maintainAspectRatio": False,
        "plugins": {
            "legend": {"display": True, "position": "top", "align": "end", "labels": {"color": "#9ca3af"}},
            "tooltip": {"enabled": True},
        },
        "scales": scales,
    }
    if horizontal:
        options["indexAxis"] = "y"
    return json.dumps(options)


def daily_chart(summary: selectors.Summary) -> dict:
    days = summary.daily
    return {
        "data": json.dumps(
            {
                "labels": [f"{day.date:%d %b}" for day in days],
                "datasets": [
                    {
                        "type": "line",
                        "label": "Attempt success %",
                        "data": [
                            None if d.attempt_success is None else round(d.attempt_success * 100, 1)
                            for d in days
                        ],
                        "borderColor": LINE_COLOUR,
                        "backgroundColor": LINE_COLOUR,
                        "yAxisID": "y1",
                        "spanGaps": True,
                    },
                    {
                        "type": "bar",
                        "label": "Collected (KES)",
                        "data": [float(day.collected) for day in days],  # a chart, not a sum: floats are fine
                        "backgroundColor": SUCCESS_COLOUR,
                        "yAxisID": "y",
                        "borderRadius": 4,
                    },
                ],
            }
        ),  # fmt: skip
        "options": _options(percent_axis=True),
    }


def failure_bars(summary: selectors.Summary) -> list[dict]:
    """The top reasons as bars sized by their share of all failed attempts."""
    total = sum(failure.count for failure in summary.failures)
    return [
        {
            "title": f"{failure.reason} ({failure.result_code})" if failure.result_code else failure.reason,
            "description": f"{failure.count:,} · {failure.count / total:.0%}",
            "value": round(failure.count / total * 100, 1),
            # Unfold's bars are primary; red marks what is not the customer's doing (ours or Safaricom's).
            "progress_class": "" if failure.failure_class == "customer" else "bg-red-500 dark:bg-red-500",
        }
        for failure in summary.failures[:TOP_FAILURES]
    ]


def hourly_chart(period: Period, filters: selectors.Filters) -> dict:
    hours = selectors.hourly_profile(period, filters)
    return {
        "data": json.dumps(
            {
                "labels": [f"{row['hour']:02d}:00" for row in hours],
                "datasets": [
                    {
                        "label": "Completed",
                        "data": [r["completed"] for r in hours],
                        "backgroundColor": SUCCESS_COLOUR,
                    },
                    {
                        "label": "Failed by the customer",
                        "data": [r["failed"] - r["failed_not_by_customer"] for r in hours],
                        "backgroundColor": CUSTOMER_FAILURE_COLOUR,
                    },
                    {
                        "label": "Failed (system, expired, other)",
                        "data": [r["failed_not_by_customer"] for r in hours],
                        "backgroundColor": TECHNICAL_COLOUR,
                    },
                ],
            }
        ),  # fmt: skip
        "options": _options(stacked=True),
    }


def chosen_period(request) -> Period:
    """The period in the query string (`period=last_30_days`, or `from`/`to`), else the default."""
    try:
        if request.GET.get("from") or request.GET.get("to"):
            return period_between(request.GET.get("from", ""), request.GET.get("to", ""))
        return period_named(request.GET.get("period") or DEFAULT_PERIOD)
    except PeriodError as exc:
        messages.warning(request, f"{exc} Showing {PRESETS[DEFAULT_PERIOD].lower()}.")
        return period_named(DEFAULT_PERIOD)


def dashboard_callback(request, context):
    period = chosen_period(request)
    filters = selectors.NO_FILTERS
    context.update(
        {
            "period": period,
            "presets": [
                {"key": key, "title": title, "active": period.name == key} for key, title in PRESETS.items()
            ],
            "attention": attention_items(request.user),
            "open_alerts": dashboard_alerts(request.user),
            "can_see_figures": can_see_figures(request.user),
        }
    )
    if not context["can_see_figures"]:
        return context
    current = selectors.summary(period, filters)
    previous = selectors.summary(period.previous(), filters, detail=False)
    context.update(
        {
            "previous_period": previous.period,
            "kpis": kpis(current, previous),
            "summary": current,
            "daily_chart": daily_chart(current),
            "failure_bars": failure_bars(current),
            "hourly_chart": hourly_chart(period, filters),
            "formulas": selectors.FORMULAS,
        }
    )
    return context
