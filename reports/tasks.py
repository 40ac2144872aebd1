"""django-q2 entry points for report emails: plain module functions with JSON-able arguments."""

import datetime as dt

from reports.models import RunTrigger
from reports.periods import NAIROBI
from reports.report_periods import frequency_period
from reports.report_services import report_subscription_deliver


def report_subscription_run(
    subscription_id: int,
    attempt: int = 1,
    period_first: str | None = None,
    period_last: str | None = None,
    frequency: str | None = None,
    intended_for: str | None = None,
) -> str:
    """A subscription's scheduled run (its CRON schedule, or a retry's ONCE schedule with the period).

    `intended_for` is the time the schedule was due (django-q2's intended_date_kwarg): the report covers
    the day, week or month that ended before that Nairobi date, even when the task runs late.
    """
    period = None
    if period_first and period_last:
        period = frequency_period(
            frequency or "", dt.date.fromisoformat(period_first), dt.date.fromisoformat(period_last)
        )
    before = dt.datetime.fromisoformat(intended_for).astimezone(NAIROBI).date() if intended_for else None
    run = report_subscription_deliver(
        subscription_id=subscription_id,
        trigger=RunTrigger.SCHEDULE,
        attempt=attempt,
        period=period,
        before=before,
    )
    return "skipped" if run is None else f"run {run.pk}: {run.status}"


def report_send_now(subscription_id: int, user_id: int | None = None) -> str:
    """ "Send now" from the admin: the subscription's latest complete period, once, no retry."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    run = report_subscription_deliver(
        subscription_id=subscription_id, trigger=RunTrigger.ADMIN, requested_by=user
    )
    return "skipped" if run is None else f"run {run.pk}: {run.status}"
