"""Reporting periods: whole Africa/Nairobi days, as M-Pesa statements count them (EAT, UTC+3, no DST)."""

import calendar
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.utils import timezone

NAIROBI = ZoneInfo("Africa/Nairobi")
MAX_DAYS = 366


class PeriodError(ValueError):
    """A period that cannot be reported on (bad dates, reversed, too long)."""


@dataclass(frozen=True)
class Period:
    """From `first` to `last`, both Nairobi dates, inclusive."""

    first: dt.date
    last: dt.date
    name: str = "custom"

    def __post_init__(self):
        if self.last < self.first:
            raise PeriodError("The period ends before it starts.")
        if self.days > MAX_DAYS:
            raise PeriodError(f"A period covers at most {MAX_DAYS} days.")

    @property
    def start(self) -> dt.datetime:
        """The first instant of the period (Nairobi midnight of `first`)."""
        return dt.datetime.combine(self.first, dt.time.min, tzinfo=NAIROBI)

    @property
    def end(self) -> dt.datetime:
        """The first instant after the period (exclusive)."""
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time.min, tzinfo=NAIROBI)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=n) for n in range(self.days)]

    def previous(self) -> "Period":
        """What to compare with: the previous month up to the same day for a month, else the same number
        of days just before."""
        if self.name == "this_month":
            last_month_end = self.first - dt.timedelta(days=1)
            first = last_month_end.replace(day=1)
            day = min(self.last.day, calendar.monthrange(first.year, first.month)[1])
            return Period(first, first.replace(day=day), "previous_month")
        length = dt.timedelta(days=self.days)
        return Period(self.first - length, self.last - length, "previous")

    @property
    def label(self) -> str:
        if self.first == self.last:
            return f"{self.first:%a %-d %b %Y}"
        if self.first.year != self.last.year:
            return f"{self.first:%-d %b %Y} – {self.last:%-d %b %Y}"
        if self.first.month != self.last.month:
            return f"{self.first:%-d %b} – {self.last:%-d %b %Y}"
        return f"{self.first:%-d} – {self.last:%-d %b %Y}"


PRESETS = {
    "today": "Today",
    "yesterday": "Yesterday",
    "last_7_days": "Last 7 days",
    "last_30_days": "Last 30 days",
    "this_month": "This month",
}


def nairobi_today(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(NAIROBI).date()


def period_named(name: str, *, today: dt.date | None = None) -> Period:
    """One of PRESETS, ending today (Nairobi) unless it says otherwise."""
    today = today or nairobi_today()
    if name == "today":
        return Period(today, today, name)
    if name == "yesterday":
        yesterday = today - dt.timedelta(days=1)
        return Period(yesterday, yesterday, name)
    if name == "last_7_days":
        return Period(today - dt.timedelta(days=6), today, name)
    if name == "last_30_days":
        return Period(today - dt.timedelta(days=29), today, name)
    if name == "this_month":
        return Period(today.replace(day=1), today, name)
    raise PeriodError(f"Unknown period {name!r}; use one of {', '.join(PRESETS)} or custom dates.")


def parse_date(value: str, *, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise PeriodError(f"{field}: use a date as YYYY-MM-DD.") from exc


def period_between(first: str | dt.date, last: str | dt.date) -> Period:
    """A custom period from two dates (YYYY-MM-DD strings or dates), both inclusive."""
    if not isinstance(first, dt.date):
        first = parse_date(first, field="from")
    if not isinstance(last, dt.date):
        last = parse_date(last, field="to")
    return Period(first, last, "custom")
