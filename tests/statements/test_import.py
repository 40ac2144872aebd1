"""Importing statement files: lines stored once, nothing stored from a refused file, the shortcode and
period, permissions, the audit trail, and the import_statement command."""

import datetime as dt
import io
import json
import logging
from decimal import Decimal
from types import SimpleNamespace

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditAction, AuditEntry
from statements import imports
from statements.exceptions import StatementError, StatementFormatError, StatementPermissionDenied
from statements.imports import statement_import
from statements.models import ImportSource, LineKind, StatementImport, StatementLine
from statements.parsing import parse_statement
from statements.store import lines_store
from tests.statements.statement_files import (
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
pytestmark = pytest.mark.django_db


@pytest.fixture
def importer(django_user_model):
    user = django_user_model.objects.create_user("finance", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="import_statement"))
    return django_user_model.objects.get(pk=user.pk)  # permissions are cached per instance


def day_of_lines(day: int = 6, first: int = 1, count: int = 3) -> list[dict]:
    lines = []
    for number in range(first, first + count):
        receipt = f"TK{day:02d}{number:06d}"
        at = nairobi(day=day, hour=8) + dt.timedelta(minutes=number)
        lines.append(customer_payment(receipt, 1000 + number, at=at))
        lines.append(charge(receipt, "10", at=at))
    return lines


def upload(data: bytes, *, actor, name: str = "statement.csv", **kwargs) -> StatementImport:
    kwargs.setdefault("reconcile", False)
    return statement_import(fileobj=io.BytesIO(data), file_name=name, actor=actor, **kwargs)


def stored() -> list[tuple[str, str]]:
    return sorted(StatementLine.objects.values_list("receipt", "kind"))


# --- storing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_an_import_stores_every_line_with_what_the_file_said(importer, file_format):
    lines = [
        customer_payment("TKA1000001", "1250", account="ORDER-1"),
        charge("TKA1000001", "15"),
        b2c_payment("TKA1000002", "1000"),
        reversal("TKA1000003", "500", linked="TKA1000001"),
        transfer("TKA1000004", "20000"),
        customer_payment("TKA1000005", "99", status="Failed"),
    ]
    data = statement_csv(lines) if file_format == "csv" else statement_xlsx(lines)

    imported = upload(data, actor=importer, name=f"/tmp/december.{file_format}")

    imported.refresh_from_db()
    assert (imported.lines_read, imported.lines_new, imported.lines_known) == (6, 6, 0)
    assert imported.file_name == f"december.{file_format}"
    assert imported.file_format == file_format
    assert len(imported.file_sha256) == 64
    assert (imported.shortcode, imported.account_name) == ("174379", "ACME LTD")
    assert imported.source == ImportSource.UPLOAD and imported.imported_by == importer
    assert imported.period_start == nairobi(hour=0, minute=0, second=0)
    assert imported.period_end == nairobi(hour=23, minute=59, second=59)
    assert imported.summary["kinds"][LineKind.CUSTOMER_PAYMENT] == {
        "lines": 2,
        "paid_in": "1349.00",
        "withdrawn": "0.00",
    }
    assert imported.summary["kinds"][LineKind.CHARGE]["withdrawn"] == "15.00"
    assert imported.summary["kinds"][LineKind.OTHER]["lines"] == 0
    assert imported.summary["not_completed"] == 1
    payment = StatementLine.objects.get(receipt="TKA1000001", kind=LineKind.CUSTOMER_PAYMENT)
    assert payment.statement_import == imported and payment.shortcode == "174379"
    assert payment.paid_in == D("1250.00") and payment.withdrawn == D("0.00")
    assert payment.completed_at == nairobi()
    assert (payment.party_phone_prefix, payment.party_phone_suffix, payment.party_phone_length) == (
        "2547",
        "149",
        12,
    )
    assert payment.account_number == "ORDER-1"
    assert payment.raw["Receipt No."] == "TKA1000001"
    assert StatementLine.objects.get(receipt="TKA1000005").transaction_status == "Failed"
    assert StatementLine.objects.get(receipt="TKA1000003").linked_transaction_id == "TKA1000001"


def test_an_import_is_audited_and_logged_without_phone_numbers(importer, caplog):
    caplog.set_level(logging.INFO, logger="statements")
    imported = upload(
        statement_csv([customer_payment("TKA1000001", "10", other_party="254708374149 - JO")]), actor=importer
    )

    entry = AuditEntry.objects.get(action=AuditAction.STATEMENT_IMPORTED)
    assert entry.actor == importer and entry.object_id == str(imported.pk)
    assert entry.data["lines_read"] == 1 and entry.data["lines_new"] == 1 and entry.data["lines_known"] == 0
    assert entry.data["kinds"][LineKind.CUSTOMER_PAYMENT] == 1
    assert entry.data["shortcode"] == "174379"
    assert f"Statement import #{imported.pk}" in caplog.text
    assert "254708374149" not in caplog.text and "254708374149" not in json.dumps(entry.data)


def test_the_same_file_twice_stores_nothing_twice(importer):
    data = statement_csv(day_of_lines())
    first = upload(data, actor=importer)
    second = upload(data, actor=importer)

    assert (first.lines_read, first.lines_new, first.lines_known) == (6, 6, 0)
    assert (second.lines_read, second.lines_new, second.lines_known) == (6, 0, 6)
    assert StatementLine.objects.count() == 6
    assert set(StatementLine.objects.values_list("statement_import", flat=True)) == {first.pk}
    assert second.summary["same_file_as"] == first.pk
    assert second.file_sha256 == first.file_sha256


def test_an_overlapping_period_stores_only_the_lines_not_known(importer):
    upload(statement_csv(day_of_lines(first=1, count=3)), actor=importer)
    # The next export repeats the last two payments (and their charges) and adds two.
    later = upload(statement_xlsx(day_of_lines(first=2, count=4)), actor=importer, name="later.xlsx")

    assert (later.lines_read, later.lines_new, later.lines_known) == (8, 4, 4)
    assert StatementLine.objects.count() == 10
    assert len(set(stored())) == 10


def test_a_charge_and_its_payment_share_a_receipt_and_are_both_stored(importer):
    imported = upload(
        statement_csv([customer_payment("TKA1000001", "10"), charge("TKA1000001", "1")]), actor=importer
    )
    assert imported.lines_new == 2
    assert stored() == [("TKA1000001", LineKind.CHARGE), ("TKA1000001", LineKind.CUSTOMER_PAYMENT)]


def test_a_line_twice_in_one_file_is_stored_once(importer):
    imported = upload(statement_csv([line(), line()]), actor=importer)
    assert (imported.lines_read, imported.lines_new, imported.lines_known) == (2, 1, 1)
    assert StatementLine.objects.count() == 1


def test_lines_are_stored_in_batches_and_counted_exactly(importer):
    statement = parse_statement(io.BytesIO(statement_csv(day_of_lines(count=20))), file_name="s.csv")
    target = StatementImport.objects.create(shortcode="174379", source=ImportSource.PULL)

    assert lines_store(statement_import=target, lines=statement.lines[:15], batch_size=4) == (15, 0)
    assert lines_store(statement_import=target, lines=iter(statement.lines), batch_size=4) == (25, 15)
    assert StatementLine.objects.filter(statement_import=target).count() == 40


def test_the_same_receipt_under_another_shortcode_is_another_line(importer):
    upload(statement_csv([line()], shortcode="174379"), actor=importer)
    other = upload(statement_csv([line()], shortcode="600123"), actor=importer)
    assert other.lines_new == 1
    assert sorted(StatementLine.objects.values_list("shortcode", flat=True)) == ["174379", "600123"]


# --- refused files store nothing ---------------------------------------------------------------------
def test_a_file_missing_a_column_stores_nothing(importer):
    with pytest.raises(StatementFormatError, match="Withdrawn"):
        upload(statement_csv(day_of_lines(), omit=("withdrawn",)), actor=importer)
    assert not StatementImport.objects.exists() and not StatementLine.objects.exists()
    assert not AuditEntry.objects.filter(action=AuditAction.STATEMENT_IMPORTED).exists()


def test_an_unreadable_row_after_thousands_of_good_ones_stores_nothing(importer):
    lines = day_of_lines(count=1100)  # 2,200 lines: the first batch is written before the bad row is read
    lines.append(line(receipt="TKBAD00001", completed_at="yesterday"))
    bad_row = 6 + len(lines)

    with pytest.raises(StatementFormatError) as refused:
        upload(statement_csv(lines), actor=importer)

    assert refused.value.row == bad_row
    assert f"Row {bad_row}: Completion Time" in refused.value.message
    assert not StatementImport.objects.exists() and not StatementLine.objects.exists()


def test_an_unknown_format_is_refused(importer):
    with pytest.raises(StatementFormatError, match="neither CSV nor XLSX"):
        upload(bytes(range(256)) * 10, actor=importer, name="statement.bin")
    assert not StatementImport.objects.exists()


def test_a_file_too_big_is_refused(importer, settings):
    settings.STATEMENT_IMPORT_MAX_BYTES = 1000
    with pytest.raises(StatementFormatError, match="larger than"):
        upload(statement_csv(day_of_lines(count=20)), actor=importer)
    assert not StatementImport.objects.exists()


# --- shortcode and period ----------------------------------------------------------------------------
def test_a_statement_of_another_shortcode_is_refused(importer):
    with pytest.raises(StatementError) as refused:
        upload(statement_csv(day_of_lines(), shortcode="600123"), actor=importer, shortcode="174379")
    assert refused.value.field == "shortcode"
    assert "600123" in refused.value.message and "174379" in refused.value.message
    assert not StatementImport.objects.exists()


def test_the_shortcode_comes_from_the_argument_the_file_or_the_settings(importer, settings):
    settings.MPESA_SHORTCODE = "999111"
    named = upload(statement_csv([line(receipt="TKA1000001")], shortcode="600123"), actor=importer)
    given = upload(
        statement_csv([line(receipt="TKA1000002")], preamble=False), actor=importer, shortcode="600456"
    )
    neither = upload(statement_csv([line(receipt="TKA1000003")], preamble=False), actor=importer)
    same = upload(
        statement_csv([line(receipt="TKA1000004")], shortcode="600123"), actor=importer, shortcode="600123"
    )

    assert [named.shortcode, given.shortcode, neither.shortcode, same.shortcode] == [
        "600123",
        "600456",
        "999111",
        "600123",
    ]
    assert StatementLine.objects.get(receipt="TKA1000002").shortcode == "600456"


def test_without_a_stated_period_the_lines_span_it(importer):
    lines = [
        customer_payment("TKA1000001", "10", at=nairobi(day=3, hour=9)),
        customer_payment("TKA1000002", "10", at=nairobi(day=5, hour=17)),
    ]
    imported = upload(statement_csv(lines, preamble=False), actor=importer)
    assert (imported.period_start, imported.period_end) == (nairobi(day=3, hour=9), nairobi(day=5, hour=17))

    with time_machine.travel(nairobi(day=20), tick=False):
        stated = upload(
            statement_csv(lines, period=(nairobi(day=1, hour=0, minute=0, second=0), nairobi(day=7))),
            actor=importer,
        )
    assert (stated.period_start, stated.period_end) == (
        nairobi(day=1, hour=0, minute=0, second=0),
        nairobi(day=7),
    )


def test_a_statement_of_today_covers_no_more_than_had_happened_when_it_was_imported(importer):
    lines = [customer_payment("TKA1000001", "10", at=nairobi(hour=9))]
    day = (nairobi(hour=0, minute=0, second=0), nairobi(hour=23, minute=59, second=59))

    with time_machine.travel(nairobi(hour=14), tick=False):
        imported = upload(statement_csv(lines, period=day), actor=importer)

    assert (imported.period_start, imported.period_end) == (day[0], nairobi(hour=14))


# --- who may import ----------------------------------------------------------------------------------
def test_staff_without_the_permission_may_not_import(django_user_model):
    user = django_user_model.objects.create_user("clerk", is_staff=True)
    with pytest.raises(StatementPermissionDenied):
        upload(statement_csv(day_of_lines()), actor=user)
    assert not StatementImport.objects.exists()


def test_an_upload_needs_someone_with_the_permission(django_user_model):
    with pytest.raises(StatementPermissionDenied):
        upload(statement_csv(day_of_lines()), actor=None)
    inactive = django_user_model.objects.create_user("gone", is_staff=True, is_active=False)
    inactive.user_permissions.add(Permission.objects.get(codename="import_statement"))
    with pytest.raises(StatementPermissionDenied):
        upload(statement_csv(day_of_lines()), actor=inactive)
    assert not StatementImport.objects.exists()


def test_the_server_operator_imports_without_a_user():
    imported = upload(statement_csv(day_of_lines()), actor=None, source=ImportSource.COMMAND)
    assert imported.imported_by is None and imported.source == ImportSource.COMMAND
    assert imported.lines_new == 6


# --- reconciling -------------------------------------------------------------------------------------
def test_the_import_is_reconciled_after_it_is_stored(importer, monkeypatch):
    calls = []

    def reconcile(statement_import, *, actor):
        calls.append((statement_import.pk, StatementLine.objects.count(), actor))
        return SimpleNamespace(pk=41, totals={})

    monkeypatch.setattr(imports, "_reconcile", reconcile)
    imported = upload(statement_csv(day_of_lines()), actor=importer, reconcile=True)

    assert calls == [(imported.pk, 6, importer)]
    assert imported.reconciliation_run.pk == 41
    assert upload(statement_csv(day_of_lines()), actor=importer).reconciliation_run is None
    assert len(calls) == 1


# --- the command -------------------------------------------------------------------------------------
@pytest.fixture
def fake_run(monkeypatch):
    run = SimpleNamespace(
        pk=7,
        totals={"statement_paid_in": "3006.00", "balanced": True, "counts": {"customer_payment_lines": 3}},
    )
    monkeypatch.setattr(imports, "_reconcile", lambda statement_import, *, actor: run)
    return run


def write(tmp_path, data: bytes, name: str = "statement.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_command_imports_and_prints_a_summary(tmp_path, fake_run):
    path = write(tmp_path, statement_csv(day_of_lines()))
    out = io.StringIO()

    call_command("import_statement", str(path), stdout=out)

    imported = StatementImport.objects.get()
    assert imported.source == ImportSource.COMMAND and imported.imported_by is None
    text = out.getvalue()
    assert f"statement import #{imported.pk}" in text
    assert "statement.csv (CSV)" in text
    assert "Shortcode: 174379 (ACME LTD)" in text
    assert "Period: 2026-12-06T00:00:00+03:00 to 2026-12-06T23:59:59+03:00" in text
    assert "Lines: 6 read, 6 new, 0 already known" in text
    assert "Customer payment: 3 (paid in 3006.00, withdrawn 0.00)" in text
    assert "Charge: 3 (paid in 0.00, withdrawn 30.00)" in text
    assert "Reconciliation run #7:" in text
    assert "  statement_paid_in: 3006.00" in text
    assert "  counts.customer_payment_lines: 3" in text


def test_the_command_prints_json(tmp_path, fake_run):
    path = write(tmp_path, statement_xlsx(day_of_lines()), "statement.xlsx")
    call_command("import_statement", str(path), stdout=io.StringIO())
    out = io.StringIO()

    call_command("import_statement", str(path), "--json", "--shortcode", "174379", stdout=out)

    result = json.loads(out.getvalue())
    assert result["file"] == "statement.xlsx" and result["file_format"] == "xlsx"
    assert result["shortcode"] == "174379"
    assert (result["lines_read"], result["lines_new"], result["lines_known"]) == (6, 0, 6)
    assert result["period_start"] == "2026-12-06T00:00:00+03:00"
    assert result["kinds"][LineKind.CUSTOMER_PAYMENT] == {
        "lines": 3,
        "paid_in": "3006.00",
        "withdrawn": "0.00",
    }
    assert result["kinds"][LineKind.B2C] == {"lines": 0, "paid_in": "0.00", "withdrawn": "0.00"}
    assert result["reconciliation"] == {"run": 7, "totals": fake_run.totals}


def test_the_command_refuses_an_unreadable_file_and_stores_nothing(tmp_path, fake_run):
    path = write(tmp_path, statement_csv(day_of_lines() + [line(receipt="TKBAD00001", paid_in="lots")]))
    with pytest.raises(CommandError, match=r"Row 13: Paid In is not an amount \('lots'\)") as refused:
        call_command("import_statement", str(path), stdout=io.StringIO())
    assert refused.value.returncode == 1
    assert not StatementImport.objects.exists() and not StatementLine.objects.exists()


def test_the_command_refuses_another_shortcode(tmp_path, fake_run):
    path = write(tmp_path, statement_csv(day_of_lines(), shortcode="600123"))
    with pytest.raises(CommandError, match="for shortcode 600123, not 174379"):
        call_command("import_statement", str(path), "--shortcode", "174379", stdout=io.StringIO())
    assert not StatementImport.objects.exists()


def test_the_command_names_a_file_it_cannot_open(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_statement", str(tmp_path / "missing.csv"), stdout=io.StringIO())
