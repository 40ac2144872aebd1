"""M-PESA portal statement files for tests, in the portal's layout: preamble rows, a header row, data rows.

A line is a dict with any of these keys (see `line` for the defaults):

    receipt        "NLJ7RT61SV"
    completed_at   aware or naive datetime (naive = Nairobi local time), or text written as it is
    initiated_at   same, or None for an empty cell
    details        "Pay Bill Online from 254708374149 - JOHN DOE Acc. ORDER-1"
    status         Transaction Status, "Completed"
    paid_in        Decimal, int or text ("" for an empty cell); money in
    withdrawn      Decimal, int or text; money out, written as a positive amount (`negative_withdrawn`
                   writes it as the portal sometimes does: "-1,000.00")
    balance        Decimal, int, text or None
    balance_confirmed  "true" / "false"
    reason_type    "Pay Bill Online"
    other_party    "254708374149 - JOHN DOE"
    linked         Linked Transaction ID
    account        A/C No.

`customer_payment`, `charge`, `b2c_payment`, `reversal` and `transfer` build lines of each kind;
`statement_csv` and `statement_xlsx` write them as the portal's export does.
"""

import csv
import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl

NAIROBI = ZoneInfo("Africa/Nairobi")

# (dict key, the portal's header)
COLUMNS = [
    ("receipt", "Receipt No."),
    ("completed_at", "Completion Time"),
    ("initiated_at", "Initiation Time"),
    ("details", "Details"),
    ("status", "Transaction Status"),
    ("paid_in", "Paid In"),
    ("withdrawn", "Withdrawn"),
    ("balance", "Balance"),
    ("balance_confirmed", "Balance Confirmed"),
    ("reason_type", "Reason Type"),
    ("other_party", "Other Party Info"),
    ("linked", "Linked Transaction ID"),
    ("account", "A/C No."),
]
HEADER_VARIANTS = {
    # How other exports and hand-edited files spell the same headers.
    "lower": lambda header: header.lower().rstrip("."),
    "upper_spaced": lambda header: header.upper().replace(" ", "  "),
    "no_dots": lambda header: header.replace(".", ""),
}


def nairobi(year=2026, month=12, day=6, hour=10, minute=15, second=30) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=NAIROBI)


def line(**fields) -> dict:
    """A customer payment of KES 1,250.00 at 06-12-2026 10:15:30, overridden by `fields`."""
    values = {
        "receipt": "NLJ7RT61SV",
        "completed_at": nairobi(),
        "initiated_at": None,
        "details": "Pay Bill Online from 254708374149 - JOHN DOE Acc. ORDER-1",
        "status": "Completed",
        "paid_in": Decimal("1250.00"),
        "withdrawn": "",
        "balance": Decimal("101250.00"),
        "balance_confirmed": "true",
        "reason_type": "Pay Bill Online",
        "other_party": "254708374149 - JOHN DOE",
        "linked": "",
        "account": "ORDER-1",
    }
    unknown = set(fields) - set(values)
    if unknown:
        raise TypeError(f"unknown statement line keys: {sorted(unknown)}")
    values.update(fields)
    if values["initiated_at"] is None and isinstance(values["completed_at"], dt.datetime):
        values["initiated_at"] = values["completed_at"] - dt.timedelta(seconds=5)
    return values


def customer_payment(
    receipt: str,
    amount,
    *,
    at: dt.datetime | None = None,
    other_party: str = "2547*****149 - JOHN DOE",
    account: str = "",
    **fields,
) -> dict:
    return line(
        receipt=receipt,
        completed_at=at or nairobi(),
        paid_in=Decimal(amount),
        withdrawn="",
        reason_type="Pay Bill Online",
        details=f"Pay Bill Online from {other_party} Acc. {account}".strip(),
        other_party=other_party,
        account=account,
        **fields,
    )


def _paid_out(receipt: str, amount, at: dt.datetime | None, **fields) -> dict:
    """A line of money out (withdrawn, nothing paid in, no A/C No.); `fields` fill or replace the rest."""
    return line(
        **{
            "receipt": receipt,
            "completed_at": at or nairobi(),
            "paid_in": "",
            "withdrawn": Decimal(amount),
            "account": "",
            **fields,
        }
    )


def charge(receipt: str, amount, *, at: dt.datetime | None = None, **fields) -> dict:
    """The charge for a transaction: the same receipt as the transaction, money out."""
    return _paid_out(
        receipt,
        amount,
        at,
        **{
            "reason_type": "Business Pay Bill Charge",
            "details": "Pay Bill Online Charge",
            "other_party": "",
            **fields,
        },
    )


def b2c_payment(
    receipt: str,
    amount,
    *,
    at: dt.datetime | None = None,
    other_party: str = "254708374149 - JOHN DOE",
    **fields,
) -> dict:
    return _paid_out(
        receipt,
        amount,
        at,
        **{
            "reason_type": "Business Payment to Customer via API",
            "details": f"Business Payment to {other_party}",
            "other_party": other_party,
            **fields,
        },
    )


def reversal(receipt: str, amount, *, linked: str, at: dt.datetime | None = None, **fields) -> dict:
    """A customer payment reversed: money out, linked to the payment's receipt."""
    return _paid_out(
        receipt,
        amount,
        at,
        **{"reason_type": "Reversal", "details": f"Reversal for {linked}", "linked": linked, **fields},
    )


def transfer(receipt: str, amount, *, at: dt.datetime | None = None, **fields) -> dict:
    return _paid_out(
        receipt,
        amount,
        at,
        **{
            "reason_type": "Utility Account to Working Account",
            "details": "Funds moved to Working Account",
            "other_party": "174379 - ACME LTD",
            **fields,
        },
    )


def _period(lines: list[dict], period) -> tuple[dt.datetime, dt.datetime] | None:
    if period is not None:
        return period
    times = [item["completed_at"] for item in lines if isinstance(item["completed_at"], dt.datetime)]
    if not times:
        return None
    first, last = min(times), max(times)
    return (
        first.replace(hour=0, minute=0, second=0, microsecond=0),
        last.replace(hour=23, minute=59, second=59, microsecond=0),
    )


def _local(value: dt.datetime) -> dt.datetime:
    return value.astimezone(NAIROBI) if value.tzinfo else value.replace(tzinfo=NAIROBI)


def _time_text(value, time_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return _local(value).strftime(time_format)
    return str(value)


def _amount_text(value, *, negative: bool = False) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    amount = Decimal(value)
    return f"{-amount if negative else amount:,.2f}"


def _headers(columns, header_variant) -> list[tuple[str, str]]:
    headers = [(key, header) for key, header in COLUMNS if key in columns]
    if header_variant is None:
        return headers
    if isinstance(header_variant, dict):
        return [(key, header_variant.get(key, header)) for key, header in headers]
    change = HEADER_VARIANTS[header_variant]
    return [(key, change(header)) for key, header in headers]


def _preamble_rows(lines, *, shortcode, account_name, period) -> list[list[str]]:
    rows = [["Account Name:", account_name]]
    if shortcode:
        rows.append(["Short Code:", shortcode])
    window = _period(lines, period)
    if window:
        start, end = (_local(value).strftime("%d-%m-%Y %H:%M:%S") for value in window)
        rows.append(["Time Period:", f"From {start} To {end}"])
    rows.append(["Report Date:", "07-12-2026 08:00:00"])
    rows.append([])
    return rows


def statement_csv(
    lines: list[dict],
    *,
    shortcode: str = "174379",
    account_name: str = "ACME LTD",
    period: tuple[dt.datetime, dt.datetime] | None = None,
    preamble: bool = True,
    header_variant: str | dict | None = None,
    omit: tuple[str, ...] = (),
    delimiter: str = ",",
    encoding: str = "utf-8",
    time_format: str = "%d-%m-%Y %H:%M:%S",
    negative_withdrawn: bool = False,
) -> bytes:
    """The portal's CSV export of `lines`. `period` defaults to the days the lines span; `omit` leaves out
    columns by dict key; `header_variant` is a HEADER_VARIANTS name or {key: header}."""
    columns = [key for key, _header in COLUMNS if key not in omit]
    headers = _headers(columns, header_variant)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    if preamble:
        writer.writerows(_preamble_rows(lines, shortcode=shortcode, account_name=account_name, period=period))
    writer.writerow([header for _key, header in headers])
    for item in lines:
        row = []
        for key, _header in headers:
            value = item.get(key)
            if key in {"completed_at", "initiated_at"}:
                row.append(_time_text(value, time_format))
            elif key in {"paid_in", "withdrawn", "balance"}:
                row.append(_amount_text(value, negative=negative_withdrawn and key == "withdrawn"))
            else:
                row.append("" if value is None else str(value))
        writer.writerow(row)
    return out.getvalue().encode(encoding)


def statement_xlsx(
    lines: list[dict],
    *,
    shortcode: str = "174379",
    account_name: str = "ACME LTD",
    period: tuple[dt.datetime, dt.datetime] | None = None,
    preamble: bool = True,
    header_variant: str | dict | None = None,
    omit: tuple[str, ...] = (),
) -> bytes:
    """The portal's XLSX export of `lines`: real datetime cells (Nairobi local time) and numeric amounts."""
    columns = [key for key, _header in COLUMNS if key not in omit]
    headers = _headers(columns, header_variant)
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Statement")
    if preamble:
        for row in _preamble_rows(lines, shortcode=shortcode, account_name=account_name, period=period):
            sheet.append(row)
    sheet.append([header for _key, header in headers])
    for item in lines:
        row = []
        for key, _header in headers:
            value = item.get(key)
            if isinstance(value, dt.datetime):
                value = _local(value).replace(tzinfo=None)
            elif isinstance(value, Decimal | int) and not isinstance(value, bool):
                value = Decimal(value)
            elif value == "":
                value = None
            row.append(value)
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
