"""The period a scheduled report covers: the whole Nairobi day, Monday–Sunday week or calendar month that
ended before a date, and the one before it to compare with."""

import datetime as dt

from reports.models import Frequency
from reports.periods import Period

PERIOD_NAMES = {Frequency.DAILY: "day", Frequency.WEEKLY: "week", Frequency.MONTHLY: "month"}


def report_period(frequency: str, *, before: dt.date) -> Period:
    """The last complete day, week (Monday–Sunday) or month ending before `before` (a Nairobi date)."""
    if frequency == Frequency.DAILY:
        day = before - dt.timedelta(days=1)
        return frequency_period(frequency, day, day)
    if frequency == Frequency.WEEKLY:
        last_monday = before - dt.timedelta(days=before.weekday() + 7)
        return frequency_period(frequency, last_monday, last_monday + dt.timedelta(days=6))
    if frequency == Frequency.MONTHLY:
        last_day = before.replace(day=1) - dt.timedelta(days=1)
        return frequency_period(frequency, last_day.replace(day=1), last_day)
    raise ValueError(f"Unknown report frequency {frequency!r}.")


def frequency_period(frequency: str, first: dt.date, last: dt.date) -> Period:
    """A period a report of this frequency covers (a retry's too), named so that it compares the same way."""
    return Period(first, last, PERIOD_NAMES.get(frequency, "custom"))


def comparison_period(period: Period) -> Period:
    """The previous day, week or calendar month for a scheduled report; for any other period the same
    number of days just before (what the dashboard compares with)."""
    if period.name == PERIOD_NAMES[Frequency.MONTHLY]:
        return report_period(Frequency.MONTHLY, before=period.first)
    if period.name in (PERIOD_NAMES[Frequency.DAILY], PERIOD_NAMES[Frequency.WEEKLY]):
        length = dt.timedelta(days=period.days)
        return Period(period.first - length, period.last - length, period.name)
    return period.previous()
