import datetime as dt
import importlib
import io
import json
import logging
import sys
import time
import types
from decimal import Decimal

import pytest
import requests
import responses
from django.core.management import CommandError, call_command
from django.utils import timezone

from statements.models import ImportSource, LineKind, ReconciliationRun, StatementImport, StatementLine
from statements.pull import statement_pull
from tests.conftest import FAKE_DARAJA_URL

QUERY_URL = FAKE_DARAJA_URL + "/pulltransactions/v1/query"
NOW = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def reconcile_calls(monkeypatch):
    """statements.reconciliation.reconcile recorded (reconciling is tested on its own)."""
    calls = []

    def reconcile(**kwargs):
        calls.append(kwargs)

    try:
        module = importlib.import_module("statements.reconciliation")
    except ImportError:
        module = types.ModuleType("statements.reconciliation")
        monkeypatch.setitem(sys.modules, "statements.reconciliation", module)
    monkeypatch.setattr(module, "reconcile", reconcile, raising=False)
    return calls


@pytest.fixture
def pull_enabled(settings):
    settings.MPESA_PULL_TRANSACTIONS_ENABLED = True
    settings.MPESA_PULL_LOOKBACK_HOURS = 3


def pulled_row(receipt, *, amount="168.00", msisdn="25470****149", when="2026-12-06T08:13:00Z", ref="ORD-12"):
    return {
        "transactionId": receipt,
        "trxDate": when,
        "msisdn": msisdn,
        "sender": "JOHN DOE",
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": ref,
        "amount": amount,
        "organizationname": "Simulator Shop Ltd",
    }


def page(*rows):
    if not rows:
        return {
            "ResponseRefID": "1",
            "ResponseCode": "1001",
            "ResponseMessage": "No records",
            "Response": [[]],
        }
    return {
        "ResponseRefID": "1",
        "ResponseCode": "1000",
        "ResponseMessage": "Success",
        "Response": [list(rows)],
    }


def serve(fake_daraja, *pages):
    for body in pages:
        fake_daraja.mock.add(responses.POST, QUERY_URL, json=body)


def sent_queries(fake_daraja) -> list[dict]:
    return [json.loads(r.body) for r in fake_daraja.requests_to("/pulltransactions/v1/query")]


def test_pulls_every_page_into_the_statement_store_and_reconciles_the_window(
    fake_daraja, pull_enabled, reconcile_calls
):
    serve(
        fake_daraja,
        page(pulled_row("QKH94M1Z11"), pulled_row("QKH94M1Z12", amount="1250.00")),
        page(pulled_row("QKH94M1Z13", when="2026-12-06T08:40:00Z")),
        page(),
    )

    counts = statement_pull(now=NOW)

    assert [q["OffSetValue"] for q in sent_queries(fake_daraja)] == ["0", "2", "3"]
    assert sent_queries(fake_daraja)[0]["StartDate"] == "2026-12-06 09:00:00"  # 06:00 UTC, Nairobi time
    assert sent_queries(fake_daraja)[0]["EndDate"] == "2026-12-06 12:00:00"
    imp = StatementImport.objects.get()
    assert counts == {"pulled": 3, "new": 3, "known": 0, "pages": 3, "errors": 0, "import_id": imp.pk}
    assert imp.source == ImportSource.PULL and imp.shortcode == "174379"
    assert (imp.period_start, imp.period_end) == (NOW - dt.timedelta(hours=3), NOW)
    assert (imp.lines_read, imp.lines_new, imp.lines_known) == (3, 3, 0)
    assert imp.summary["c2b_only"] is True
    assert imp.account_name == "Simulator Shop Ltd"
    line = StatementLine.objects.get(receipt="QKH94M1Z12")
    assert line.kind == LineKind.CUSTOMER_PAYMENT
    assert line.paid_in == Decimal("1250.00") and line.withdrawn == 0
    assert line.completed_at == dt.datetime(2026, 12, 6, 8, 13, tzinfo=dt.UTC)
    assert line.account_number == "ORD-12"
    assert line.reason_type == "Pull Transactions: c2b-pay-bill-debit"
    assert (line.party_phone_prefix, line.party_phone_suffix, line.party_phone_length) == ("25470", "149", 12)
    assert line.party_name == "JOHN DOE" and line.other_party == "25470****149 - JOHN DOE"
    assert line.raw["transactionId"] == "QKH94M1Z12"
    assert reconcile_calls == [
        {
            "shortcode": "174379",
            "period_start": NOW - dt.timedelta(hours=3),
            "period_end": NOW,
            "actor": None,
            "statement_import": imp,
        }
    ]


@pytest.mark.parametrize(
    ("msisdn", "prefix", "suffix", "length"),
    [
        (254708374149, "254708374149", "", 12),
        ("0708374149", "254708374149", "", 12),
        ("2547*****149", "2547", "149", 12),
        (72200000, "", "", None),  # a fragment: where its digits belong is unknown
    ],
)
def test_party_digits_come_from_what_msisdn_shows(
    fake_daraja, pull_enabled, reconcile_calls, msisdn, prefix, suffix, length
):
    serve(fake_daraja, page(pulled_row("QKH94M1Z11", msisdn=msisdn)), page())

    statement_pull(now=NOW)

    line = StatementLine.objects.get()
    assert (line.party_phone_prefix, line.party_phone_suffix, line.party_phone_length) == (
        prefix,
        suffix,
        length,
    )


def test_a_second_pull_of_the_same_window_stores_nothing_twice(fake_daraja, pull_enabled, reconcile_calls):
    serve(fake_daraja, page(pulled_row("QKH94M1Z11")), page(), page(pulled_row("QKH94M1Z11")), page())

    statement_pull(now=NOW)
    counts = statement_pull(now=NOW + dt.timedelta(minutes=15))

    assert (counts["new"], counts["known"]) == (0, 1)
    assert StatementLine.objects.count() == 1
    assert StatementImport.objects.count() == 2


def test_a_window_without_payments_is_still_an_import(fake_daraja, pull_enabled, reconcile_calls):
    serve(fake_daraja, page())

    counts = statement_pull(now=NOW)

    assert counts["pulled"] == 0 and counts["pages"] == 1
    assert StatementImport.objects.get().lines_read == 0
    assert len(reconcile_calls) == 1


def test_the_window_is_capped_at_48_hours(fake_daraja, pull_enabled, reconcile_calls):
    serve(fake_daraja, page())

    statement_pull(now=NOW, hours=100)

    [sent] = sent_queries(fake_daraja)
    assert sent["StartDate"] == "2026-12-04 12:00:00"
    assert StatementImport.objects.get().period_start == NOW - dt.timedelta(hours=48)


@pytest.mark.parametrize(
    "reply",
    [
        (500, {"requestId": "r", "errorCode": "500.003.02", "errorMessage": "System is busy."}),
        (
            400,
            {"requestId": "r", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid ShortCode"},
        ),
    ],
)
def test_a_daraja_error_is_counted_and_logged_never_raised(
    fake_daraja, pull_enabled, reconcile_calls, caplog, reply
):
    status, body = reply
    fake_daraja.mock.add(responses.POST, QUERY_URL, status=status, json=body)

    with caplog.at_level(logging.WARNING, logger="statements.pull"):
        counts = statement_pull(now=NOW)

    assert counts["errors"] == 1 and counts["pulled"] == 0
    assert not StatementImport.objects.exists()
    assert reconcile_calls == []
    assert body["errorCode"] in caplog.text


def test_an_error_on_a_later_page_stores_nothing(fake_daraja, pull_enabled, reconcile_calls, caplog):
    serve(fake_daraja, page(pulled_row("QKH94M1Z11", msisdn=254708374149)))
    fake_daraja.mock.add(responses.POST, QUERY_URL, body=requests.ConnectionError("Connection reset by peer"))

    with caplog.at_level(logging.INFO):
        counts = statement_pull(now=NOW)

    assert counts["errors"] == 1
    assert not StatementLine.objects.exists()
    assert "254708374149" not in caplog.text


def test_nothing_is_asked_while_pull_transactions_is_disabled(fake_daraja, settings, reconcile_calls):
    settings.MPESA_PULL_TRANSACTIONS_ENABLED = False

    counts = statement_pull(now=NOW)

    assert counts["skipped"] == "disabled"
    assert sent_queries(fake_daraja) == []
    assert not StatementImport.objects.exists()


def test_the_task_runs_the_pull(fake_daraja, pull_enabled, reconcile_calls):
    from statements.tasks import pull_statement_task

    serve(fake_daraja, page())

    assert "errors 0" in pull_statement_task()


# --- schedule ---------------------------------------------------------------------------------------
def test_the_schedule_exists_while_enabled_and_is_removed_when_disabled(db, settings):
    from django_q.models import Schedule

    from statements.schedules import PULL_SCHEDULE, ensure_statement_schedules

    settings.MPESA_PULL_TRANSACTIONS_ENABLED = True
    settings.MPESA_PULL_INTERVAL_MINUTES = 15
    ensure_statement_schedules()
    schedule = Schedule.objects.get(name=PULL_SCHEDULE)
    assert (schedule.func, schedule.minutes) == ("statements.tasks.pull_statement_task", 15)

    settings.MPESA_PULL_INTERVAL_MINUTES = 5
    ensure_statement_schedules()
    assert Schedule.objects.get(name=PULL_SCHEDULE).minutes == 5

    settings.MPESA_PULL_TRANSACTIONS_ENABLED = False
    ensure_statement_schedules()
    assert not Schedule.objects.filter(name=PULL_SCHEDULE).exists()


# --- against the simulator, over HTTP ------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_payments_whose_callbacks_never_came_are_pulled_from_the_simulator(daraja, settings):
    from payments.daraja.client import DarajaClient
    from payments.simulator import ledger

    settings.MPESA_PULL_TRANSACTIONS_ENABLED = True
    client = DarajaClient()
    sink = f"{daraja.url}/nowhere/stk"
    for phone, amount in (("254700000404", 30), ("254708374149", 1250), ("254700000032", 40)):
        client.stk_push(
            phone=phone,
            amount=Decimal(amount),
            account_reference="ORD12",
            description="Order",
            callback_url=sink,
        )
    direct = ledger.pay_bill(phone="254712345678", amount_kes=500, account="INV-9")
    time.sleep(settings.SIMULATOR_CALLBACK_DELAY + 0.3)  # until the simulator has decided the payments

    counts = statement_pull(now=timezone.now())

    assert counts["errors"] == 0 and counts["pulled"] == 3
    entries = {e["receipt"]: e for e in ledger.day_entries("174379", timezone.localdate())}
    lines = {line.receipt: line for line in StatementLine.objects.all()}
    assert set(lines) == set(entries)
    dropped = next(receipt for receipt, e in entries.items() if e["phone"] == "254700000404")
    assert lines[dropped].paid_in == Decimal("30.00")
    assert lines[dropped].party_phone_suffix == "404" and lines[dropped].party_phone_length == 12
    assert lines[dropped].account_number == "ORD12"
    assert lines[direct["receipt"]].account_number == "INV-9"
    for receipt, line in lines.items():
        completed = dt.datetime.fromtimestamp(entries[receipt]["completed_at"], dt.UTC)
        assert abs((line.completed_at - completed).total_seconds()) < 1
    imp = StatementImport.objects.get()
    assert imp.source == ImportSource.PULL
    assert ReconciliationRun.objects.get().statement_import == imp  # reconciled, not only stored


# --- manage.py pull_statement -----------------------------------------------------------------------------
def test_the_command_pulls_now_and_prints_the_counts(fake_daraja, pull_enabled, reconcile_calls):
    serve(fake_daraja, page(pulled_row("QKH94M1Z11")), page())
    out = io.StringIO()

    call_command("pull_statement", "--hours", "2", stdout=out)

    counts = json.loads(out.getvalue())
    assert (counts["pulled"], counts["new"], counts["errors"]) == (1, 1, 0)
    assert StatementLine.objects.get().receipt == "QKH94M1Z11"


@pytest.mark.parametrize("hours", ["0", "49"])
def test_the_command_refuses_a_window_daraja_would_refuse(fake_daraja, pull_enabled, hours):
    with pytest.raises(CommandError, match="--hours"):
        call_command("pull_statement", "--hours", hours)
    assert sent_queries(fake_daraja) == []


def test_the_command_says_when_daraja_did_not_answer(fake_daraja, pull_enabled, reconcile_calls):
    fake_daraja.mock.add(responses.POST, QUERY_URL, status=500, json={"errorCode": "500.003.02"})

    with pytest.raises(CommandError, match="nothing was stored"):
        call_command("pull_statement", stdout=io.StringIO())


def test_the_command_registers_the_shortcode_once(fake_daraja, settings):
    settings.MPESA_PULL_NOMINATED_NUMBER = "0722000000"
    fake_daraja.mock.add(
        responses.POST,
        f"{settings.MPESA_BASE_URL}/pulltransactions/v1/register",
        json={
            "ResponseRefID": "18633-7271215-1",
            "Response Status": "1001",
            "ShortCode": settings.MPESA_SHORTCODE,
            "Response Description": "ShortCode already Registered",
        },
    )
    out = io.StringIO()

    call_command("pull_statement", "--register", "--callback-url", "https://shop.example/pull", stdout=out)

    assert "ShortCode already Registered (1001)" in out.getvalue()
    [sent] = [json.loads(r.body) for r in fake_daraja.requests_to("/pulltransactions/v1/register")]
    assert sent == {
        "ShortCode": settings.MPESA_SHORTCODE,
        "RequestType": "Pull",
        "NominatedNumber": "0722000000",
        "CallBackURL": "https://shop.example/pull",
    }


def test_registering_needs_the_nominated_number(fake_daraja, settings):
    settings.MPESA_PULL_NOMINATED_NUMBER = ""

    with pytest.raises(CommandError, match="MPESA_PULL_NOMINATED_NUMBER"):
        call_command("pull_statement", "--register")
