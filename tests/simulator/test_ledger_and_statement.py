import csv
import datetime as dt
import io
import threading
from datetime import datetime
from decimal import Decimal

import openpyxl
import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection

from payments.simulator import ledger, statement
from payments.simulator.ids import nairobi_now

from .conftest import NAIROBI
from .test_results import B2C, REVERSAL, b2c_body, reversal_body
from .test_stk_callbacks import items_of, pay

HEADER = [
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
]


@pytest.fixture(autouse=True)
def empty_ledger(simulator_environment):
    cache.clear()
    yield
    cache.clear()


def today_entries(shortcode="174379"):
    return ledger.day_entries(shortcode, nairobi_now().date())


def statement_csv_rows(tmp_path, **options) -> list[list[str]]:
    path = tmp_path / "statement.csv"
    call_command("simulator_statement", "--output", str(path), **options, stdout=io.StringIO())
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def money_moves(daraja, receiver):
    """A paid order, a paid order whose callback never comes, a cancelled one, a reversal, a B2C."""
    _, url = pay(daraja, receiver, "254708374149", amount=1250)
    paid_receipt = items_of(receiver.wait_for(url)[0])["MpesaReceiptNumber"]
    pay(daraja, receiver, "254700000404", amount=30)
    pay(daraja, receiver, "254700000032", amount=40)
    _, url = pay(daraja, receiver, "254712000001", amount=10)
    reversed_receipt = items_of(receiver.wait_for(url)[0])["MpesaReceiptNumber"]
    body = reversal_body(receiver, reversed_receipt)
    assert daraja.post(REVERSAL, body).status_code == 200
    reversal_receipt = receiver.wait_for(body["ResultURL"])[0]["Result"]["TransactionID"]
    body = b2c_body(receiver, PartyA="174379", PartyB="254722000111", Amount=1500)
    assert daraja.post(B2C, body).status_code == 200
    b2c_receipt = receiver.wait_for(body["ResultURL"])[0]["Result"]["TransactionID"]
    return paid_receipt, reversed_receipt, reversal_receipt, b2c_receipt


def test_every_money_movement_is_on_the_ledger_even_without_a_callback(daraja, receiver):
    paid, reversed_, reversal, b2c = money_moves(daraja, receiver)

    entries = today_entries()

    by_reason = [(e["reason_type"], e["receipt"], e["paid_in"], e["withdrawn"]) for e in entries]
    dropped = next(e for e in entries if e["phone"] == "254700000404")
    assert by_reason == [
        ("Pay Bill Online", paid, "1250.00", "0.00"),
        ("Pay Bill Online", dropped["receipt"], "30.00", "0.00"),
        ("Pay Bill Online", reversed_, "10.00", "0.00"),
        ("Reversal", reversal, "0.00", "10.00"),
        ("Business Payment to Customer via API", b2c, "0.00", "1500.00"),
        ("B2C Payment Charge", b2c, "0.00", "22.00"),
    ]
    assert not any(e["phone"] == "254700000032" for e in entries)  # cancelled: nothing moved
    assert entries[3]["linked_receipt"] == reversed_
    balances = [Decimal(e["balance"]) for e in entries]
    assert balances[0] == ledger.OPENING_BALANCE_KES + 1250
    assert balances[-1] == ledger.OPENING_BALANCE_KES + 1250 + 30 + 10 - 10 - 1500 - 22


@pytest.mark.parametrize("phone", ["254700000102", "254700000103"])
def test_a_reversal_that_posts_no_result_is_on_the_ledger(daraja, receiver, phone):
    _, url = pay(daraja, receiver, phone, amount=10)
    receipt = items_of(receiver.wait_for(url)[0])["MpesaReceiptNumber"]

    assert daraja.post(REVERSAL, reversal_body(receiver, receipt)).status_code == 200

    [payment, reversal] = today_entries()
    assert reversal["reason_type"] == "Reversal"
    assert reversal["linked_receipt"] == receipt and reversal["withdrawn"] == "10.00"


def test_b2c_charge_follows_the_documented_tariff():
    assert ledger.b2c_charge_kes(10) == Decimal("15.00")
    assert ledger.b2c_charge_kes(1000) == Decimal("15.00")
    assert ledger.b2c_charge_kes(1001) == Decimal("22.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_lose_nothing_and_keep_one_balance_chain():
    threads, per_thread = 6, 8
    errors = []

    def work(worker: int) -> None:
        try:
            for n in range(per_thread):
                ledger.append(
                    shortcode="600999",
                    receipt=f"T{worker:02d}{n:07d}",
                    reason_type=ledger.PAY_BILL,
                    completed_at=datetime.now(NAIROBI).timestamp(),
                    paid_in=n + 1,
                    phone="254708374149",
                )
        except Exception as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()

    assert errors == []
    entries = today_entries("600999")
    assert len(entries) == threads * per_thread
    assert len({e["receipt"] for e in entries}) == threads * per_thread
    balance = ledger.OPENING_BALANCE_KES
    for entry in entries:
        balance += Decimal(entry["paid_in"])
        assert Decimal(entry["balance"]) == balance
    assert balance == ledger.OPENING_BALANCE_KES + threads * sum(range(1, per_thread + 1))


def test_a_day_longer_than_one_read_comes_back_whole_and_in_order(monkeypatch):
    monkeypatch.setattr(ledger, "READ_CHUNK", 2)
    moment = datetime.now(NAIROBI).timestamp()
    for n in range(5):
        ledger.append(
            shortcode="600998",
            receipt=f"R{n:09d}",
            reason_type=ledger.PAY_BILL,
            completed_at=moment,
            paid_in=1,
        )

    entries = ledger.day_entries("600998", ledger.ledger_day(moment))

    assert [entry["receipt"] for entry in entries] == [f"R{n:09d}" for n in range(5)]
    assert entries[-1]["balance"] == f"{ledger.OPENING_BALANCE_KES + 5}"


def test_csv_statement_has_the_portal_layout(daraja, receiver, tmp_path):
    paid, reversed_, reversal, b2c = money_moves(daraja, receiver)
    today = nairobi_now().date()

    rows = statement_csv_rows(tmp_path, date=today.isoformat())

    day = today.strftime("%d-%m-%Y")
    assert rows[:5] == [
        ["Account Name:", "Simulator Shop Ltd"],
        ["Short Code:", "174379"],
        ["Time Period:", f"From {day} 00:00:00 To {day} 23:59:59"],
        [],
        HEADER,
    ]
    lines = [dict(zip(HEADER, row, strict=True)) for row in rows[5:]]
    assert [line["Receipt No."] for line in lines][0] == paid
    first = lines[0]
    name = ledger.customer_name("254708374149")
    assert first["Details"] == f"Pay Bill Online from 2547*****149 - {name} Acc. ORD-1001"
    assert first["Other Party Info"] == f"2547*****149 - {name}"
    assert first["Paid In"] == "1,250.00" and first["Withdrawn"] == ""
    assert first["Balance"] == "501,250.00"
    assert first["Transaction Status"] == "Completed" and first["Balance Confirmed"] == "true"
    assert first["Reason Type"] == "Pay Bill Online" and first["A/C No."] == "ORD-1001"
    completed = datetime.strptime(first["Completion Time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=NAIROBI)
    assert abs((completed - datetime.now(NAIROBI)).total_seconds()) < 60
    assert lines[1]["Other Party Info"].startswith("2547*****404 - ")  # the callback never came
    reversal_line = lines[3]
    assert reversal_line["Receipt No."] == reversal
    assert reversal_line["Details"] == f"Reversal of transaction {reversed_}"
    assert reversal_line["Linked Transaction ID"] == reversed_
    assert reversal_line["Reason Type"] == "Reversal" and reversal_line["Withdrawn"] == "10.00"
    payment, charge = lines[4], lines[5]
    assert payment["Receipt No."] == charge["Receipt No."] == b2c
    assert payment["Details"].startswith("Business Payment to 2547*****111 - ")
    assert payment["Reason Type"] == "Business Payment to Customer via API"
    assert payment["Withdrawn"] == "1,500.00"
    assert charge["Details"] == charge["Reason Type"] == "B2C Payment Charge"
    assert charge["Withdrawn"] == "22.00"
    assert charge["Balance"] == "499,758.00"


def test_xlsx_statement_has_the_portal_layout_with_numeric_amounts(daraja, receiver, tmp_path):
    paid, *_ = money_moves(daraja, receiver)
    path = tmp_path / "statement.xlsx"

    call_command("simulator_statement", "--format", "xlsx", "--output", str(path), stdout=io.StringIO())

    sheet = openpyxl.load_workbook(path).active
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][:2] == ["Account Name:", "Simulator Shop Ltd"]
    assert values[1][:2] == ["Short Code:", "174379"]
    assert values[2][1].startswith("From ")
    assert values[4] == HEADER
    first = dict(zip(HEADER, values[5], strict=True))
    assert first["Receipt No."] == paid
    assert first["Paid In"] == 1250 and first["Withdrawn"] is None
    assert sheet.cell(row=6, column=HEADER.index("Balance") + 1).number_format == "#,##0.00"
    assert len(values) == 5 + 6


def test_the_statement_reads_back_with_the_statement_importer(daraja, receiver, tmp_path):
    from statements.parsing import parse_statement

    money_moves(daraja, receiver)
    for file_format in ("csv", "xlsx"):
        path = tmp_path / f"statement.{file_format}"
        call_command(
            "simulator_statement", "--format", file_format, "--output", str(path), stdout=io.StringIO()
        )
        with path.open("rb") as fileobj:
            parsed = parse_statement(fileobj, file_name=path.name)
        assert parsed.shortcode == "174379"
        assert [line.kind for line in parsed.lines] == [
            "customer_payment",
            "customer_payment",
            "customer_payment",
            "reversal",
            "b2c",
            "charge",
        ]
        assert parsed.lines[0].party_phone_prefix == "2547" and parsed.lines[0].party_phone_suffix == "149"


def test_command_records_a_direct_pay_bill_payment_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()

    call_command("simulator_statement", "--paybill", "254712345678:500:INV-9", stdout=out)

    path = tmp_path / f"statement-174379-{nairobi_now().date().isoformat()}.csv"
    assert f"{path.name} (1 line)" in out.getvalue()
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    line = dict(zip(HEADER, rows[5], strict=True))
    assert line["Reason Type"] == "Pay Bill"
    assert (
        line["Details"] == f"Pay Bill from 2547*****678 - {ledger.customer_name('254712345678')} Acc. INV-9"
    )
    assert line["Paid In"] == "500.00" and line["A/C No."] == "INV-9"


def test_command_covers_a_range_of_days(tmp_path):
    rows = statement_csv_rows(tmp_path, date="2026-12-05", to="2026-12-06")

    assert rows[2] == ["Time Period:", "From 05-12-2026 00:00:00 To 06-12-2026 23:59:59"]
    assert rows[5:] == []


def test_command_takes_today_and_yesterday_as_dates(tmp_path):
    today = nairobi_now().date()
    out = io.StringIO()

    call_command(
        "simulator_statement",
        "--date",
        "yesterday",
        "--to",
        "today",
        "--output",
        str(tmp_path / "s.csv"),
        stdout=out,
    )

    rows = list(csv.reader(io.StringIO((tmp_path / "s.csv").read_text(encoding="utf-8"))))
    first, last = today - dt.timedelta(days=1), today
    assert rows[2] == ["Time Period:", f"From {first:%d-%m-%Y} 00:00:00 To {last:%d-%m-%Y} 23:59:59"]


@pytest.mark.parametrize(
    "options",
    [
        {"paybill": ["0712345678:500"]},
        {"paybill": ["254712345678:10.50"]},
        {"date": "06-12-2026"},
        {"date": "now"},
    ],
)
def test_command_refuses_bad_input(tmp_path, options):
    with pytest.raises(CommandError):
        call_command("simulator_statement", "--output", str(tmp_path / "s.csv"), **options)


def test_command_refuses_outside_the_simulator_environment(settings, tmp_path):
    settings.MPESA_ENVIRONMENT = "sandbox"

    with pytest.raises(CommandError, match="simulator"):
        call_command("simulator_statement", "--output", str(tmp_path / "s.csv"))

    assert not (tmp_path / "s.csv").exists()


def test_statement_leaves_out_what_has_not_completed_yet():
    now = datetime.now(NAIROBI).timestamp()
    ledger.append(
        shortcode="174379",
        receipt="AAA0000001",
        reason_type=ledger.PAY_BILL,
        completed_at=now + 30,
        paid_in=5,
    )

    today = nairobi_now().date()
    assert statement.statement_rows(shortcode="174379", first=today, last=today, now=now) == []
