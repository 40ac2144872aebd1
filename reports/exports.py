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

import csv
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from django.db.models import Case, Exists, OuterRef, QuerySet, When
from django.utils import timezone

from common.phone import mask_msisdn
from payments.models import PAID_STATUSES, Payment, PaymentStatus
from reports import selectors
from reports.periods import NAIROBI, Period

CHUNK_ROWS = 2_000
# Excel's limit is 1,048,576 rows a sheet, header included: longer exports continue on another sheet.
XLSX_MAX_ROWS = 1_048_575
MONEY_FORMAT = "#,##0.00"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
CSV_DATETIME = "%Y-%m-%d %H:%M:%S"
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Column:
    title: str
    kind: str  # text, datetime, money, flag
    width: int


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
HEADER = [column.title for column in COLUMNS]

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


def _nairobi(moment: dt.datetime | None) -> dt.datetime | None:
    """Nairobi wall-clock time without a zone: spreadsheets have no time zones, the header names it."""
    if moment is None:
        return None
    return timezone.localtime(moment, NAIROBI).replace(tzinfo=None)


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
            _nairobi(created_at),
            _nairobi(completed_at),
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


# --- CSV ------------------------------------------------------------------------------------------------
def _csv_text(value) -> str:
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def csv_cells(row: tuple) -> list[str]:
    cells = []
    for column, value in zip(COLUMNS, row, strict=True):
        if value is None:
            cells.append("")
        elif column.kind == "datetime":
            cells.append(value.strftime(CSV_DATETIME))
        elif column.kind == "money":
            cells.append(f"{value:.2f}")
        elif column.kind == "flag":
            cells.append("yes" if value else "no")
        elif column.kind == "number":
            cells.append(str(value))
        else:
            cells.append(_csv_text(value))
    return cells


class _Echo:
    """A file-like object whose write returns the line, for a streaming HTTP response."""

    def write(self, value):
        return value


def csv_lines(
    period: Period, filters: selectors.Filters = selectors.NO_FILTERS, *, progress: Progress | None = None
) -> Iterator[str]:
    """The CSV as lines of text (UTF-8 with a BOM first, so Excel reads the accents right)."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(HEADER)
    for row in iter_rows(period, filters, progress=progress):
        yield writer.writerow(csv_cells(row))


def write_csv(
    file: IO[bytes],
    period: Period,
    filters: selectors.Filters = selectors.NO_FILTERS,
    *,
    progress: Progress | None = None,
) -> int:
    """Write the CSV to a binary file; return the number of data rows."""
    rows = -1
    for line in csv_lines(period, filters, progress=progress):
        file.write(line.encode("utf-8"))
        rows += 1
    return rows


# --- XLSX -----------------------------------------------------------------------------------------------
def write_xlsx(
    path: str | IO[bytes],
    summary_sheet: Callable,
    period: Period,
    filters: selectors.Filters = selectors.NO_FILTERS,
    *,
    progress: Progress | None = None,
) -> int:
    """Write the workbook to `path` (a file name or a binary file): the summary sheet (drawn by `summary_sheet(workbook, formats)`), then
    the payments with typed columns (real datetimes, money as numbers with 2 decimals, flags as
    booleans). XlsxWriter's constant_memory mode flushes each row to a temporary file as the next one
    starts. Return the number of data rows."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(
        path,
        {
            "constant_memory": True,
            "default_date_format": DATETIME_FORMAT,
            # Text is text: an order reference or an M-Pesa message starting with "=" is not a formula.
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    formats = {
        "bold": workbook.add_format({"bold": True}),
        "title": workbook.add_format({"bold": True, "font_size": 14}),
        "money": workbook.add_format({"num_format": MONEY_FORMAT}),
        "percent": workbook.add_format({"num_format": "0.0%"}),
        "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
        "datetime": workbook.add_format({"num_format": DATETIME_FORMAT}),
        "wrap": workbook.add_format({"text_wrap": True, "valign": "top"}),
        "header": workbook.add_format({"bold": True, "bottom": 1, "text_wrap": True, "valign": "top"}),
    }
    summary_sheet(workbook, formats)

    sheet = None
    sheet_number = 0
    row_index = XLSX_MAX_ROWS
    total = 0
    for row in iter_rows(period, filters, progress=progress):
        if row_index >= XLSX_MAX_ROWS:
            sheet_number += 1
            sheet = _payments_sheet(workbook, formats, sheet_number)
            row_index = 0
        row_index += 1
        sheet.write_row(row_index, 0, row)
        total += 1
    if sheet is None:
        _payments_sheet(workbook, formats, 1)
    workbook.close()
    return total


def _payments_sheet(workbook, formats: dict, number: int):
    sheet = workbook.add_worksheet("Payments" if number == 1 else f"Payments {number}")
    for index, column in enumerate(COLUMNS):
        cell_format = formats.get(column.kind)
        sheet.set_column(index, index, column.width, cell_format)
    sheet.write_row(0, 0, HEADER, formats["header"])
    sheet.freeze_panes(1, 0)
    return sheet
