"""Reading the M-PESA organisation portal's statement export (CSV or XLSX) into ParsedLine values.

The portal writes a few preamble rows (account name, short code, time period), then a header row, then one
row per line:

    Receipt No., Completion Time, Initiation Time, Details, Transaction Status, Paid In, Withdrawn, Balance,
    Balance Confirmed, Reason Type, Other Party Info, Linked Transaction ID, A/C No.

Header names and preamble labels are matched tolerantly (case, spacing, dots). Times are Africa/Nairobi
local time. Amounts may carry thousands separators; Withdrawn is stored as a positive number whichever sign
the file gives it. A file we cannot read whole is refused with StatementFormatError naming the column or the
row (as a spreadsheet numbers it): nothing of it is stored.

Lines whose Transaction Status is not "Completed" ("Failed", "Declined", ...) are read and kept with their
status; the reconciliation ignores them, since no money moved.

`open_statement` reads a file row by row (for imports of any size); `parse_statement` reads it whole.
"""

import codecs
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import PurePath
from zoneinfo import ZoneInfo

from statements.exceptions import StatementFormatError
from statements.models import LineKind
from statements.types import ParsedLine, ParsedStatement

NAIROBI = ZoneInfo("Africa/Nairobi")
COMPLETED = "Completed"
HEADER_SEARCH_ROWS = 30
CSV_DELIMITERS = (",", ";", "\t")
_CHUNK = 1024 * 1024
_CENT = Decimal("0.01")

# Canonical column -> the name the portal gives it (for messages) and the normalised names accepted.
COLUMNS: dict[str, tuple[str, frozenset[str]]] = {
    "receipt": ("Receipt No.", frozenset({"receipt no", "receipt number", "receipt"})),
    "completed_at": ("Completion Time", frozenset({"completion time", "completed time", "completed at"})),
    "initiated_at": ("Initiation Time", frozenset({"initiation time", "initiated time", "initiated at"})),
    "details": ("Details", frozenset({"details", "detail", "description"})),
    "transaction_status": ("Transaction Status", frozenset({"transaction status", "status"})),
    "paid_in": ("Paid In", frozenset({"paid in", "paidin", "money in"})),
    "withdrawn": ("Withdrawn", frozenset({"withdrawn", "withdrawal", "paid out", "money out"})),
    "balance": ("Balance", frozenset({"balance"})),
    "balance_confirmed": ("Balance Confirmed", frozenset({"balance confirmed"})),
    "reason_type": ("Reason Type", frozenset({"reason type", "reason"})),
    "other_party": (
        "Other Party Info",
        frozenset({"other party info", "other party", "other party information"}),
    ),
    "linked_transaction_id": (
        "Linked Transaction ID",
        frozenset({"linked transaction id", "linked transaction", "linked transaction no"}),
    ),
    "account_number": (
        "A/C No.",
        frozenset({"a/c no", "ac no", "account no", "account number", "a/c number"}),
    ),
}
REQUIRED_COLUMNS = ("receipt", "completed_at", "details", "paid_in", "withdrawn")
_HEADER_LOOKUP = {alias: key for key, (_label, aliases) in COLUMNS.items() for alias in aliases}

# Preamble labels, normalised to lower-case letters only ("Short Code:" -> "shortcode").
_PREAMBLE_LABELS = {
    "shortcode": "shortcode",
    "organisationshortcode": "shortcode",
    "organizationshortcode": "shortcode",
    "businessshortcode": "shortcode",
    "accountname": "account_name",
    "organisationname": "account_name",
    "organizationname": "account_name",
    "timeperiod": "period",
    "period": "period",
    "statementperiod": "period",
}
_PERIOD = re.compile(r"^\s*from\s+(?P<start>.+?)\s+to\s+(?P<end>.+?)\s*$", re.IGNORECASE)

# Every format the portal has been seen to write, day first: "2026-12-06 10:15:30", "06-12-2026 10:15:30",
# "06/12/2026 10:15:30", "06/12/2026 10:15" (optionally with fractions of a second or AM/PM).
_DATETIME = re.compile(
    r"^\s*(?P<a>\d{1,4})[-/.](?P<b>\d{1,2})[-/.](?P<c>\d{1,4})(?:[ T]+(?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.\d+)?)?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?\s*$"
)


class _Row:
    __slots__ = ("number", "cells")

    def __init__(self, number: int, cells: list):
        self.number = number
        self.cells = cells


# --- small readers, each unit-tested -----------------------------------------------------------------


def normalize_header(text) -> str:
    """ "RECEIPT  NO." -> "receipt no": case, runs of spaces and dots do not matter."""
    cleaned = str(text or "").replace("\ufeff", "").replace("_", " ").replace(".", " ").replace(":", " ")
    return " ".join(cleaned.split()).casefold()


def _preamble_label(text) -> str:
    return "".join(ch for ch in str(text or "").casefold() if ch.isalpha())


def parse_datetime(value) -> dt.datetime:
    """A statement time (text in any portal format, or an Excel datetime cell) as an aware Nairobi time.

    Raises ValueError when it is not one.
    """
    if type(value) is not str:
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=NAIROBI) if value.tzinfo is None else value
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=NAIROBI)
        if isinstance(value, int | float) and not isinstance(value, bool):
            from openpyxl.utils.datetime import from_excel

            return parse_datetime(from_excel(value))
        value = "" if value is None else str(value)
    match = _DATETIME.match(value)
    if not match:
        raise ValueError(f"not a date and time: {value!r}")
    a, b, c, hour, minute, second, ampm = match.groups()
    if len(a) == 4:
        year, month, day = int(a), int(b), int(c)
    elif len(c) == 4:
        day, month, year = int(a), int(b), int(c)
    else:
        raise ValueError(f"not a date and time: {value!r}")
    hour = int(hour or 0)
    if ampm:
        if not 1 <= hour <= 12:
            raise ValueError(f"not a date and time: {value!r}")
        hour = hour % 12 + (12 if ampm[0] in "Pp" else 0)
    return dt.datetime(year, month, day, hour, int(minute or 0), int(second or 0), tzinfo=NAIROBI)


def parse_amount(value, *, blank: Decimal | None = Decimal("0.00")) -> Decimal | None:
    """ "1,250.00", "-1,000.00", "(500.00)", 1250.5 or "" as a Decimal with two places (`blank` for empty).

    Raises ValueError for anything else, including fractions of a cent.
    """
    if type(value) is str:
        text = value.replace(",", "").strip()
        if not text:
            return blank
        if not text[0].isdigit():
            text = _amount_text(text)
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    elif value is None:
        return blank
    elif isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, Decimal):
        amount = value
    else:
        raise ValueError(f"not an amount: {value!r}")
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    rounded = amount.quantize(_CENT)
    if rounded != amount:
        raise ValueError(f"not an amount in shillings and cents: {value!r}")
    return rounded


def _amount_text(text: str) -> str:
    """ "KES 1250.00" -> "1250.00", "(500.00)" -> "-500.00"."""
    text = "".join(text.split())
    for currency in ("KES", "KSH"):
        if text.upper().startswith(currency):
            text = text[len(currency) :]
    if text.startswith("(") and text.endswith(")"):
        text = "-" + text[1:-1]
    return text


def _parse_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().casefold()
    if text in {"true", "yes", "y", "1"}:
        return True
    if text in {"false", "no", "n", "0"}:
        return False
    return None


_MASK_CHARS = "*xX#•"
_PARTY = re.compile(
    r"^\s*\+?(?P<number>[0-9][0-9*xX#•]{4,}|[*xX#•]+[0-9][0-9*xX#•]{3,})(?:\s*-\s*|\s+|$)(?P<name>.*)$"
)


def parse_other_party(text) -> tuple[str, str, int | None, str]:
    """Other Party Info as (phone prefix, phone suffix, phone length, name).

    "254708374149 - JOHN DOE"  -> ("254708374149", "", 12, "JOHN DOE")
    "2547*****149 - JOHN DOE"  -> ("2547", "149", 12, "JOHN DOE")
    "254708***149 - J*** D**"  -> ("254708", "149", 12, "J*** D**")
    "0708374149 - JOHN"        -> ("254708374149", "", 12, "JOHN")
    "JOHN DOE"                 -> ("", "", None, "JOHN DOE")
    "600000 - ACME"            -> ("", "", None, "ACME")   an organisation's shortcode is not a phone

    The prefix is the digits shown before the first mask character, written from 254 when the number is
    given as 07.. or 7..; the suffix the digits after the last mask character; the length counts masked
    digits too (12 for a Kenyan mobile).
    """
    text = " ".join(str(text or "").split())
    match = _PARTY.match(text)
    if not match:
        return "", "", None, text
    number, name = match["number"], (match["name"] or "").strip()
    masked = any(ch in _MASK_CHARS for ch in number)
    if number.startswith("0"):
        number = "254" + number[1:]
    elif len(number) == 9 and number[0] in "71":
        number = "254" + number
    if not masked and not (len(number) == 12 and number.startswith("254")):
        return "", "", None, name  # a shortcode or till: an organisation, not a person's phone
    if not masked:
        return number, "", len(number), name
    first_mask = min(number.index(ch) for ch in _MASK_CHARS if ch in number)
    last_mask = max(number.rindex(ch) for ch in _MASK_CHARS if ch in number)
    return number[:first_mask], number[last_mask + 1 :], len(number), name


# --- classification ---------------------------------------------------------------------------------


def _words(*phrases: str) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(phrases) + r")\b", re.IGNORECASE)


# First match wins, so a charge on a payment ("Pay Bill Online Charge") is a charge before it is a payment.
# (kind, pattern, needs money paid in)
CLASSIFICATION: tuple[tuple[str, re.Pattern, bool], ...] = (
    (LineKind.CHARGE, _words(r"charges?", r"fees?"), False),
    (LineKind.REVERSAL, _words(r"reversal", r"reversed", r"reverse"), False),
    (
        LineKind.B2C,
        _words(r"business payment", r"salary payment", r"promotion payment", r"b2c", r"business to customer"),
        False,
    ),
    (
        LineKind.TRANSFER,
        _words(
            r"transfer",
            r"settlement",
            r"utility account to working account",
            r"working account to utility account",
            r"withdrawal",
            r"funds transfer",
        ),
        False,
    ),
    (
        LineKind.CUSTOMER_PAYMENT,
        _words(
            r"pay ?bill online",
            r"pay ?bill",
            r"buy goods online",
            r"buy goods",
            r"pay merchant online",
            r"customer payment",
            r"merchant payment",
            r"customer pay ?bill online",
            r"customer merchant payment",
            r"c2b",
        ),
        True,
    ),
)


@lru_cache(maxsize=512)
def _kind_of_text(text: str) -> tuple[str, bool] | None:
    for kind, pattern, needs_paid_in in CLASSIFICATION:
        if pattern.search(text):
            return str(kind), needs_paid_in
    return None


def classify(reason_type: str, details: str, paid_in: Decimal, withdrawn: Decimal) -> str:
    """The LineKind of a statement line: by its Reason Type, or by its Details when the reason says nothing
    we know (Details can carry a customer's name, so it is only the fallback).

    A payment reason counts as a customer payment only when money came in ("Pay Bill" going out is a
    business paying someone else's bill: other).
    """
    found = _kind_of_text(reason_type.strip()) if reason_type and reason_type.strip() else None
    if found is None and details:
        found = _kind_of_text(details.strip())
    if found is None:
        return str(LineKind.OTHER)
    kind, needs_paid_in = found
    if needs_paid_in and not paid_in > 0:
        return str(LineKind.OTHER)
    return kind


# --- files ------------------------------------------------------------------------------------------


class StatementFile:
    """An open statement: what the preamble said, the columns found, and its lines read one at a time."""

    def __init__(
        self,
        *,
        file_format: str,
        rows: Iterator[_Row],
        preamble: dict[str, str],
        header: _Row,
        columns: dict[str, int],
    ):
        self.file_format = file_format
        self.headers = [_cell_text(cell) for cell in header.cells]
        self.columns = columns
        # "174379" or "174379 - ACME LTD": the digits are the shortcode.
        digits = re.match(r"\s*(\d+)", preamble.get("shortcode", ""))
        self.shortcode = digits[1] if digits else "".join(preamble.get("shortcode", "").split())
        self.account_name = preamble.get("account_name", "").strip()
        self.period_start, self.period_end = _parse_period(preamble.get("period", ""))
        self._rows = rows

    def lines(self) -> Iterator[ParsedLine]:
        """Each data row as a ParsedLine (blank rows skipped); StatementFormatError at the first unreadable
        row."""
        named = [(index, name) for index, name in enumerate(self.headers) if name]
        width = max([index + 1 for index, _name in named] + [index + 1 for index in self.columns.values()])
        # Cells of a CSV are text already; an XLSX row also has datetimes, numbers and booleans.
        as_text = _strip_all if self.file_format == "csv" else _text_all
        reader = _RowReader(self.columns)
        for row in self._rows:
            cells = row.cells
            texts = as_text(cells)
            if not any(texts):
                continue
            if len(cells) < width:
                padding = [None] * (width - len(cells))
                cells, texts = cells + padding, texts + [""] * len(padding)
            yield reader.line(row.number, cells, texts, {name: texts[index] for index, name in named})


def _strip_all(cells: list) -> list[str]:
    return [cell.strip() for cell in cells]


def _text_all(cells: list) -> list[str]:
    return [_cell_text(cell) for cell in cells]


def _has_text(cell) -> bool:
    return cell is not None and (not isinstance(cell, str) or bool(cell.strip()))


def _cell_text(cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, dt.datetime):
        return cell.isoformat(sep=" ")
    if isinstance(cell, float):
        text = repr(cell)
        return text[:-2] if text.endswith(".0") else text
    return str(cell)


class _RowReader:
    """One data row -> ParsedLine, with the column positions looked up once per file."""

    def __init__(self, columns: dict[str, int]):
        self.columns = columns
        for key in COLUMNS:
            setattr(self, key, columns.get(key, -1))  # -1: the file has no such column

    @staticmethod
    def _refuse(number: int, key: str, problem: str) -> StatementFormatError:
        label = COLUMNS[key][0]
        return StatementFormatError(f"Row {number}: {label} {problem}.", row=number, column=label)

    def line(self, number: int, cells: list, texts: list[str], raw: dict) -> ParsedLine:
        def value(index: int):
            return cells[index] if index >= 0 else None

        def text(index: int) -> str:
            return texts[index] if index >= 0 else ""

        receipt = texts[self.receipt].upper()
        if not receipt:
            raise self._refuse(number, "receipt", "is empty")
        if len(receipt) > 32 or not receipt.isalnum():
            raise self._refuse(number, "receipt", f"is not a receipt number ({receipt!r})")
        try:
            completed_at = parse_datetime(cells[self.completed_at])
        except (ValueError, OverflowError, TypeError):
            raise self._refuse(
                number, "completed_at", f"is not a date and time ({texts[self.completed_at]!r})"
            ) from None
        initiated_at = None
        if text(self.initiated_at):
            try:
                initiated_at = parse_datetime(cells[self.initiated_at])
            except (ValueError, OverflowError, TypeError):
                raise self._refuse(
                    number, "initiated_at", f"is not a date and time ({texts[self.initiated_at]!r})"
                ) from None
        try:
            paid_in = parse_amount(cells[self.paid_in])
        except ValueError:
            raise self._refuse(number, "paid_in", f"is not an amount ({texts[self.paid_in]!r})") from None
        if paid_in < 0:
            raise self._refuse(number, "paid_in", f"is negative ({texts[self.paid_in]!r})")
        try:
            # The portal sometimes writes money out as "-1,000.00": stored as a positive amount.
            withdrawn = abs(parse_amount(cells[self.withdrawn]))
        except ValueError:
            raise self._refuse(number, "withdrawn", f"is not an amount ({texts[self.withdrawn]!r})") from None
        try:
            balance = parse_amount(value(self.balance), blank=None)
        except ValueError:
            raise self._refuse(number, "balance", f"is not an amount ({text(self.balance)!r})") from None
        status = text(self.transaction_status)
        if not status or status.casefold() == "completed":
            status = COMPLETED  # a statement without the column lists completed transactions
        reason_type, details, other_party = (
            text(self.reason_type),
            texts[self.details],
            text(self.other_party),
        )
        prefix, suffix, length, name = parse_other_party(other_party)
        return ParsedLine(
            receipt=receipt,
            completed_at=completed_at,
            kind=classify(reason_type, details, paid_in, withdrawn),
            paid_in=paid_in,
            withdrawn=withdrawn,
            initiated_at=initiated_at,
            details=details[:300],
            transaction_status=status[:32],
            balance=balance,
            balance_confirmed=_parse_bool(value(self.balance_confirmed)),
            reason_type=reason_type[:100],
            other_party=other_party[:200],
            party_phone_prefix=prefix[:12],
            party_phone_suffix=suffix[:12],
            party_phone_length=length,
            party_name=name[:150],
            linked_transaction_id=text(self.linked_transaction_id).upper()[:32],
            account_number=text(self.account_number)[:64],
            row_number=number,
            raw=raw,
        )


def _parse_period(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    match = _PERIOD.match(text or "")
    if not match:
        return None, None
    try:
        return parse_datetime(match["start"]), parse_datetime(match["end"])
    except (ValueError, OverflowError):
        return None, None


def _header_columns(cells: Iterable) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, cell in enumerate(cells):
        key = _HEADER_LOOKUP.get(normalize_header(cell)) if isinstance(cell, str) else None
        if key is not None and key not in columns:
            columns[key] = index
    return columns


def _is_header(columns: dict[str, int]) -> bool:
    return len(columns) >= 3


def _preamble_entry(cells: list) -> tuple[str, str] | None:
    texts = [_cell_text(cell) for cell in cells if _has_text(cell)]
    if not texts:
        return None
    label, rest = texts[0], texts[1:]
    if not rest and ":" in label:
        label, value = label.split(":", 1)
        rest = [value]
    key = _PREAMBLE_LABELS.get(_preamble_label(label))
    if key is None or not rest:
        return None
    return key, " ".join(part.strip() for part in rest if part.strip())


def _find_header(rows: Iterator[_Row]) -> tuple[dict[str, str], _Row, dict[str, int]]:
    preamble: dict[str, str] = {}
    for row in rows:
        columns = _header_columns(row.cells)
        if _is_header(columns):
            missing = [COLUMNS[key][0] for key in REQUIRED_COLUMNS if key not in columns]
            if missing:
                raise StatementFormatError(
                    f"The statement has no {', '.join(missing)} column (header row {row.number}).",
                    row=row.number,
                    column=missing[0],
                )
            return preamble, row, columns
        entry = _preamble_entry(row.cells)
        if entry is not None:
            preamble.setdefault(*entry)
        if row.number >= HEADER_SEARCH_ROWS:
            break
    raise StatementFormatError(
        f"No header row (Receipt No., Completion Time, Details, Paid In, Withdrawn ...) in the first "
        f"{HEADER_SEARCH_ROWS} rows: this is not an M-PESA statement export."
    )


def _numbered(rows: Iterable) -> Iterator[_Row]:
    for number, cells in enumerate(rows, start=1):
        yield _Row(number, list(cells))


def _detect_encoding(fileobj) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as it, else Windows-1252."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        while chunk := fileobj.read(_CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "cp1252"
    finally:
        fileobj.seek(0)
    return "utf-8-sig"


def _detect_delimiter(sample: str) -> str:
    """The delimiter that makes one of the first rows a statement header (comma, semicolon or tab)."""
    for delimiter in CSV_DELIMITERS:
        reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
        try:
            for index, cells in enumerate(reader):
                if index >= HEADER_SEARCH_ROWS:
                    break
                if _is_header(_header_columns(cells)):
                    return delimiter
        except csv.Error:
            continue
    return ","


def _csv_rows(text_stream) -> Iterator[_Row]:
    try:
        yield from _numbered(text_stream)
    except csv.Error as exc:
        raise StatementFormatError(f"The file cannot be read as CSV: {exc}.") from None


@contextmanager
def _open_csv(fileobj) -> Iterator[Iterator[_Row]]:
    encoding = _detect_encoding(fileobj)
    sample = fileobj.read(256 * 1024)
    fileobj.seek(0)
    delimiter = _detect_delimiter(codecs.decode(sample, encoding, errors="ignore"))
    text = io.TextIOWrapper(fileobj, encoding=encoding, errors="replace", newline="")
    try:
        yield _csv_rows(csv.reader(text, delimiter=delimiter))
    finally:
        text.detach()  # the caller's file stays open


@contextmanager
def _open_xlsx(fileobj) -> Iterator[Iterator[_Row]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(fileobj, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise StatementFormatError(f"The file is not a readable XLSX workbook ({exc}).") from None
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise StatementFormatError("The workbook has no sheet.")
        # The portal's files may state a wrong used range; without it every row is read as it is.
        sheet.reset_dimensions()
        yield _numbered(sheet.iter_rows(values_only=True))
    finally:
        workbook.close()


def _file_kind(fileobj, file_name: str) -> str:
    head = fileobj.read(8)
    fileobj.seek(0)
    extension = PurePath(file_name or "").suffix.casefold()
    if head.startswith(b"PK"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise StatementFormatError(
            "This is an old Excel (.xls) workbook: save it as .xlsx or CSV and import that."
        )
    if head.startswith(b"%PDF"):
        raise StatementFormatError("This is a PDF: export the statement from the portal as CSV or XLSX.")
    if extension in {".xlsx", ".xlsm"}:
        raise StatementFormatError("The file is named .xlsx but is not an XLSX workbook.")
    sample = fileobj.read(64 * 1024)
    fileobj.seek(0)
    if b"\x00" in sample:
        raise StatementFormatError("The file is neither CSV nor XLSX (it holds binary data).")
    return "csv"


@contextmanager
def open_statement(fileobj, *, file_name: str) -> Iterator[StatementFile]:
    """Open a statement file (a binary, seekable file object) and read up to its header row.

    CSV or XLSX is told by the content (an XLSX file is a zip, starting with b"PK") and the extension.
    Raises StatementFormatError for an unknown format, a header row not found in the first 30 rows or a
    required column missing; `lines()` raises it at the first unreadable row.
    """
    if not hasattr(fileobj, "seek") or (hasattr(fileobj, "seekable") and not fileobj.seekable()):
        fileobj = io.BytesIO(fileobj.read())
    fileobj.seek(0)
    file_format = _file_kind(fileobj, file_name)
    opener = _open_xlsx if file_format == "xlsx" else _open_csv
    with opener(fileobj) as rows:
        preamble, header, columns = _find_header(rows)
        yield StatementFile(
            file_format=file_format, rows=rows, preamble=preamble, header=header, columns=columns
        )


def parse_statement(fileobj, *, file_name: str) -> ParsedStatement:
    """A whole statement file read into memory (see open_statement for files of any size)."""
    with open_statement(fileobj, file_name=file_name) as statement:
        lines = list(statement.lines())
        return ParsedStatement(
            lines=lines,
            shortcode=statement.shortcode,
            account_name=statement.account_name,
            period_start=statement.period_start,
            period_end=statement.period_end,
            file_format=statement.file_format,
        )
