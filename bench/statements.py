"""Importing and reconciling a 200,000-line M-PESA statement: time, lines/s and peak memory of each step,
against bare baselines over the same file and database, measured in the same run.

1. One scratch database (harness.scratch_database: SQLite, or a scratch database on a PostgreSQL server with
   --postgres) gets the shop's side: `--lines` M-Pesa payments bulk inserted, completed with their receipts,
   except a share completed on an STK Query with the receipt still pending, a share the statement will not
   show (completed but not on the statement), and a few refunds (reversals).
2. The statement file is written in the portal's layout (preamble, header row, thousands separators, masked
   Other Party Info): one line per payment it shows (the receipt-pending ones under their real receipts,
   unknown to us), the reversals with a charge each, and a share of Pay Bill payments nobody recorded.
3. Each phase runs in a fresh child process, sampling its own resident memory (/proc/self/statm, 10 ms):
   - baseline read: `csv.reader` over the file, rows counted, nothing parsed;
   - import: `statements.imports.statement_import` without reconciling: tolerant header, preamble,
     amounts, Nairobi times, classification, Other Party digits, lines stored in batches;
   - baseline match: one `UPDATE ... SET payment_id = (SELECT ... WHERE receipt = ...)`, the least a
     match by receipt can cost (then undone);
   - reconcile: `statements.reconciliation.reconcile_import`: receipts, phone digits + amount + time,
     refunds, exceptions and totals, all set-based;
   - import again: the same file once more, every line already known (nothing stored).
4. Printed: seconds, lines/s, RSS peak and growth per phase, the ratios import / baseline read and reconcile
   / baseline match, and the run's totals. Exit 1 when the reconciliation does not add up: every payment
   the file shows matched, every pending receipt filled, the planted lines and the missing payments found.

    .venv/bin/python bench/statements.py                     # 200,000 lines on SQLite
    .venv/bin/python bench/statements.py --postgres postgres://backoffice:backoffice@127.0.0.1:5432/backoffice
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import MIB, ROOT, RssSampler, scratch_database  # noqa: E402

NAIROBI = ZoneInfo("Africa/Nairobi")
SHORTCODE = "174379"
BATCH = 5_000
PENDING_SHARE = 50  # every 50th payment: completed on STK Query, receipt pending
MISSING_SHARE = 200  # every 200th: completed here, not on the statement
REVERSAL_SHARE = 500  # every 500th: reversed
PLANTED_SHARE = 100  # one Pay Bill line nobody recorded per this many payments
HEADER = [
    "Receipt No.", "Completion Time", "Initiation Time", "Details", "Transaction Status", "Paid In",
    "Withdrawn", "Balance", "Balance Confirmed", "Reason Type", "Other Party Info", "Linked Transaction ID",
    "A/C No.",
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lines", type=int, default=200_000, help="Payments on the statement (default 200,000)."
    )
    parser.add_argument("--postgres", metavar="URL", help="Run on a scratch database on this server.")
    parser.add_argument("--keep", action="store_true", help="Keep the SQLite scratch folder.")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # a child process: run one phase, print JSON
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--import-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return phase(args)
    if not 100 <= args.lines <= 2_000_000:
        parser.error("--lines must be 100 to 2,000,000")
    with scratch_database(postgres=args.postgres, keep=args.keep) as (workdir, _env):
        return run(args, workdir)


# --- the shop's side and the statement file ---------------------------------------------------------------
def _moment(start: dt.datetime, number: int) -> dt.datetime:
    return start + dt.timedelta(seconds=number * 2)


def seed(lines: int, start: dt.datetime) -> dict:
    """`lines` M-Pesa payments, one order each, in the states described above; returns what to expect."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import F

    from orders.models import Customer, Order
    from payments.models import Payment, Refund

    owner = get_user_model().objects.create_user("bench-storefront")
    customer = Customer.objects.create(full_name="Bench Customer", phone="254700000001")
    # The rows carry their own times: auto_now_add would give them all the moment of the insert.
    Payment._meta.get_field("created_at").auto_now_add = False
    expected = {"pending": 0, "missing": 0, "reversed": 0}
    try:
        for first in range(0, lines, BATCH):
            numbers = range(first, min(first + BATCH, lines))
            orders = Order.objects.bulk_create(
                Order(
                    reference=f"B{number:011d}",
                    owner=owner,
                    customer=customer,
                    status="CONFIRMED",
                    payment_method="mpesa",
                    total=Decimal(10 + number % 5_000),
                    contact_name=f"Customer {number}",
                    contact_phone=_phone(number),
                    shipping_full_name=f"Customer {number}",
                    shipping_address="1 Moi Avenue",
                    shipping_city="Nairobi",
                )
                for number in numbers
            )
            payments = Payment.objects.bulk_create(
                _payment(number, order, start) for number, order in zip(numbers, orders, strict=True)
            )
            refunds = [
                Refund(
                    payment=payment,
                    status="succeeded",
                    method="reversal",
                    amount=payment.amount,
                    reason="Bench reversal",
                    idempotency_key=f"bench-refund-{number}",
                    original_receipt=payment.mpesa_receipt_number,
                    transaction_id=f"SBR{number:07d}",
                    completed_at=_moment(start, number) + dt.timedelta(minutes=5),
                )
                for number, payment in zip(numbers, payments, strict=True)
                if _reversed(number)
            ]
            Refund.objects.bulk_create(refunds)
            Payment.objects.filter(pk__in=[refund.payment_id for refund in refunds]).update(
                status="refunded", refunded_amount=F("amount")
            )
            print(f"\rseeded {numbers[-1] + 1:,} of {lines:,} payments", end="", file=sys.stderr, flush=True)
    finally:
        Payment._meta.get_field("created_at").auto_now_add = True
    print(file=sys.stderr)
    for number in range(lines):
        expected["pending"] += _pending(number)
        expected["missing"] += _missing(number)
        expected["reversed"] += _reversed(number)
    expected["planted"] = lines // PLANTED_SHARE
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return expected


def _phone(number: int) -> str:
    return f"2547{number % 100_000_000:08d}"


def _pending(number: int) -> bool:
    return number % PENDING_SHARE == 7


def _missing(number: int) -> bool:
    return number % MISSING_SHARE == 13


def _reversed(number: int) -> bool:
    return number % REVERSAL_SHARE == 21 and not _pending(number) and not _missing(number)


def _payment(number: int, order, start: dt.datetime):
    from payments.models import Payment

    moment = _moment(start, number)
    pending = _pending(number)
    return Payment(
        order=order,
        method="mpesa",
        status="completed",
        amount=order.total,
        phone=order.contact_phone,
        account_reference=order.reference[-12:],
        checkout_request_id=f"ws_CO_BENCH{number:012d}",
        mpesa_receipt_number=None if pending else f"SBN{number:07d}",
        receipt_pending=pending,
        paid_amount=order.total,
        result_code="0",
        result_desc="The service request is processed successfully.",
        settled_by="query" if pending else "callback",
        created_at=moment - dt.timedelta(seconds=30),
        initiated_at=moment - dt.timedelta(seconds=29),
        completed_at=moment,
    )


def _masked(phone: str) -> str:
    return f"{phone[:4]}*****{phone[-3:]} - CUSTOMER {phone[-3:]}"


def write_statement(path: Path, lines: int, start: dt.datetime) -> int:
    """The statement in the portal's layout; returns the number of data rows."""
    end = _moment(start, lines) + dt.timedelta(hours=1)
    balance = Decimal("0")
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["Account Name:", "Bench Shop Ltd"])
        writer.writerow(["Short Code:", SHORTCODE])
        writer.writerow(["Time Period:", f"From {_portal(start)} To {_portal(end)}"])
        writer.writerow([])
        writer.writerow(HEADER)
        for number in range(lines):
            moment = _moment(start, number)
            phone, amount = _phone(number), Decimal(10 + number % 5_000)
            account = f"B{number:011d}"[-12:]
            if not _missing(number):
                receipt = f"SBQ{number:07d}" if _pending(number) else f"SBN{number:07d}"
                balance += amount
                writer.writerow(
                    _row(
                        receipt,
                        moment,
                        f"Pay Bill Online from {_masked(phone)} Acc. {account}",
                        amount,
                        Decimal(0),
                        balance,
                        "Pay Bill Online",
                        _masked(phone),
                        "",
                        account,
                    )
                )
                rows += 1
            if _reversed(number):
                later = moment + dt.timedelta(minutes=5)
                balance -= amount
                writer.writerow(
                    _row(
                        f"SBR{number:07d}",
                        later,
                        f"Reversal of transaction SBN{number:07d}",
                        Decimal(0),
                        amount,
                        balance,
                        "Reversal",
                        _masked(phone),
                        f"SBN{number:07d}",
                        "",
                    )
                )
                balance -= Decimal("15")
                writer.writerow(
                    _row(
                        f"SBR{number:07d}",
                        later,
                        "Reversal Charge",
                        Decimal(0),
                        Decimal("15"),
                        balance,
                        "Reversal Charge",
                        "",
                        "",
                        "",
                    )
                )
                rows += 2
            if number % PLANTED_SHARE == 99:
                stranger = f"2541{number % 100_000_000:08d}"
                balance += Decimal("500")
                writer.writerow(
                    _row(
                        f"SBP{number:07d}",
                        moment,
                        f"Pay Bill from {_masked(stranger)} Acc. RENT",
                        Decimal("500"),
                        Decimal(0),
                        balance,
                        "Pay Bill",
                        _masked(stranger),
                        "",
                        "RENT",
                    )
                )
                rows += 1
    return rows  # fmt: skip


def _portal(moment: dt.datetime) -> str:
    return moment.astimezone(NAIROBI).strftime("%d-%m-%Y %H:%M:%S")


def _row(receipt, moment, details, paid_in, withdrawn, balance, reason, party, linked, account) -> list[str]:
    local = moment.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")
    return [
        receipt, local, local, details, "Completed", f"{paid_in:,.2f}" if paid_in else "",
        f"{withdrawn:,.2f}" if withdrawn else "", f"{balance:,.2f}", "true", reason, party, linked, account,
    ]  # fmt: skip


# --- one phase, in its own process ------------------------------------------------------------------------
def phase(args) -> int:
    import django

    django.setup()
    from django.db import connection

    from statements import imports, reconciliation
    from statements.models import ImportSource, StatementImport

    sampler = RssSampler()
    started = time.perf_counter()
    result: dict = {}
    with sampler:
        if args.phase == "baseline-read":
            with open(args.file, newline="", encoding="utf-8") as file:
                result["rows"] = sum(1 for _row in csv.reader(file))
        elif args.phase in ("import", "import-again"):
            with open(args.file, "rb") as file:
                done = imports.statement_import(
                    fileobj=file,
                    file_name=Path(args.file).name,
                    actor=None,
                    source=ImportSource.COMMAND,
                    reconcile=False,
                )
            result.update(rows=done.lines_read, new=done.lines_new, known=done.lines_known, import_id=done.pk)
        elif args.phase == "baseline-match":
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE statements_statementline SET payment_id = (SELECT p.id FROM payments_payment p "
                    "WHERE p.mpesa_receipt_number = statements_statementline.receipt)"
                )
                result["rows"] = cursor.rowcount
                cursor.execute("UPDATE statements_statementline SET payment_id = NULL")
        elif args.phase == "reconcile":
            run = reconciliation.reconcile_import(StatementImport.objects.get(pk=args.import_id), actor=None)
            result.update(rows=StatementImport.objects.get(pk=args.import_id).lines_read, totals=run.totals)
    result.update(seconds=time.perf_counter() - started, rss_start=sampler.start, rss_peak=sampler.peak)
    print(json.dumps(result, default=str))
    return 0


def _child(name: str, **options) -> dict:
    argv = [sys.executable, __file__, "--phase", name]
    for option, value in options.items():
        argv += [f"--{option.replace('_', '-')}", str(value)]
    done = subprocess.run(  # noqa: S603 - our own interpreter and script, fixed arguments
        argv, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, check=False, timeout=7200
    )
    found = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not found:
        raise SystemExit(f"phase {name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(found[-1])


# --- the run ----------------------------------------------------------------------------------------------
def run(args, workdir: Path) -> int:
    from django.db import connection, connections

    start = (dt.datetime.now(NAIROBI) - dt.timedelta(days=30)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    started = time.monotonic()
    expected = seed(args.lines, start)
    print(f"seeded {args.lines:,} payments in {time.monotonic() - started:.0f} s on {connection.vendor}")
    path = workdir / "statement.csv"
    rows = write_statement(path, args.lines, start)
    print(f"statement: {rows:,} lines, {path.stat().st_size / MIB:.1f} MiB")
    connections.close_all()

    results = {"baseline read": _child("baseline-read", file=path)}
    results["import"] = _child("import", file=path)
    results["baseline match"] = _child("baseline-match")
    results["reconcile"] = _child("reconcile", import_id=results["import"]["import_id"])
    results["import again"] = _child("import-again", file=path)

    print(
        f"\n{connection.vendor}, {rows:,} statement lines, {os.cpu_count()} CPUs; each phase in its own process"
    )
    header = f"{'phase':15} {'seconds':>8} {'lines/s':>10} {'RSS peak':>10} {'RSS growth':>11}"
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        growth = result["rss_peak"] - result["rss_start"]
        print(
            f"{name:15} {result['seconds']:>8.2f} {rows / result['seconds']:>10,.0f} "
            f"{result['rss_peak'] / MIB:>6.1f} MiB {growth / MIB:>7.1f} MiB"
        )
    print()
    print(
        f"import / baseline read: x{results['import']['seconds'] / results['baseline read']['seconds']:.1f}"
    )
    print(
        f"reconcile / baseline match: x{results['reconcile']['seconds'] / results['baseline match']['seconds']:.1f}"
    )
    totals = results["reconcile"]["totals"]
    print("\ntotals: " + json.dumps(totals, indent=1, sort_keys=True))
    return check(expected, results, rows)


def check(expected: dict, results: dict, rows: int) -> int:
    from payments.models import Payment
    from statements.models import ItemKind, ReconciliationItem, StatementLine

    problems = []
    if results["import"]["new"] != rows:
        problems.append(f"stored {results['import']['new']:,} of {rows:,} lines")
    if results["import again"]["new"] != 0 or results["import again"]["known"] != rows:
        problems.append("the second import stored lines again")
    still_pending = Payment.objects.filter(receipt_pending=True).count()
    if still_pending:
        problems.append(f"{still_pending:,} of {expected['pending']:,} pending receipts not filled")
    open_items = ReconciliationItem.objects.filter(status="open")
    unrecorded = open_items.filter(kind=ItemKind.UNRECORDED_LINE).count()
    missing = open_items.filter(kind=ItemKind.MISSING_FROM_STATEMENT).count()
    if unrecorded != expected["planted"]:
        problems.append(f"received but not recorded: {unrecorded:,}, planted {expected['planted']:,}")
    if missing != expected["missing"]:
        problems.append(f"not on the statement: {missing:,}, expected {expected['missing']:,}")
    unmatched_refunds = StatementLine.objects.filter(kind="reversal", refund__isnull=True).count()
    if unmatched_refunds:
        problems.append(f"{unmatched_refunds:,} reversal lines without their refund")
    print("\nreconciliation adds up: " + ("yes" if not problems else "NO: " + "; ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
