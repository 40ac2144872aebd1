"""Peak memory of a monthly report's attachments: a month of `--attempts` attempts against a baseline month.

In one run, on one scratch SQLite database (PostgreSQL with --postgres):
1. September 2026 gets `--baseline` attempts of demo history and October 2026 gets `--attempts` (seed_demo's
   bulk writer, backoffice.demo_history.HistoryWriter);
2. for each month, the CSV and the XLSX attachments are built exactly as the report email builds them
   (reports.exports.write_csv / write_xlsx with the summary sheet), each under tracemalloc, into a
   temp folder; the peak of Python allocations while writing, the time and the file size are printed;
3. the ratio October / September of each peak: streaming means it stays near 1 however many rows there
   are, while the rows grow by attempts / baseline.

Target (printed, never asserted): each peak within 2x the baseline's (flat), whatever `--attempts` is.
`--naive` also measures holding the month's rows in a list (what not streaming would cost).
Exit 1 only when a file's rows disagree with the selectors' attempt count.

    .venv/bin/python bench/report_memory.py                        # 1,000,000 attempts vs 10,000
    .venv/bin/python bench/report_memory.py --attempts 100000      # quicker
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import scratch_database  # noqa: E402

FLAT_TARGET = 2.0
MIB = 1024 * 1024


def measured(action):
    """(peak MiB of Python allocations, seconds, result) of one call."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        result = action()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / MIB, time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=1_000_000, help="Attempts in the measured month.")
    parser.add_argument("--baseline", type=int, default=10_000, help="Attempts in the baseline month.")
    parser.add_argument("--naive", action="store_true", help="Also hold the month's rows in a list.")
    parser.add_argument("--postgres", metavar="URL", help="Run on a scratch database on this server.")
    parser.add_argument("--keep", action="store_true", help="Keep the SQLite scratch folder.")
    args = parser.parse_args()

    with scratch_database(postgres=args.postgres, keep=args.keep):
        return run(args)


def seed(month_first: dt.date, attempts: int, numbers: Iterator[int]) -> None:
    from django.contrib.auth import get_user_model
    from tqdm import tqdm

    from backoffice.demo_history import HistoryWriter
    from reports.periods import NAIROBI

    users = get_user_model()
    next_month = (month_first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    # The writer spreads attempts over the `days` before `now`, skipping the hours from `now` on.
    now = dt.datetime.combine(next_month, dt.time.min, tzinfo=NAIROBI)
    writer = HistoryWriter(
        owner=users.objects.get(username="storefront"), staff=users.objects.get(username="manager"), now=now
    )
    # One writer numbers its rows from 1 (receipts, CheckoutRequestIDs, refund keys): a second writer in
    # the same database continues where the first stopped, or its unique keys collide.
    writer.numbers = numbers
    started = time.monotonic()
    with tqdm(total=attempts, unit=" attempts", desc=f"{month_first:%B}", file=sys.stderr) as bar:
        counts = writer.run(days=(next_month - month_first).days + 1, attempts=attempts, progress=bar.update)
    print(f"seeded {month_first:%B %Y}: {counts.attempts:,} attempts in {time.monotonic() - started:.0f} s")


def month_files(month_first: dt.date, folder: str, naive: bool) -> dict:
    from reports import exports, selectors
    from reports.report_email import report_figures, xlsx_summary_sheet
    from reports.report_periods import report_period

    next_month = (month_first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    period = report_period("monthly", before=next_month)
    figures = report_figures(period)
    found = {"attempts": figures.summary.attempts_total, "rows": exports.report_row_count(period)}

    csv_path = os.path.join(folder, f"{month_first:%m}.csv")

    def write_csv():
        with open(csv_path, "wb") as file:
            return exports.write_csv(file, period)

    xlsx_path = os.path.join(folder, f"{month_first:%m}.xlsx")
    found["csv"] = (*measured(write_csv), os.path.getsize(csv_path))
    found["xlsx"] = (
        *measured(lambda: exports.write_xlsx(xlsx_path, xlsx_summary_sheet(figures), period)),
        os.path.getsize(xlsx_path),
    )
    if naive:
        found["naive"] = (*measured(lambda: len(list(exports.iter_rows(period)))), 0)
    found["agree"] = all(found[kind][2] == found["rows"] for kind in ("csv", "xlsx")) and (
        found["attempts"] == selectors.mpesa_attempts(period).count()
    )
    return found


def run(args) -> int:
    from django.core.management import call_command
    from django.db import connection

    call_command("seed_demo", "--logins-file", "", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    baseline_month, measured_month = dt.date(2026, 9, 1), dt.date(2026, 10, 1)
    numbers = itertools.count(1)
    seed(baseline_month, args.baseline, numbers)
    seed(measured_month, args.attempts, numbers)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    with tempfile.TemporaryDirectory(prefix="report-bench-") as folder:
        base = month_files(baseline_month, folder, args.naive)
        big = month_files(measured_month, folder, args.naive)

    print(
        f"\n{connection.vendor}: September {base['rows']:,} rows ({base['attempts']:,} attempts), "
        f"October {big['rows']:,} rows ({big['attempts']:,} attempts): {big['rows'] / base['rows']:.0f}x the rows\n"
    )
    print(f"{'file':8} {'baseline peak':>14} {'peak':>10} {'ratio':>7} {'seconds':>16} {'size':>18}  target")
    kinds = ["csv", "xlsx", *(["naive"] if args.naive else [])]
    for kind in kinds:
        base_peak, base_seconds, _rows, base_size = base[kind]
        peak, seconds, _rows, size = big[kind]
        ratio = peak / base_peak
        mark = "met" if ratio <= FLAT_TARGET else "MISSED"
        label = "list" if kind == "naive" else kind
        sizes = f"{base_size / MIB:6.1f} -> {size / MIB:6.1f} MiB" if size else ""
        print(
            f"{label:8} {base_peak:11.1f} MiB {peak:6.1f} MiB {ratio:7.2f} {base_seconds:6.1f} -> {seconds:6.1f} "
            f"{sizes:>18}  {'<= ' + str(FLAT_TARGET) + 'x: ' + mark if kind != 'naive' else '(not streamed)'}"
        )
    agree = base["agree"] and big["agree"]
    print(f"\nfiles have every row and the selectors' attempt count: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
