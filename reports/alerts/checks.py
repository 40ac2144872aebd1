"""What each kind of alert rule reads, and when it fires.

A check takes a rule and the evaluation (its clock and the queries rules share) and returns Findings: one
per subject (scope) it judged, firing or not, each with the figures that say so. Payment figures come from
reports.selectors (the same formulas as the dashboard), stuck items from reports.attention (the same rows
as its "needs attention" list). A handful of indexed aggregates per evaluation, whatever the history.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import Failure, OrmQ

from notifications.models import ALERT_EVENTS, Channel, Notification, NotificationStatus
from payments.models import FailureClass
from reports import attention, selectors
from reports.dashboard import percent
from reports.models import AlertKind, AlertRule
from statements.selectors import payments_missing_from_statement

# Failure classes a spike is judged for as a whole: ours or Safaricom's, not the customers'.
SPIKE_CLASSES = (FailureClass.SYSTEM, FailureClass.CONFIG)
# Stuck items: the attention list's rows, and the time each has been waiting since.
STUCK_SINCE = {
    "payments_under_review": "updated_at",
    "receipts_pending": "completed_at",
    "queries_failing": "initiated_at",
    "unmatched_callbacks": "received_at",
    "inbox_gave_up": "received_at",
    "refunds_awaiting_approval": "created_at",
    "refunds_unknown": "updated_at",
}
# A message tried and not delivered: given up, refused, unknown, or waiting to be retried after an error.
NOTIFICATION_FAILING = Q(
    status__in=(NotificationStatus.FAILED, NotificationStatus.REJECTED, NotificationStatus.UNKNOWN)
) | (Q(status=NotificationStatus.QUEUED) & ~Q(last_error=""))

KIND_HELP = {
    AlertKind.SUCCESS_RATE: "Attempt success below `threshold` or technical success below "
    "`technical_threshold` over the last `window_minutes`, or either more than `baseline_points` below the "
    "same hours of the previous `baseline_days` days; judged from `min_volume` finished attempts.",
    AlertKind.CALLBACK_SILENCE: "At least `min_volume` pushes accepted by Daraja in the last `window_minutes` "
    "(the last `grace_seconds` left out) and not one STK callback received in that time.",
    AlertKind.QUERY_SHARE: "Share of attempts settled by STK Query rather than by the callback above "
    "`threshold`, or more than `baseline_points` above the same hours of the previous `baseline_days` days; "
    "judged from `min_volume` attempts settled either way.",
    AlertKind.FAILURE_SPIKE: "System or configuration failures, or one result code, above `threshold` of the "
    "finished attempts of the last `window_minutes` (at least `min_volume`). Customer outcomes never make a "
    "spike: they show in the success rate.",
    AlertKind.STUCK_ITEMS: "At least `min_volume` items of one kind in the needs-attention list waiting "
    "longer than `window_minutes` (one alert per kind).",
    AlertKind.TASK_FAILURES: "At least `min_volume` background tasks failed in the last `window_minutes`.",
    AlertKind.QUEUE_BACKLOG: "ORM broker: at least `min_volume` tasks waiting longer than `window_minutes` "
    "for a worker. Redis broker: more than `threshold` tasks waiting.",
    AlertKind.NOTIFICATION_FAILURES: "Of the SMS (or emails) tried in the last `window_minutes`, more than "
    "`threshold` failed or are being retried after an error; judged from `min_volume` messages, per channel.",
    AlertKind.MISSING_FROM_STATEMENT: "At least `min_volume` M-Pesa payments completed on our side in a period "
    "an imported M-PESA statement covers (STATEMENT_MISSING_GRACE_MINUTES after their completion) with no "
    "line on it: money we counted that the statement does not show.",
}


@dataclass(frozen=True)
class Finding:
    """One subject of a rule at one evaluation: whether its condition holds, and the figures that say so."""

    scope: str
    firing: bool
    title: str
    figures: dict


class Evaluation:
    """One evaluation's clock, and the queries several rules share (read once)."""

    def __init__(self, now: dt.datetime):
        self.now = now
        self._read: dict = {}

    def _once(self, key, read: Callable):
        if key not in self._read:
            self._read[key] = read()
        return self._read[key]

    def window(self, minutes: int) -> selectors.Window:
        return selectors.Window(self.now - dt.timedelta(minutes=minutes), self.now)

    def attempts(self, minutes: int) -> selectors.Summary:
        window = self.window(minutes)
        return self._once(
            ("attempts", minutes),
            lambda: selectors.attempt_summary(window, selectors.attempts_between(window.start, window.end)),
        )

    def baseline(self, minutes: int, days: int) -> selectors.Summary:
        """The same window on each of the previous `days` days, added up."""
        window = self.window(minutes)
        earlier = [window.days_before(day) for day in range(1, days + 1)]
        return self._once(
            ("baseline", minutes, days),
            lambda: selectors.attempt_summary(window, selectors.attempts_in_windows(earlier)),
        )

    def failures(self, minutes: int) -> list[selectors.Failure]:
        window = self.window(minutes)
        return self._once(
            ("failures", minutes),
            lambda: selectors.failures(selectors.attempts_between(window.start, window.end)),
        )


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _when(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _points(value: float) -> str:
    return f"{value * 100:.1f} points"


def _attempt_figures(summary: selectors.Summary) -> dict:
    return {
        "attempts": summary.attempts_total,
        "finished": summary.attempts_finished,
        "completed": summary.attempts_completed,
        "failed": summary.attempts_failed,
        "failed_not_by_customer": summary.failed_not_by_customer,
        "attempt_success": _rate(summary.attempt_success),
        "technical_success": _rate(summary.technical_success),
        "settled_by_callback": summary.settled_by.get("callback", 0),
        "settled_by_query": summary.settled_by.get("query", 0),
        "query_share": _rate(summary.query_share),
    }


def _apart(higher: float | None, lower: float | None, points: float | None) -> bool:
    """`higher` exceeds `lower` by more than `points` (rounded: 0.8 - 0.6 is 0.20000000000000007, which is
    not more than 20 points)."""
    return None not in (higher, lower, points) and round(higher - lower, 9) > points


def check_success_rate(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    current = evaluation.attempts(rule.window_minutes)
    finished = current.attempts_finished
    figures = {"window_minutes": rule.window_minutes, "min_finished": rule.min_volume}
    figures.update(_attempt_figures(current))
    if finished < rule.min_volume:
        return [Finding("", False, f"{finished} finished attempts: too few to judge", figures)]
    before = None
    if rule.baseline_points is not None:
        before = evaluation.baseline(rule.window_minutes, rule.baseline_days)
        figures["baseline"] = {"days": rule.baseline_days, **_attempt_figures(before)}
        if before.attempts_finished < rule.min_volume:
            before = None  # too little history at these hours to say what is usual
    problems = []
    for key, label, floor in (
        ("attempt_success", "attempt success", rule.threshold),
        ("technical_success", "technical success", rule.technical_threshold),
    ):
        value = getattr(current, key)
        reasons = []
        if value is not None and floor is not None and value < floor:
            reasons.append(f"below the {percent(floor)} floor")
        usual = getattr(before, key) if before else None
        if _apart(usual, value, rule.baseline_points):
            reasons.append(f"{_points(usual - value)} below the usual {percent(usual)}")
        if reasons:
            problems.append(f"{label} {percent(value)} ({'; '.join(reasons)})")
    title = (
        f"M-Pesa {', '.join(problems)} over the last {rule.window_minutes} min, {finished} finished attempts"
        if problems
        else f"Attempt success {percent(current.attempt_success)}, technical {percent(current.technical_success)}"
    )
    return [Finding("", bool(problems), title[:1].upper() + title[1:], figures)]


def check_callback_silence(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    window = evaluation.window(rule.window_minutes)
    counted_until = evaluation.now - dt.timedelta(seconds=rule.grace_seconds)
    pushes = selectors.pushes_accepted_between(window.start, counted_until).count()
    callbacks = selectors.stk_callbacks_between(window.start, window.end).count()
    figures = {
        "window_minutes": rule.window_minutes,
        "grace_seconds": rule.grace_seconds,
        "pushes_accepted": pushes,
        "callbacks_received": callbacks,
        "min_pushes": rule.min_volume,
    }
    firing = pushes >= rule.min_volume and callbacks == 0
    if firing:
        title = (
            f"No M-Pesa callback in the last {rule.window_minutes} min although Daraja accepted {pushes} "
            "pushes: callbacks are not reaching us"
        )
    else:
        title = f"{callbacks} callbacks for {pushes} accepted pushes in the last {rule.window_minutes} min"
    return [Finding("", firing, title, figures)]


def check_query_share(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    current = evaluation.attempts(rule.window_minutes)
    settled = current.settled_by.get("callback", 0) + current.settled_by.get("query", 0)
    share = current.query_share
    figures = {"window_minutes": rule.window_minutes, "min_settled": rule.min_volume}
    figures.update(_attempt_figures(current))
    if settled < rule.min_volume:
        return [Finding("", False, f"{settled} attempts settled by callback or query: too few", figures)]
    reasons = []
    if rule.threshold is not None and share > rule.threshold:
        reasons.append(f"above the {percent(rule.threshold)} ceiling")
    if rule.baseline_points is not None:
        before = evaluation.baseline(rule.window_minutes, rule.baseline_days)
        figures["baseline"] = {"days": rule.baseline_days, **_attempt_figures(before)}
        settled_before = before.settled_by.get("callback", 0) + before.settled_by.get("query", 0)
        usual = before.query_share if settled_before >= rule.min_volume else None
        if _apart(share, usual, rule.baseline_points):
            reasons.append(f"{_points(share - usual)} above the usual {percent(usual)}")
    title = (
        f"{percent(share)} of attempts settled by STK Query instead of the callback "
        f"({'; '.join(reasons)}) over the last {rule.window_minutes} min: callbacks are being lost"
    )
    return [
        Finding("", bool(reasons), title if reasons else f"{percent(share)} settled by STK Query", figures)
    ]


def check_failure_spike(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    current = evaluation.attempts(rule.window_minutes)
    finished = current.attempts_finished
    if finished < rule.min_volume or rule.threshold is None:
        return []
    by_class: dict[str, int] = defaultdict(int)
    by_code: dict[str, dict] = {}
    for failure in evaluation.failures(rule.window_minutes):
        if failure.failure_class == FailureClass.CUSTOMER:
            continue
        by_class[failure.failure_class] += failure.count
        if failure.result_code:
            code = by_code.setdefault(
                failure.result_code,
                {"count": 0, "failure_class": failure.failure_class, "reason": failure.reason},
            )
            code["count"] += failure.count
    common = {"window_minutes": rule.window_minutes, "finished": finished, "threshold": rule.threshold}
    findings = []
    spiking_classes = set()
    for failure_class in SPIKE_CLASSES:
        count = by_class.get(failure_class, 0)
        share = count / finished
        codes = sorted(
            ((code, row["count"]) for code, row in by_code.items() if row["failure_class"] == failure_class),
            key=lambda pair: -pair[1],
        )
        label = FailureClass(failure_class).label.lower()
        firing = share > rule.threshold
        if firing:
            spiking_classes.add(failure_class)
        findings.append(
            Finding(
                f"class:{failure_class}",
                firing,
                f"{percent(share)} of finished attempts failed for {label} reasons ({count} of {finished}) "
                f"over the last {rule.window_minutes} min",
                {
                    **common,
                    "failure_class": failure_class,
                    "failed": count,
                    "share": _rate(share),
                    "top_codes": dict(codes[:5]),
                },
            )  # fmt: skip
        )
    for code, row in by_code.items():
        if row["failure_class"] in spiking_classes:
            continue  # already told as its class
        share = row["count"] / finished
        findings.append(
            Finding(
                f"code:{code}",
                share > rule.threshold,
                f"{percent(share)} of finished attempts failed with {code} ({row['reason']}), {row['count']} of "
                f"{finished} over the last {rule.window_minutes} min",
                {
                    **common,
                    "result_code": code,
                    "reason": row["reason"],
                    "failed": row["count"],
                    "share": _rate(share),
                },
            )  # fmt: skip
        )
    return findings


def _changelist_url(source) -> str:
    url = reverse(source.changelist)
    return f"{url}?{urlencode(source.query)}" if source.query else url


def check_stuck_items(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    waiting_since = evaluation.now - dt.timedelta(minutes=rule.window_minutes)
    findings = []
    for source in attention.SOURCES:
        since_field = STUCK_SINCE.get(source.key)
        if since_field is None:
            continue
        found = (
            source.rows()
            .filter(**{f"{since_field}__lte": waiting_since})
            .aggregate(count=Count("pk"), oldest=Min(since_field))
        )
        count = found["count"]
        findings.append(
            Finding(
                source.key,
                count >= rule.min_volume,
                f"{source.label}: {count} waiting more than {rule.window_minutes} min",
                {
                    "item": source.label,
                    "count": count,
                    "older_than_minutes": rule.window_minutes,
                    "oldest_since": _when(found["oldest"]),
                    "list": _changelist_url(source),
                },
            )
        )
    return findings


def check_task_failures(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    window = evaluation.window(rule.window_minutes)
    rows = list(
        Failure.objects.filter(stopped__gte=window.start, stopped__lt=window.end)
        .values("func")
        .annotate(count=Count("id"), last=Max("stopped"))
        .order_by("-count", "func")
    )
    count = sum(row["count"] for row in rows)
    figures = {
        "window_minutes": rule.window_minutes,
        "failed_tasks": count,
        "by_function": {row["func"]: row["count"] for row in rows[:5]},
        "last_failure": _when(max((row["last"] for row in rows), default=None)),
    }
    title = f"{count} background tasks failed in the last {rule.window_minutes} min"
    if rows:
        title += f", most often {rows[0]['func']}"
    return [Finding("", count >= rule.min_volume, title, figures)]


def check_queue_backlog(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    broker = get_broker()
    if isinstance(broker, ORM):
        # The ORM broker's `lock` is when a task became available to a worker (a claimed one is pushed
        # into the future): an old lock is a task no worker has taken.
        waiting_since = evaluation.now - dt.timedelta(minutes=rule.window_minutes)
        found = (
            OrmQ.objects.using(Conf.ORM)
            .filter(lock__lte=waiting_since)
            .aggregate(count=Count("id"), oldest=Min("lock"))
        )
        count = found["count"]
        figures = {
            "broker": "orm",
            "waiting_longer": count,
            "older_than_minutes": rule.window_minutes,
            "oldest_since": _when(found["oldest"]),
        }
        title = (
            f"{count} tasks waiting more than {rule.window_minutes} min for a worker: is the cluster running?"
        )
        return [Finding("", count >= rule.min_volume, title, figures)]
    size = broker.queue_size() or 0
    figures = {"broker": type(broker).__name__.lower(), "waiting": size, "threshold": rule.threshold}
    firing = rule.threshold is not None and size > rule.threshold
    return [Finding("", firing, f"{size} tasks waiting for a worker: is the cluster keeping up?", figures)]


def check_notification_failures(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    if rule.threshold is None:
        return []
    window = evaluation.window(rule.window_minutes)
    rows = {
        row["channel"]: row
        for row in Notification.objects.filter(
            created_at__gte=window.start, created_at__lt=window.end, attempts__gte=1
        )
        .exclude(event__in=ALERT_EVENTS)  # an alert about failing alerts could not be delivered either
        .values("channel")
        .annotate(tried=Count("pk"), failing=Count("pk", filter=NOTIFICATION_FAILING))
        .order_by()
    }
    findings = []
    for channel in Channel:
        row = rows.get(channel.value, {"tried": 0, "failing": 0})
        share = selectors.ratio(row["failing"], row["tried"])
        firing = row["tried"] >= rule.min_volume and share is not None and share > rule.threshold
        findings.append(
            Finding(
                channel.value,
                firing,
                f"{percent(share)} of {channel.label} messages failing ({row['failing']} of {row['tried']}) "
                f"over the last {rule.window_minutes} min",
                {
                    "window_minutes": rule.window_minutes,
                    "channel": channel.value,
                    "tried": row["tried"],
                    "failing": row["failing"],
                    "share": _rate(share),
                    "threshold": rule.threshold,
                },
            )  # fmt: skip
        )
    return findings


def check_missing_from_statement(rule: AlertRule, evaluation: Evaluation) -> list[Finding]:
    found = payments_missing_from_statement(now=evaluation.now).aggregate(
        count=Count("pk"), amount=Sum(Coalesce("paid_amount", "amount")), oldest=Min("completed_at")
    )
    count = found["count"]
    amount = found["amount"] or Decimal("0")
    figures = {
        "payments": count,
        "amount_kes": f"{amount:.2f}",
        "oldest_completed": _when(found["oldest"]),
        "min_payments": rule.min_volume,
        "list": _changelist_url(attention.MISSING_FROM_STATEMENT),
    }
    title = (
        f"{count} completed M-Pesa payment{'s' if count != 1 else ''} (KES {amount:,.2f}) not on the "
        "imported statement"
    )
    return [Finding("", count >= max(rule.min_volume, 1), title, figures)]


CHECKS: dict[str, Callable[[AlertRule, Evaluation], list[Finding]]] = {
    AlertKind.SUCCESS_RATE: check_success_rate,
    AlertKind.CALLBACK_SILENCE: check_callback_silence,
    AlertKind.QUERY_SHARE: check_query_share,
    AlertKind.FAILURE_SPIKE: check_failure_spike,
    AlertKind.STUCK_ITEMS: check_stuck_items,
    AlertKind.TASK_FAILURES: check_task_failures,
    AlertKind.QUEUE_BACKLOG: check_queue_backlog,
    AlertKind.NOTIFICATION_FAILURES: check_notification_failures,
    AlertKind.MISSING_FROM_STATEMENT: check_missing_from_statement,
}
assert set(CHECKS) == set(AlertKind.values) == set(KIND_HELP)
