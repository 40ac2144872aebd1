"""Reading the M-PESA portal's statement export: formats, headers, preamble, amounts, times, kinds and
Other Party Info."""

import datetime as dt
import io
import zipfile
from decimal import Decimal

import pytest

from statements.exceptions import StatementFormatError
from statements.models import LineKind
from statements.parsing import (
    classify,
    normalize_header,
    parse_amount,
    parse_datetime,
    parse_other_party,
    parse_statement,
)
from tests.statements.statement_files import (
    NAIROBI,
    b2c_payment,
    charge,
    customer_payment,
    line,
    nairobi,
    reversal,
    statement_csv,
    statement_xlsx,
    transfer,
)

D = Decimal


def parse(data: bytes, name: str = "statement.csv"):
    return parse_statement(io.BytesIO(data), file_name=name)


def every_kind() -> list[dict]:
    return [
        customer_payment("TKA1000001", "1250", account="ORDER-1"),
        charge("TKA1000001", "15"),
        b2c_payment("TKA1000002", "1000", at=nairobi(hour=11)),
        reversal("TKA1000003", "500", linked="TKA1000001", at=nairobi(hour=12)),
        transfer("TKA1000004", "20000", at=nairobi(day=7, hour=9)),
    ]


# --- classification -----------------------------------------------------------------------------------
IN, OUT = (D("1250.00"), D("0")), (D("0"), D("1250.00"))


@pytest.mark.parametrize(
    ("reason_type", "money", "kind"),
    [
        ("Pay Bill Online", IN, LineKind.CUSTOMER_PAYMENT),
        ("Pay Bill", IN, LineKind.CUSTOMER_PAYMENT),
        ("Buy Goods Online", IN, LineKind.CUSTOMER_PAYMENT),
        ("Pay Merchant Online", IN, LineKind.CUSTOMER_PAYMENT),
        ("Customer Payment", IN, LineKind.CUSTOMER_PAYMENT),
        ("Merchant Payment", IN, LineKind.CUSTOMER_PAYMENT),
        ("C2B", IN, LineKind.CUSTOMER_PAYMENT),
        ("Pay Bill", OUT, LineKind.OTHER),  # the business paying someone else's bill
        ("Reversal", OUT, LineKind.REVERSAL),
        ("Reversal", IN, LineKind.REVERSAL),
        ("Business Payment", OUT, LineKind.B2C),
        ("Salary Payment", OUT, LineKind.B2C),
        ("Promotion Payment", OUT, LineKind.B2C),
        ("B2C", OUT, LineKind.B2C),
        ("Business Payment to Customer via API", OUT, LineKind.B2C),
        ("Business Pay Bill Charge", OUT, LineKind.CHARGE),
        ("B2C Payment Charge", OUT, LineKind.CHARGE),
        ("Pay Bill Online Charge", OUT, LineKind.CHARGE),
        ("Transaction Fee", OUT, LineKind.CHARGE),
        ("Transfer", OUT, LineKind.TRANSFER),
        ("Settlement", OUT, LineKind.TRANSFER),
        ("Utility Account to Working Account", OUT, LineKind.TRANSFER),
        ("Withdrawal", OUT, LineKind.TRANSFER),
        ("Funds Transfer", IN, LineKind.TRANSFER),
        ("Organization Account Balance Query", IN, LineKind.OTHER),
    ],
)
def test_every_reason_type_is_classified(reason_type, money, kind):
    paid_in, withdrawn = money
    assert classify(reason_type, "", paid_in, withdrawn) == kind
    assert classify(reason_type.upper(), "", paid_in, withdrawn) == kind


def test_details_classify_a_line_without_a_reason_type():
    assert (
        classify("", "Pay Bill Online from 2547*****149 - JOHN DOE Acc. 1", D("10"), D("0"))
        == LineKind.CUSTOMER_PAYMENT
    )
    assert classify("", "Business Payment to 254708374149 - JOHN DOE", D("0"), D("10")) == LineKind.B2C
    assert classify("", "Pay Bill Online Charge", D("0"), D("1")) == LineKind.CHARGE
    assert classify("", "", D("10"), D("0")) == LineKind.OTHER


def test_the_reason_type_wins_over_a_name_in_the_details():
    # A customer called "FEE" paying in is a payment, not a charge.
    assert (
        classify("Pay Bill Online", "Pay Bill Online from 254708374149 - JOHN FEE", D("10"), D("0"))
        == LineKind.CUSTOMER_PAYMENT
    )


# --- Other Party Info --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("254708374149 - JOHN DOE", ("254708374149", "", 12, "JOHN DOE")),
        ("2547*****149 - JOHN DOE", ("2547", "149", 12, "JOHN DOE")),
        ("254708***149 - J*** D**", ("254708", "149", 12, "J*** D**")),
        ("0708374149 - JOHN", ("254708374149", "", 12, "JOHN")),
        ("0708***149 - JOHN", ("254708", "149", 12, "JOHN")),
        ("708374149 - JOHN", ("254708374149", "", 12, "JOHN")),
        ("+254708374149 - JOHN DOE", ("254708374149", "", 12, "JOHN DOE")),
        ("254708374149", ("254708374149", "", 12, "")),
        ("2547XXXXX149 - JANE", ("2547", "149", 12, "JANE")),
        ("254708374149 - MARY-ANNE W", ("254708374149", "", 12, "MARY-ANNE W")),
        ("JOHN DOE", ("", "", None, "JOHN DOE")),
        ("600000 - ACME", ("", "", None, "ACME")),
        ("", ("", "", None, "")),
    ],
)
def test_other_party_info_in_every_shape(text, expected):
    assert parse_other_party(text) == expected


# --- cells -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header", ["Receipt No.", "Receipt No", "receipt no.", "RECEIPT  NO.", " Receipt_No "]
)
def test_header_names_match_whatever_their_case_spacing_and_dots(header):
    assert normalize_header(header) == "receipt no"


@pytest.mark.parametrize(
    "text",
    ["2026-12-06 10:15:30", "06-12-2026 10:15:30", "06/12/2026 10:15:30", "06.12.2026 10:15:30"],
)
def test_times_in_every_portal_format_are_nairobi_time(text):
    assert parse_datetime(text) == nairobi(2026, 12, 6, 10, 15, 30)


def test_times_without_seconds_with_am_pm_and_excel_cells():
    assert parse_datetime("06/12/2026 10:15") == nairobi(2026, 12, 6, 10, 15, 0)
    assert parse_datetime("06/12/2026 01:15:30 PM") == nairobi(2026, 12, 6, 13, 15, 30)
    assert parse_datetime(dt.datetime(2026, 12, 6, 10, 15, 30)) == nairobi(2026, 12, 6, 10, 15, 30)
    assert parse_datetime(dt.datetime(2026, 12, 6, 10, 15, 30)).utcoffset() == dt.timedelta(hours=3)


@pytest.mark.parametrize("text", ["", "yesterday", "31-02-2026 10:00:00", "06-12-26 10:00:00", "2026-13-01"])
def test_what_is_not_a_time_is_refused(text):
    with pytest.raises(ValueError):
        parse_datetime(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,250.00", D("1250.00")),
        ("1,250", D("1250.00")),
        ("250,000.00", D("250000.00")),
        ("-1,000.00", D("-1000.00")),
        ("(500.00)", D("-500.00")),
        ("KES 1,250.50", D("1250.50")),
        (" 10 ", D("10.00")),
        (1250.5, D("1250.50")),
        (1250, D("1250.00")),
        ("", D("0.00")),
        (None, D("0.00")),
    ],
)
def test_amounts_with_thousands_separators_signs_and_empty_cells(value, expected):
    amount = parse_amount(value)
    assert amount == expected
    assert amount.as_tuple().exponent == -2


@pytest.mark.parametrize("value", ["12.345", "abc", "NaN", "Infinity", "1.2.3", True])
def test_what_is_not_an_amount_is_refused(value):
    with pytest.raises(ValueError):
        parse_amount(value)


# --- whole files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_a_statement_is_read_line_by_line_with_its_preamble(file_format):
    lines = every_kind()
    data = statement_csv(lines) if file_format == "csv" else statement_xlsx(lines)

    statement = parse(data, f"statement.{file_format}")

    assert statement.file_format == file_format
    assert (statement.shortcode, statement.account_name) == ("174379", "ACME LTD")
    assert statement.period_start == nairobi(2026, 12, 6, 0, 0, 0)
    assert statement.period_end == nairobi(2026, 12, 7, 23, 59, 59)
    assert [(parsed.receipt, parsed.kind) for parsed in statement.lines] == [
        ("TKA1000001", LineKind.CUSTOMER_PAYMENT),
        ("TKA1000001", LineKind.CHARGE),
        ("TKA1000002", LineKind.B2C),
        ("TKA1000003", LineKind.REVERSAL),
        ("TKA1000004", LineKind.TRANSFER),
    ]
    payment, fee, b2c, reversed_, moved = statement.lines
    # Preamble: account name, short code, time period, report date, a blank row; then the header (row 6).
    assert [parsed.row_number for parsed in statement.lines] == [7, 8, 9, 10, 11]
    assert (payment.paid_in, payment.withdrawn) == (D("1250.00"), D("0.00"))
    assert payment.completed_at == nairobi(2026, 12, 6, 10, 15, 30)
    assert payment.initiated_at == nairobi(2026, 12, 6, 10, 15, 25)
    assert payment.balance == D("101250.00")
    assert payment.balance_confirmed is True
    assert payment.transaction_status == "Completed"
    assert payment.account_number == "ORDER-1"
    assert (payment.party_phone_prefix, payment.party_phone_suffix, payment.party_phone_length) == (
        "2547",
        "149",
        12,
    )
    assert payment.party_name == "JOHN DOE"
    assert (fee.paid_in, fee.withdrawn) == (D("0.00"), D("15.00"))
    assert b2c.party_phone_prefix == "254708374149" and b2c.party_phone_suffix == ""
    assert reversed_.linked_transaction_id == "TKA1000001"
    assert moved.withdrawn == D("20000.00")
    assert payment.raw["Receipt No."] == "TKA1000001"
    assert payment.raw["Other Party Info"] == "2547*****149 - JOHN DOE"
    assert set(payment.raw) == {
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
    }


def test_csv_amounts_keep_thousands_separators_in_raw_and_are_read_as_numbers():
    statement = parse(statement_csv([customer_payment("TKA1000001", "251250.75")]))
    assert statement.lines[0].paid_in == D("251250.75")
    assert statement.lines[0].raw["Paid In"] == "251,250.75"


@pytest.mark.parametrize("variant", ["lower", "upper_spaced", "no_dots"])
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_header_variants_are_understood(variant, file_format):
    build = statement_csv if file_format == "csv" else statement_xlsx
    statement = parse(build(every_kind(), header_variant=variant), f"s.{file_format}")
    assert len(statement.lines) == 5
    assert statement.lines[0].paid_in == D("1250.00")
    assert statement.lines[0].party_name == "JOHN DOE"


def test_a_file_without_preamble_starts_with_its_header():
    statement = parse(statement_csv(every_kind(), preamble=False))
    assert statement.shortcode == "" and statement.period_start is None
    assert statement.lines[0].row_number == 2


def test_preamble_labels_are_matched_tolerantly():
    body = statement_csv([line()], preamble=False).decode()
    preamble = (
        "ORGANISATION NAME:,ACME LTD\r\n"
        "Short code : 600123\r\n"
        "time period,From 2026-12-01 00:00:00 To 2026-12-06 23:59:59\r\n"
        "Operator:,someone\r\n"
    )
    statement = parse((preamble + body).encode())
    assert (statement.shortcode, statement.account_name) == ("600123", "ACME LTD")
    assert (statement.period_start, statement.period_end) == (
        nairobi(2026, 12, 1, 0, 0, 0),
        nairobi(2026, 12, 6, 23, 59, 59),
    )


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_separated_files_are_read(delimiter):
    statement = parse(statement_csv(every_kind(), delimiter=delimiter))
    assert len(statement.lines) == 5
    assert statement.shortcode == "174379"
    assert statement.lines[0].paid_in == D("1250.00")


def test_utf8_with_bom_and_windows_1252_files_are_read():
    name = "JOSÉ NJERI"
    lines = [customer_payment("TKA1000001", "10", other_party=f"2547*****149 - {name}")]
    for encoding in ("utf-8-sig", "cp1252"):
        statement = parse(statement_csv(lines, encoding=encoding))
        assert statement.lines[0].party_name == name
        assert statement.account_name == "ACME LTD"


@pytest.mark.parametrize("time_format", ["%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"])
def test_times_in_other_formats(time_format):
    statement = parse(statement_csv([line(completed_at=nairobi(second=0))], time_format=time_format))
    assert statement.lines[0].completed_at == nairobi(second=0)
    assert statement.lines[0].completed_at.tzinfo == NAIROBI


def test_money_out_written_negative_is_stored_positive():
    statement = parse(statement_csv(every_kind(), negative_withdrawn=True))
    assert [parsed.withdrawn for parsed in statement.lines] == [
        D("0.00"),
        D("15.00"),
        D("1000.00"),
        D("500.00"),
        D("20000.00"),
    ]
    assert statement.lines[1].raw["Withdrawn"] == "-15.00"


def test_lines_not_completed_are_read_with_their_status():
    statement = parse(
        statement_csv(
            [
                customer_payment("TKA1000001", "10", status="Failed"),
                customer_payment("TKA1000002", "10", status="Declined"),
                customer_payment("TKA1000003", "10", status="COMPLETED"),
            ]
        )
    )
    assert [parsed.transaction_status for parsed in statement.lines] == ["Failed", "Declined", "Completed"]


def test_optional_columns_may_be_missing():
    statement = parse(
        statement_csv(
            [line()],
            omit=(
                "initiated_at",
                "status",
                "balance",
                "balance_confirmed",
                "reason_type",
                "linked",
                "account",
            ),
        )
    )
    parsed = statement.lines[0]
    assert parsed.kind == LineKind.CUSTOMER_PAYMENT  # from the Details
    assert parsed.transaction_status == "Completed"
    assert parsed.initiated_at is None and parsed.balance is None and parsed.balance_confirmed is None


def test_blank_rows_are_skipped_and_rows_keep_their_spreadsheet_numbers():
    text = statement_csv([line(receipt="TKA1000001"), line(receipt="TKA1000002")]).decode()
    rows = text.split("\r\n")
    rows.insert(7, ",,,,,,,,,,,,")
    statement = parse("\r\n".join(rows).encode())
    assert [(parsed.receipt, parsed.row_number) for parsed in statement.lines] == [
        ("TKA1000001", 7),
        ("TKA1000002", 9),
    ]


# --- refused -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("omit", "named"),
    [
        ("receipt", "Receipt No."),
        ("completed_at", "Completion Time"),
        ("details", "Details"),
        ("paid_in", "Paid In"),
        ("withdrawn", "Withdrawn"),
    ],
)
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_a_missing_required_column_is_named(omit, named, file_format):
    build = statement_csv if file_format == "csv" else statement_xlsx
    with pytest.raises(StatementFormatError) as refused:
        parse(build(every_kind(), omit=(omit,)), f"s.{file_format}")
    assert named in refused.value.message
    assert refused.value.column == named


@pytest.mark.parametrize(
    ("bad", "column", "shown"),
    [
        ({"completed_at": "31-02-2026 10:00:00"}, "Completion Time", "31-02-2026 10:00:00"),
        ({"completed_at": ""}, "Completion Time", "''"),
        ({"initiated_at": "soon"}, "Initiation Time", "soon"),
        ({"paid_in": "12,5O.00"}, "Paid In", "12,5O.00"),
        ({"withdrawn": "ten"}, "Withdrawn", "ten"),
        ({"balance": "1.234"}, "Balance", "1.234"),
        ({"receipt": ""}, "Receipt No.", "empty"),
    ],
)
def test_an_unreadable_row_is_named_by_its_spreadsheet_row(bad, column, shown):
    lines = [line(receipt="TKA1000001"), line(receipt="TKA1000002"), line(**{"receipt": "TKA1000003", **bad})]
    with pytest.raises(StatementFormatError) as refused:
        parse(statement_csv(lines))
    assert refused.value.row == 9
    assert refused.value.message.startswith("Row 9: ")
    assert column in refused.value.message and shown in refused.value.message


def test_an_unreadable_xlsx_row_is_named_too():
    lines = [line(receipt="TKA1000001"), line(receipt="TKA1000002", paid_in="abc")]
    with pytest.raises(StatementFormatError, match=r"^Row 8: Paid In"):
        parse(statement_xlsx(lines), "s.xlsx")


def _zip_without_workbook() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (bytes(range(256)) * 40, "statement.csv", "neither CSV nor XLSX"),
        (b"%PDF-1.7\n...", "statement.pdf", "PDF"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "statement.xls", ".xls"),
        (b"Receipt No.,Completion Time\r\n", "statement.xlsx", "not an XLSX"),
        (_zip_without_workbook(), "statement.xlsx", "not a readable XLSX"),
        (b"name,amount\r\njohn,10\r\n" * 40, "statement.csv", "No header row"),
        (b"", "statement.csv", "No header row"),
    ],
)
def test_a_file_that_is_no_statement_is_refused(data, name, message):
    with pytest.raises(StatementFormatError, match=message):
        parse(data, name)


def test_a_header_after_the_first_30_rows_is_not_looked_for():
    body = statement_csv([line()], preamble=False).decode()
    with pytest.raises(StatementFormatError, match="first 30 rows"):
        parse(("Note:,x\r\n" * 30 + body).encode())
    assert parse(("Note:,x\r\n" * 29 + body).encode()).lines[0].row_number == 31
