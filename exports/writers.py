"""Streaming CSV and XLSX writers shared by report attachments and list exports.

Rows come from an iterator (read from the database in chunks) and go straight to a file, so memory stays
flat however many rows there are. Cells are typed by their column's kind: datetimes are Nairobi wall-clock
time without a zone (spreadsheets have none; the column title names it), money is a number with two
decimals, flags are booleans, text is text (never a formula).
"""

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO
from zoneinfo import ZoneInfo

from django.utils import timezone

NAIROBI = ZoneInfo("Africa/Nairobi")
CHUNK_ROWS = 2_000
# Excel's limit is 1,048,576 rows a sheet, header included: longer files continue on another sheet.
XLSX_MAX_ROWS = 1_048_575
MONEY_FORMAT = "#,##0.00"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
CSV_DATETIME = "%Y-%m-%d %H:%M:%S"
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"

Progress = Callable[[int], None]
# Draws extra sheets before the rows' sheet: f(workbook, formats).
SheetDrawer = Callable[[object, dict], None]


@dataclass(frozen=True)
class Column:
    title: str
    kind: str  # text, number, datetime, money, flag
    width: int


def nairobi(moment: dt.datetime | None) -> dt.datetime | None:
    """Nairobi wall-clock time without a zone."""
    if moment is None:
        return None
    return timezone.localtime(moment, NAIROBI).replace(tzinfo=None)


# --- CSV ------------------------------------------------------------------------------------------------
def csv_text(value) -> str:
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


_CSV_CELL = {
    "datetime": lambda value: value.strftime(CSV_DATETIME),
    "money": lambda value: f"{value:.2f}",
    "flag": lambda value: "yes" if value else "no",
    "number": str,
}


def csv_formatters(columns: Iterable[Column]) -> list[Callable]:
    """One function per column turning a typed value into CSV text (None is handled by csv_cells)."""
    return [_CSV_CELL.get(column.kind, csv_text) for column in columns]


def csv_cells(formatters: list[Callable], row: tuple) -> list[str]:
    return ["" if value is None else cell(value) for cell, value in zip(formatters, row, strict=True)]


class Echo:
    """A file-like object whose write returns the line, for a streaming HTTP response."""

    def write(self, value):
        return value


def csv_lines(columns: tuple[Column, ...], rows: Iterable[tuple]) -> Iterator[str]:
    """The CSV as lines of text (UTF-8 with a BOM first, so Excel reads the accents right)."""
    writer = csv.writer(Echo())
    formatters = csv_formatters(columns)
    yield "\ufeff" + writer.writerow([column.title for column in columns])
    for row in rows:
        yield writer.writerow(csv_cells(formatters, row))


def write_csv(file: IO[bytes], columns: tuple[Column, ...], rows: Iterable[tuple]) -> int:
    """Write the CSV (as csv_lines has it) to a binary file; return the number of data rows."""
    text = io.TextIOWrapper(file, encoding="utf-8", newline="")
    count = 0

    def cells():
        nonlocal count
        formatters = csv_formatters(columns)
        for row in rows:
            count += 1
            yield csv_cells(formatters, row)

    try:
        writer = csv.writer(text)
        text.write("\ufeff")
        writer.writerow([column.title for column in columns])
        writer.writerows(cells())  # the loop runs in C: about twice as fast as a line at a time
        text.flush()
    finally:
        text.detach()  # the caller's file stays open
    return count


# --- XLSX -----------------------------------------------------------------------------------------------
def write_xlsx(
    path: str | IO[bytes],
    columns: tuple[Column, ...],
    rows: Iterable[tuple],
    *,
    sheet_title: str,
    before: SheetDrawer | None = None,
) -> int:
    """Write a workbook to `path` (a file name or a binary file): the sheets drawn by `before`, then the
    rows with typed columns on `sheet_title` ("<title> 2" and on past Excel's row limit). XlsxWriter's
    constant_memory mode flushes each row to a temporary file as the next one starts. Return the number
    of data rows."""
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
    if before is not None:
        before(workbook, formats)

    sheet = None
    sheet_number = 0
    row_index = XLSX_MAX_ROWS
    total = 0
    for row in rows:
        if row_index >= XLSX_MAX_ROWS:
            sheet_number += 1
            sheet = _rows_sheet(workbook, formats, columns, sheet_title, sheet_number)
            row_index = 0
        row_index += 1
        sheet.write_row(row_index, 0, row)
        total += 1
    if sheet is None:
        _rows_sheet(workbook, formats, columns, sheet_title, 1)
    workbook.close()
    return total


def _rows_sheet(workbook, formats: dict, columns: tuple[Column, ...], title: str, number: int):
    sheet = workbook.add_worksheet(title if number == 1 else f"{title} {number}")
    for index, column in enumerate(columns):
        sheet.set_column(index, index, column.width, formats.get(column.kind))
    sheet.write_row(0, 0, [column.title for column in columns], formats["header"])
    sheet.freeze_panes(1, 0)
    return sheet
