"""Exporting the payments list at a million rows: time, rows/s and peak memory of the CSV and the XLSX that
an export task writes, against a bare csv.writer over the same rows, measured in the same run.

1. One scratch database (harness.scratch_database: SQLite, or a scratch database on a PostgreSQL server with
   --postgres) gets `--rows` payments, one order each, bulk inserted: M-Pesa and cash on delivery, every
   status, phones, receipts, result codes, times spread over 90 days.
2. Each phase runs in a fresh child process on that database, which samples its own resident memory (RSS,
   /proc/self/statm every 10 ms) from the start of the phase to its end:
   - baseline csv: `csv.writer` over `Payment.objects.order_by(<the list's order>).values_list(<the
     export's fields>).iterator(2000)`: the same rows and columns, raw values, no masking, labels or time
     zones; baseline xlsx: the same rows through a bare XlsxWriter workbook (constant_memory);
   - csv, xlsx: a superuser's export of the whole payments list, queued by `exports.services.export_create`
     (EXPORT_SYNC_MAX_ROWS=0) and written by `exports.tasks.export_write`, the function the django-q2 task
     runs: the admin's ChangeList queryset, streamed, cells typed and masked, the file stored under
     MEDIA_ROOT.
   `--tracemalloc` runs each phase once more under tracemalloc for the peak of Python allocations (slower).
3. Printed: rows, seconds, rows/s, RSS at its peak and its growth over the start of the phase, file size,
   and each export's ratios to the baseline of its format. Target (printed, never asserted): memory flat, i.e. the
   export's RSS growth of the same order as the baseline's (a few MiB), not growing with the rows.
Exit 1 only when a file's row count differs from the number of payments.

    .venv/bin/python bench/exports.py                      # 1,000,000 payments on SQLite
    .venv/bin/python bench/exports.py --rows 100000        # quicker
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The project root first: this file is named like the exports app, which `import exports` must find.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import MIB, ROOT, RssSampler, scratch_database  # noqa: E402

BATCH = 5_000
STATUSES = (  # (status, share) roughly as a busy shop sees them
    ("completed", 0.62),
    ("failed", 0.27),
    ("refunded", 0.02),
    ("partially_refunded", 0.01),
    ("needs_review", 0.01),
    ("initiated", 0.02),
    ("pending_delivery", 0.05),
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="Payments in the list (default 1,000,000)."
    )
    parser.add_argument("--tracemalloc", action="store_true", help="Also measure Python allocations.")
    parser.add_argument("--postgres", metavar="URL", help="Run on a scratch database on this server.")
    parser.add_argument("--keep", action="store_true", help="Keep the SQLite scratch folder.")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # a child process: run one phase, print JSON
    parser.add_argument("--export-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return phase(args)
    if not 1 <= args.rows <= 5_000_000:
        parser.error("--rows must be 1 to 5,000,000")
    with scratch_database(postgres=args.postgres, keep=args.keep) as (workdir, _env):
        os.environ["MEDIA_ROOT"] = str(workdir / "media")  # the children store their files here
        return run(args, workdir)


# --- seeding --------------------------------------------------------------------------------------------
def seed(rows: int) -> float:
    """`rows` payments, one order each, bulk inserted with their own creation times."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from orders.models import Customer, Order
    from payments.models import Payment

    owner = get_user_model().objects.create_user("bench-storefront")
    customer = Customer.objects.create(full_name="Bench Customer", phone="254700000001")
    randomness = random.Random(20261206)  # noqa: S311 - test data
    statuses = [status for status, _share in STATUSES]
    weights = [share for _status, share in STATUSES]
    end = timezone.now().replace(microsecond=0)
    start = end - dt.timedelta(days=90)
    step = (end - start) / rows
    # The rows carry their own times: auto_now_add would give them all the moment of the insert.
    created_field = Payment._meta.get_field("created_at")
    created_field.auto_now_add = False
    started = time.monotonic()
    try:
        for first in range(0, rows, BATCH):
            numbers = range(first, min(first + BATCH, rows))
            orders = Order.objects.bulk_create(
                Order(
                    reference=f"B{number:011d}",
                    owner=owner,
                    customer=customer,
                    status="CONFIRMED",
                    payment_method="mpesa",
                    total=Decimal(randomness.randrange(10, 25_000)),
                    contact_name=f"Customer {number}",
                    contact_phone=f"2547{number % 100_000_000:08d}",
                    shipping_full_name=f"Customer {number}",
                    shipping_address="1 Moi Avenue",
                    shipping_city="Nairobi",
                )
                for number in numbers
            )
            Payment.objects.bulk_create(
                _payment(number, order, randomness.choices(statuses, weights)[0], start + step * number)
                for number, order in zip(numbers, orders, strict=True)
            )
            print(f"\rseeded {numbers[-1] + 1:,} of {rows:,} payments", end="", file=sys.stderr, flush=True)
    finally:
        created_field.auto_now_add = True
    print(file=sys.stderr)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return time.monotonic() - started


def _payment(number: int, order, status: str, created: dt.datetime):
    from payments.models import Payment

    cod = status == "pending_delivery" or number % 20 == 0
    paid = status in ("completed", "refunded", "partially_refunded")
    failed = status == "failed"
    amount = order.total
    return Payment(
        order=order,
        method="cod" if cod else "mpesa",
        status=status,
        amount=amount,
        phone="" if cod else order.contact_phone,
        checkout_request_id=None if cod else f"ws_CO_BENCH{number:012d}",
        mpesa_receipt_number=f"SBN{number:07d}" if paid and not cod else None,
        paid_amount=amount if paid else None,
        result_code="0" if paid else ("1032" if failed else ""),
        result_desc="The service request is processed successfully." if paid else (
            "Request cancelled by user" if failed else ""),
        failure_class="customer" if failed else "",
        refunded_amount=amount if status == "refunded" else (Decimal("1") if status == "partially_refunded" else 0),
        settled_by="callback" if paid or failed else "",
        created_at=created,
        completed_at=created + dt.timedelta(seconds=25) if paid else None,
        failed_at=created + dt.timedelta(seconds=20) if failed else None,
    )  # fmt: skip


# --- one phase, in its own process ------------------------------------------------------------------------
def phase(args) -> int:
    import django

    django.setup()
    # One-time costs out of the measurement: the URLconf (reversing a changelist URL loads it) and the
    # XLSX writer's modules; what is left grows with the rows, or does not.
    import xlsxwriter  # noqa: F401
    from django.urls import reverse

    from exports import tasks
    from exports.models import Export

    reverse("admin:payments_payment_changelist")
    sampler = RssSampler()
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    with sampler:
        if args.phase == "baseline-csv":
            rows, size = _bare_csv(args.out)
        elif args.phase == "baseline-xlsx":
            rows, size = _bare_xlsx(args.out)
        else:
            outcome = tasks.export_write(args.export_id)
            export = Export.objects.get(pk=args.export_id)
            if export.status != "ready":
                print(json.dumps({"error": f"{outcome}: {export.error}"}))
                return 1
            rows, size = export.row_count, export.size_bytes
    seconds = time.perf_counter() - started
    peak_python = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    result = {"rows": rows, "size": size, "seconds": seconds, "python_peak": peak_python}
    print(json.dumps({**result, "rss_start": sampler.start, "rss_peak": sampler.peak}))
    return 0


def _bare_rows():
    from exports.writers import CHUNK_ROWS
    from payments.admin import PAYMENT_EXPORT_COLUMNS
    from payments.models import Payment

    fields = [column.field for column in PAYMENT_EXPORT_COLUMNS]
    titles = [column.title for column in PAYMENT_EXPORT_COLUMNS]
    return titles, Payment.objects.order_by("-created_at", "-id").values_list(*fields).iterator(CHUNK_ROWS)


def _bare_csv(path: str) -> tuple[int, int]:
    titles, values = _bare_rows()
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(titles)
        for row in values:
            writer.writerow(row)
            rows += 1
    return rows, os.path.getsize(path)


def _bare_xlsx(path: str) -> tuple[int, int]:
    import xlsxwriter

    titles, values = _bare_rows()
    workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "remove_timezone": True})
    sheet = workbook.add_worksheet("Payments")
    sheet.write_row(0, 0, titles)
    rows = 0
    for rows, row in enumerate(values, start=1):
        sheet.write_row(rows, 0, row)
    workbook.close()
    return rows, os.path.getsize(path)


def _child(name: str, *, traced: bool, **options) -> dict:
    argv = [sys.executable, __file__, "--phase", name, *(["--tracemalloc"] if traced else [])]
    for option, value in options.items():
        argv += [f"--{option.replace('_', '-')}", str(value)]
    done = subprocess.run(  # noqa: S603 - our own interpreter and script, fixed arguments
        argv, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, check=False, timeout=7200
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"phase {name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1])


def _measure(name: str, args, *, before=None, **options) -> dict:
    """The phase timed (peak RSS from the kernel), then, with --tracemalloc, once more under tracemalloc."""
    if before:
        before()
    result = _child(name, traced=False, **options)
    if args.tracemalloc:
        if before:
            before()
        result["python_peak"] = _child(name, traced=True, **options)["python_peak"]
    return result


# --- the run ----------------------------------------------------------------------------------------------
def run(args, workdir: Path) -> int:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, connections

    from exports import services
    from payments.models import Payment

    seconds = seed(args.rows)
    total = Payment.objects.count()
    print(f"seeded {total:,} payments in {seconds:.0f} s ({total / seconds:,.0f}/s) on {connection.vendor}")
    superuser = get_user_model().objects.create_superuser("bench-exporter", "bench@example.com", "x")
    settings.EXPORT_SYNC_MAX_ROWS = 0  # every export is queued for the task, as above the threshold
    exports = {
        fmt: services.export_create(actor=superuser, list_label="payments.payment", query="", fmt=fmt).pk
        for fmt in ("csv", "xlsx")
    }
    connections.close_all()

    results = {
        f"baseline {fmt}": _measure(f"baseline-{fmt}", args, out=workdir / f"baseline.{fmt}")
        for fmt in ("csv", "xlsx")
    }
    for fmt, export_id in exports.items():
        results[fmt] = _measure(
            "export", args, before=lambda pk=export_id: _queue_again(pk), export_id=export_id
        )

    print(f"\n{connection.vendor}, {total:,} payments, {os.cpu_count()} CPUs; each phase in its own process")
    header = (
        f"{'phase':14} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'RSS peak':>10} {'RSS growth':>11} "
        f"{'file':>10}"
    )
    if args.tracemalloc:
        header += f" {'py peak':>9}"
    print(header)
    print("-" * len(header))
    agree = True
    for name, result in results.items():
        line = (
            f"{name:14} {result['rows']:>10,} {result['seconds']:>8.1f} {result['rows'] / result['seconds']:>9,.0f} "
            f"{result['rss_peak'] / MIB:>6.1f} MiB {_growth(result) / MIB:>7.1f} MiB {result['size'] / MIB:>6.1f} MiB"
        )
        if args.tracemalloc:
            line += f" {result['python_peak'] / MIB:>5.1f} MiB"
        print(line)
        agree &= result["rows"] == total
    print()
    for fmt in ("csv", "xlsx"):
        subject, base = results[fmt], results[f"baseline {fmt}"]
        line = (
            f"{fmt} export / bare {fmt}: time x{subject['seconds'] / base['seconds']:.2f}, "
            f"RSS growth {_growth(subject) / MIB:.1f} MiB against {_growth(base) / MIB:.1f} MiB"
        )
        if args.tracemalloc:
            line += f", Python peak x{subject['python_peak'] / base['python_peak']:.2f}"
        print(line)
    print(f"\nevery file has every payment: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


def _growth(result: dict) -> int:
    return result["rss_peak"] - result["rss_start"]


def _queue_again(export_id: int) -> None:
    """The export queued, as export_create left it (a measured run leaves it ready)."""
    from django.db import connections

    from exports.models import Export

    Export.objects.filter(pk=export_id).update(status="queued", file="", started_at=None, finished_at=None)
    connections.close_all()


if __name__ == "__main__":
    sys.exit(main())
