"""Database functions for reports that every backend computes natively.

Django's timezone-aware truncation runs a Python function per row on SQLite; at millions of rows that is
most of a report's time. Africa/Nairobi has been UTC+3 all year since 1960 (no daylight saving), so on
SQLite a fixed '+3 hours' modifier gives the same Nairobi date and hour; PostgreSQL keeps Django's own
`AT TIME ZONE` SQL. tests/reports/test_functions.py checks both against Python's zoneinfo.
"""

from django.db.models import FloatField, Func
from django.db.models.functions import ExtractHour, TruncDate

from reports.periods import NAIROBI

SQLITE_NAIROBI_OFFSET = "+3 hours"


class NairobiDate(TruncDate):
    """The Africa/Nairobi calendar date of a timestamp."""

    def __init__(self, expression, **extra):
        super().__init__(expression, tzinfo=NAIROBI, **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.lhs)
        return f"date({sql}, '{SQLITE_NAIROBI_OFFSET}')", params


class NairobiHour(ExtractHour):
    """The Africa/Nairobi hour (0..23) of a timestamp."""

    def __init__(self, expression, **extra):
        super().__init__(expression, tzinfo=NAIROBI, **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.lhs)
        return f"CAST(strftime('%%H', {sql}, '{SQLITE_NAIROBI_OFFSET}') AS INTEGER)", params


class SecondsBetween(Func):
    """Seconds from `start` to `end` (both timestamps), as a float."""

    output_field = FloatField()

    def __init__(self, end, start, **extra):
        super().__init__(end, start, **extra)

    def as_postgresql(self, compiler, connection, **extra_context):
        end, start = (compiler.compile(expression) for expression in self.get_source_expressions())
        return f"EXTRACT(EPOCH FROM ({end[0]} - {start[0]}))::double precision", [*end[1], *start[1]]

    def as_sql(self, compiler, connection, **extra_context):
        end, start = (compiler.compile(expression) for expression in self.get_source_expressions())
        return f"((julianday({end[0]}) - julianday({start[0]})) * 86400.0)", [*end[1], *start[1]]
