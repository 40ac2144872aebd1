"""Nairobi dates and hours computed by the database agree with Python's zoneinfo."""

import datetime as dt

import pytest
from django.db.models import F

from payments.models import Payment
from reports.functions import NairobiDate, NairobiHour, SecondsBetween
from reports.periods import NAIROBI
from tests.reports import dataset


def test_nairobi_is_utc_plus_three_all_year():
    for year in range(2000, 2041):
        for month in (1, 4, 7, 10):
            assert dt.datetime(year, month, 15, tzinfo=NAIROBI).utcoffset() == dt.timedelta(hours=3)


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2026, 11, 9, 20, 59, 59, tzinfo=dt.UTC),  # 23:59:59 in Nairobi
        dt.datetime(2026, 11, 9, 21, 0, 0, tzinfo=dt.UTC),  # midnight in Nairobi
        dt.datetime(2026, 12, 31, 22, 30, tzinfo=dt.UTC),  # new year in Nairobi
        dt.datetime(2026, 6, 1, 5, 15, 30, 250000, tzinfo=dt.UTC),
    ],
)
def test_the_database_gives_the_nairobi_date_and_hour(api_user, moment):
    payment = dataset.attempt(dataset.order(api_user), created=moment, status="completed", took=12)

    row = (
        Payment.objects.filter(pk=payment.pk)
        .annotate(
            day=NairobiDate("created_at"),
            hour=NairobiHour("created_at"),
            took=SecondsBetween(F("completed_at"), F("initiated_at")),
        )
        .values("day", "hour", "took")
        .get()
    )

    local = moment.astimezone(NAIROBI)
    assert (row["day"], row["hour"]) == (local.date(), local.hour)
    assert row["took"] == pytest.approx(12.0, abs=0.01)
