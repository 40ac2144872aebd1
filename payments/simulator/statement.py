"""The simulated account's statement, laid out like the M-PESA org portal's export (CSV or XLSX).

A preamble (account name, short code, period, a blank row), then one row per ledger entry with the portal's
columns. Rows follow the ledger (the order of the running balance), oldest first. Times are Nairobi time;
CSV amounts are written with two decimals and thousands separators ("1,250.00"), XLSX amounts are numbers.
Withdrawn amounts are written positive; the empty cell is the other column.
"""

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import ledger
from .ids import NAIROBI, epoch_now, nairobi_at

HEADER = (
    "Receipt No.",
    "Completion Time",
    "Initiation Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
    "Balance Confirmed",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    "A/C No.",
)
MONEY_COLUMNS = ("Paid In", "Withdrawn", "Balance")
FORMATS = ("csv", "xlsx")
_TIME = "%Y-%m-%d %H:%M:%S"
_PERIOD_TIME = "%d-%m-%Y %H:%M:%S"


def masked_phone(phone: str) -> str:
    """The portal's mask: first 4 and last 3 digits shown ("2547*****149")."""
    if len(phone) <= 7:
        return "*" * len(phone)
    return f"{phone[:4]}{'*' * (len(phone) - 7)}{phone[-3:]}"


def other_party(phone: str) -> str:
    return f"{masked_phone(phone)} - {ledger.customer_name(phone)}" if phone else ""


def _details(entry: dict[str, Any]) -> str:
    reason, party, account = entry["reason_type"], other_party(entry["phone"]), entry["account"]
    if reason in ledger.CUSTOMER_PAYMENT_REASONS:
        return f"{reason} from {party}" + (f" Acc. {account}" if account else "")
    if reason == ledger.REVERSAL:
        return f"Reversal of transaction {entry['linked_receipt']}"
    if reason == ledger.B2C_CHARGE:
        return ledger.B2C_CHARGE
    return f"Business Payment to {party}"


def _amount(text: str) -> Decimal | None:
    amount = Decimal(text)
    return amount if amount else None


def statement_rows(
    *, shortcode: str, first: dt.date, last: dt.date, now: float | None = None
) -> list[dict[str, Any]]:
    """One dict per statement line (column -> value; amounts as Decimal or None), completed by `now`."""
    start, end = ledger.nairobi_day_bounds(first, last)
    end = min(end, epoch_now() if now is None else now)
    rows = []
    for entry in ledger.entries_between(shortcode, start, end):
        rows.append(
            {
                "Receipt No.": entry["receipt"],
                "Completion Time": nairobi_at(entry["completed_at"]).strftime(_TIME),
                "Initiation Time": nairobi_at(entry["initiated_at"]).strftime(_TIME),
                "Details": _details(entry),
                "Transaction Status": "Completed",
                "Paid In": _amount(entry["paid_in"]),
                "Withdrawn": _amount(entry["withdrawn"]),
                "Balance": Decimal(entry["balance"]),
                "Balance Confirmed": "true",
                "Reason Type": entry["reason_type"],
                "Other Party Info": other_party(entry["phone"]),
                "Linked Transaction ID": entry["linked_receipt"],
                "A/C No.": entry["account"],
            }
        )
    return rows


def _preamble(shortcode: str, first: dt.date, last: dt.date) -> list[list[str]]:
    period_start = dt.datetime.combine(first, dt.time.min, tzinfo=NAIROBI).strftime(_PERIOD_TIME)
    period_end = dt.datetime.combine(last, dt.time(23, 59, 59), tzinfo=NAIROBI).strftime(_PERIOD_TIME)
    return [
        ["Account Name:", ledger.account_name()],
        ["Short Code:", shortcode],
        ["Time Period:", f"From {period_start} To {period_end}"],
        [],
    ]


def statement_csv(rows: list[dict[str, Any]], *, shortcode: str, first: dt.date, last: dt.date) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(_preamble(shortcode, first, last))
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(
            [
                ("" if row[column] is None else f"{row[column]:,.2f}")
                if column in MONEY_COLUMNS
                else row[column]
                for column in HEADER
            ]
        )
    return buffer.getvalue()


def statement_xlsx(rows: list[dict[str, Any]], *, shortcode: str, first: dt.date, last: dt.date) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Statement"
    for line in _preamble(shortcode, first, last):
        sheet.append(line or [None])
    sheet.append(list(HEADER))
    for row in rows:
        sheet.append([row[column] if row[column] != "" else None for column in HEADER])
        for index, column in enumerate(HEADER, start=1):
            if column in MONEY_COLUMNS:
                sheet.cell(row=sheet.max_row, column=index).number_format = "#,##0.00"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def statement_write(
    path: str | Path, *, shortcode: str, first: dt.date, last: dt.date, file_format: str = "csv"
) -> int:
    """Write the statement of [first, last] (Nairobi days) to `path`; returns the number of lines."""
    if file_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    rows = statement_rows(shortcode=shortcode, first=first, last=last)
    if file_format == "xlsx":
        Path(path).write_bytes(statement_xlsx(rows, shortcode=shortcode, first=first, last=last))
    else:
        Path(path).write_text(
            statement_csv(rows, shortcode=shortcode, first=first, last=last), encoding="utf-8", newline=""
        )
    return len(rows)
