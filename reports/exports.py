"""The period's payments as CSV or XLSX, one row per attempt, streamed: rows are read from the database in
chunks and written straight to a file, so a month of a million attempts never sits in memory.

Which rows: every payment created in the period (any method) and every payment whose money came in during
the period (reports.selectors.payments_collected, which includes attempts created the day before). Two
columns say how each row counts in the summary, both computed by the database from the selectors'
own querysets, so the file reconciles with the email:
- "Counted in attempts": the row is one of selectors.mpesa_attempts (their number is `attempts`);
- "Counted in collected": the row is one of selectors.payments_collected (the sum of their "Paid" is
  `collected`).
"""

from collections.abc import Iterator
from typing import IO

from django.db.models import Case, Exists, OuterRef, QuerySet, When

from common.phone import mask_msisdn
from exports import writers
from exports.writers import CHUNK_ROWS, Column, Progress, nairobi
from payments.models import PAID_STATUSES, Payment, PaymentStatus
from reports import selectors
from reports.periods import Period

COLUMNS = (
    Column("Payment ID", "number", 11),
    Column("Order reference", "text", 16),
    Column("Created (Nairobi)", "datetime", 19),
    Column("Completed (Nairobi)", "datetime", 19),
    Column("Method", "text", 8),
    Column("Amount (KES)", "money", 13),
    Column("Paid (KES)", "money", 13),
    Column("Status", "text", 18),
    Column("Result code", "text", 11),
    Column("Reason", "text", 32),
    Column("Failure class", "text", 13),
    Column("M-Pesa receipt", "text", 14),
    Column("Settled by", "text", 10),
    Column("Refunded (KES)", "money", 14),
    Column("Phone", "text", 14),
    Column("Counted in attempts", "flag", 10),
    Column("Counted in collected", "flag", 10),
)

_FIELDS = (
    "pk",
    "order__reference",
    "created_at",
    "completed_at",
    "method",
    "amount",
    "paid",
    "status",
    "result_code",
    "result_desc",
    "failure_class",
    "mpesa_receipt_number",
    "settled_by",
    "refunded_amount",
    "phone",
    "in_attempts",
    "in_collected",
)


def report_rows(period: Period, filters: selectors.Filters = selectors.NO_FILTERS) -> QuerySet[Payment]:
    """The period's payments with what the export needs, oldest first (see the module docstring)."""
    created = filters.payments(
        Payment.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
    )
    attempts = selectors.mpesa_attempts(period, filters)
    collected = selectors.payments_collected(period, filters)
    return (
        (created | collected)
        .annotate(
            paid=Case(When(status__in=PAID_STATUSES, then=selectors.PAID_AMOUNT), default=None),
            in_attempts=Exists(attempts.filter(pk=OuterRef("pk"))),
            in_collected=Exists(collected.filter(pk=OuterRef("pk"))),
        )
        .order_by("created_at", "pk")
    )


def report_row_count(period: Period, filters: selectors.Filters = selectors.NO_FILTERS) -> int:
    return report_rows(period, filters).count()


def iter_rows(
    period: Period,
    filters: selectors.Filters = selectors.NO_FILTERS,
    *,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple]:
    """Typed rows in COLUMNS order: datetimes (naive, Nairobi), money as Decimal, flags as bool.

    `.iterator(chunk_size)` fetches `chunk_rows` at a time (a server-side cursor on PostgreSQL, chunked
    fetches on SQLite): memory stays flat whatever the period holds.
    """
    rows = report_rows(period, filters).values_list(*_FIELDS).iterator(chunk_size=chunk_rows)
    done = 0
    for (
        pk,
        reference,
        created_at,
        completed_at,
        method,
        amount,
        paid,
        status,
        result_code,
        result_desc,
        failure_class,
        receipt,
        settled_by,
        refunded,
        phone,
        in_attempts,
        in_collected,
    ) in rows:
        failed = status == PaymentStatus.FAILED
        yield (
            pk,
            reference,
            nairobi(created_at),
            nairobi(completed_at),
            method,
            amount,
            paid,
            status,
            result_code,
            selectors.failure_reason(result_code, failure_class, result_desc) if failed else "",
            failure_class,
            receipt or "",
            settled_by,
            refunded,
            mask_msisdn(phone),
            bool(in_attempts),
            bool(in_collected),
        )
        done += 1
        if progress and done % chunk_rows == 0:
            progress(chunk_rows)
    if progress and done % chunk_rows:
        progress(done % chunk_rows)


# --- CSV and XLSX (exports.writers) ---------------------------------------------------------------------
def csv_lines(
    period: Period, filters: selectors.Filters = selectors.NO_FILTERS, *, progress: Progress | None = None
) -> Iterator[str]:
    """The CSV as lines of text (UTF-8 with a BOM first, so Excel reads the accents right)."""
    return writers.csv_lines(COLUMNS, iter_rows(period, filters, progress=progress))


def write_csv(
    file: IO[bytes],
    period: Period,
    filters: selectors.Filters = selectors.NO_FILTERS,
    *,
    progress: Progress | None = None,
) -> int:
    """Write the CSV to a binary file; return the number of data rows."""
    return writers.write_csv(file, COLUMNS, iter_rows(period, filters, progress=progress))


def write_xlsx(
    path: str | IO[bytes],
    summary_sheet: writers.SheetDrawer,
    period: Period,
    filters: selectors.Filters = selectors.NO_FILTERS,
    *,
    progress: Progress | None = None,
) -> int:
    """Write the workbook to `path` (a file name or a binary file): the summary sheet (drawn by
    `summary_sheet(workbook, formats)`), then the payments with typed columns (real datetimes, money as
    numbers with 2 decimals, flags as booleans), streamed. Return the number of data rows."""
    return writers.write_xlsx(
        path,
        COLUMNS,
        iter_rows(period, filters, progress=progress),
        sheet_title="Payments",
        before=summary_sheet,
    )
