"""Analytics at a million attempts: the summary selector, the dashboard and the payments list.

In one run, on one scratch database (SQLite by default, PostgreSQL with --postgres):
1. the dashboard and the payments list pages are timed on the empty database (the baseline for pages);
2. `--attempts` attempts of demo history are written (seed_demo's bulk path: orders, items, events, refunds);
3. the summary selector is timed against the same figures computed by hand-written SQL (its baseline), and
   the pages again against their empty-database times.

Targets (printed, never asserted): the summary within 1.5x the bare SQL; the dashboard and the changelist
under 300 ms at 1,000,000 attempts on PostgreSQL. Exit 1 only when the selector and the bare SQL disagree.

    .venv/bin/python bench/dashboard.py                                # SQLite, 1,000,000 attempts
    .venv/bin/python bench/dashboard.py --attempts 100000              # quicker
    .venv/bin/python bench/dashboard.py --postgres postgres://backoffice:backoffice@127.0.0.1:5432/backoffice
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import scratch_database, timed  # noqa: E402

SUMMARY_TARGET = 1.5
PAGE_TARGET_MS = 300.0


# --- the same figures, by hand ------------------------------------------------------------------------
def bare_sql_summary(period) -> dict:
    """What reports.selectors.summary computes, as hand-written SQL: the baseline it is measured against."""
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    # As the driver stores them: aware on PostgreSQL, UTC text on SQLite.
    start, end = (connection.ops.adapt_datetimefield_value(moment) for moment in (period.start, period.end))
    paid = "('completed', 'partially_refunded', 'refunded')"
    day = "(created_at AT TIME ZONE 'Africa/Nairobi')::date" if postgres else "date(created_at, '+3 hours')"
    completed_day = day.replace("created_at", "completed_at")
    refund_day = completed_day
    queries = {
        "counts": f"""
            SELECT COUNT(*),
                   SUM(CASE WHEN status IN {paid} THEN 1 ELSE 0 END),
                   SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
                   SUM(CASE WHEN status IN ('pending', 'initiated') THEN 1 ELSE 0 END),
                   SUM(CASE WHEN status = 'needs_review' THEN 1 ELSE 0 END),
                   SUM(CASE WHEN status = 'failed' AND failure_class <> 'customer' THEN 1 ELSE 0 END),
                   COUNT(DISTINCT order_id),
                   COUNT(DISTINCT CASE WHEN status IN {paid} THEN order_id END),
                   SUM(CASE WHEN settled_by = 'callback' THEN 1 ELSE 0 END),
                   SUM(CASE WHEN settled_by = 'query' THEN 1 ELSE 0 END)
            FROM payments_payment WHERE method = 'mpesa' AND created_at >= %s AND created_at < %s""",
        "failures": """
            SELECT failure_class, result_code, COUNT(*), MAX(result_desc) FROM payments_payment
            WHERE method = 'mpesa' AND created_at >= %s AND created_at < %s AND status = 'failed'
            GROUP BY failure_class, result_code""",
        "collected": f"""
            SELECT SUM(COALESCE(paid_amount, amount)) FROM payments_payment
            WHERE status IN {paid} AND completed_at >= %s AND completed_at < %s""",
        "refunded": """
            SELECT SUM(amount) FROM payments_refund
            WHERE status IN ('succeeded', 'over_refunded') AND completed_at >= %s AND completed_at < %s""",
        "refunds_in_flight": """
            SELECT SUM(amount), COUNT(*) FROM payments_refund
            WHERE status IN ('requested', 'approved', 'submitting', 'submitted', 'unknown')
              AND created_at >= %s AND created_at < %s""",
        "cod": """
            SELECT SUM(amount), COUNT(*) FROM payments_payment
            WHERE method = 'cod' AND status = 'pending_delivery' AND created_at >= %s AND created_at < %s""",
        "daily_attempts": f"""
            SELECT {day}, COUNT(*), SUM(CASE WHEN status IN {paid} THEN 1 ELSE 0 END),
                   SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)
            FROM payments_payment WHERE method = 'mpesa' AND created_at >= %s AND created_at < %s GROUP BY 1""",
        "daily_collected": f"""
            SELECT {completed_day}, SUM(COALESCE(paid_amount, amount)) FROM payments_payment
            WHERE status IN {paid} AND completed_at >= %s AND completed_at < %s GROUP BY 1""",
        "daily_refunded": f"""
            SELECT {refund_day}, SUM(amount) FROM payments_refund
            WHERE status IN ('succeeded', 'over_refunded') AND completed_at >= %s AND completed_at < %s
            GROUP BY 1""",
    }
    answered = """
        FROM payments_payment WHERE method = 'mpesa' AND created_at >= %s AND created_at < %s
        AND initiated_at IS NOT NULL AND settled_by IN ('callback', 'query')
        AND status IN ('completed', 'partially_refunded', 'refunded', 'failed')"""
    took = "COALESCE(completed_at, failed_at) - initiated_at"
    found = {}
    with connection.cursor() as cursor:
        for name, sql in queries.items():
            cursor.execute(sql, [start, end])
            found[name] = cursor.fetchall()
        if postgres:
            cursor.execute(
                f"SELECT PERCENTILE_DISC(0.5) WITHIN GROUP (ORDER BY {took}), "
                f"PERCENTILE_DISC(0.9) WITHIN GROUP (ORDER BY {took}) {answered}",
                [start, end],
            )
            found["percentiles"] = cursor.fetchall()
        else:
            took = "(julianday(COALESCE(completed_at, failed_at)) - julianday(initiated_at)) * 86400.0"
            cursor.execute(f"SELECT COUNT(*) {answered}", [start, end])
            count = cursor.fetchone()[0]
            found["percentiles"] = []
            for fraction in (0.5, 0.9):
                if count:
                    cursor.execute(
                        f"SELECT {took} {answered} ORDER BY 1 LIMIT 1 OFFSET %s",
                        [start, end, math.ceil(fraction * count) - 1],
                    )
                    found["percentiles"].append(cursor.fetchone())
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="Days of history the attempts spread over.")
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs of each measurement (median).")
    parser.add_argument("--postgres", metavar="URL", help="Run on a scratch database on this server.")
    parser.add_argument("--keep", action="store_true", help="Keep the SQLite scratch folder.")
    args = parser.parse_args()

    with scratch_database(postgres=args.postgres, keep=args.keep):
        return run(args)


def run(args) -> int:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from tqdm import tqdm

    from backoffice.demo_history import HistoryWriter
    from payments.models import Payment
    from reports import selectors
    from reports.periods import period_named

    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    call_command("seed_demo", "--logins-file", "", verbosity=0, stdout=open("/dev/null", "w"))  # noqa: SIM115
    users = get_user_model()
    browser = Client()
    browser.force_login(users.objects.get(username="admin"))

    def page(path: str) -> Callable[[], object]:
        def get():
            # Cold: the figures are computed for this request (the shared summary cache is emptied first).
            cache.clear()
            response = browser.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return response

        return get

    pages = {
        "dashboard (default: last 7 days)": "/admin/",
        "dashboard (last 30 days)": "/admin/?period=last_30_days",
        "payments list, first page": "/admin/payments/payment/",
        "payments list, failed only": "/admin/payments/payment/?status__exact=failed",
    }
    empty = {name: timed(page(path), repeat=args.repeat)[0] for name, path in pages.items()}

    writer = HistoryWriter(
        owner=users.objects.get(username="storefront"), staff=users.objects.get(username="manager"),
        now=timezone.now(),
    )  # fmt: skip
    started = time.monotonic()
    with tqdm(total=args.attempts, unit=" attempts", file=sys.stderr) as bar:
        counts = writer.run(days=args.days, attempts=args.attempts, progress=bar.update)
    seeded = time.monotonic() - started
    print(
        f"seeded {counts.attempts:,} attempts, {counts.orders:,} orders, {counts.events:,} events, "
        f"{counts.refunds:,} refunds in {seeded:.0f} s ({counts.attempts / seeded:,.0f} attempts/s)"
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as seed_demo does after writing history: planners need statistics
    sample = Payment.objects.exclude(mpesa_receipt_number=None).order_by("-pk").first()
    pages["payments list, search by receipt"] = f"/admin/payments/payment/?q={sample.mpesa_receipt_number}"
    pages["payments list, search by phone"] = f"/admin/payments/payment/?q={sample.phone}"
    for name in ("payments list, search by receipt", "payments list, search by phone"):
        empty[name] = empty["payments list, first page"]

    period = period_named("last_30_days")
    bare_ms, bare = timed(lambda: bare_sql_summary(period), repeat=args.repeat)
    summary_ms, summary = timed(lambda: selectors.summary(period, fresh=True), repeat=args.repeat)
    agree = (
        bare["counts"][0][0] == summary.attempts_total
        and Decimal(bare["collected"][0][0] or 0).quantize(Decimal("0.01")) == summary.collected
    )

    full = {name: timed(page(path), repeat=args.repeat)[0] for name, path in pages.items()}
    # Warm: what every other reader within REPORTS_CACHE_SECONDS gets (the summary from the shared cache).
    warm = {}
    for name, path in pages.items():
        if name.startswith("dashboard"):
            browser.get(path)
            warm[name] = timed(lambda path=path: browser.get(path), repeat=args.repeat)[0]
    database_ms = {}
    for name, path in pages.items():
        with CaptureQueriesContext(connection) as captured:
            page(path)()
        database_ms[name] = (len(captured), sum(float(query["time"]) for query in captured) * 1000)

    database = f"{connection.vendor} ({connection.settings_dict['NAME']})"
    print(
        f"\n{counts.attempts:,} attempts on {database}, last 30 days: {summary.attempts_total:,} attempts\n"
    )
    print(f"{'measurement':42} {'baseline':>12} {'ms':>10} {'ratio':>8}  {'target':18} queries, database ms")
    ratio = summary_ms / bare_ms
    mark = "met" if ratio <= SUMMARY_TARGET else "MISSED"
    print(
        f"{'summary selector vs bare SQL':42} {bare_ms:10.1f}ms {summary_ms:10.1f} {ratio:8.2f}  "
        f"<= {SUMMARY_TARGET}x: {mark}"
    )
    for name in pages:
        ratio = full[name] / empty[name]
        mark = "met" if full[name] < PAGE_TARGET_MS else "MISSED"
        queries, spent = database_ms[name]
        label = f"{name}, cold" if name in warm else name
        print(
            f"{label:42} {empty[name]:10.1f}ms {full[name]:10.1f} {ratio:8.2f}  "
            f"{f'< {PAGE_TARGET_MS:.0f} ms: {mark}':18} {queries}, {spent:.0f}"
        )
        if name in warm:
            mark = "met" if warm[name] < PAGE_TARGET_MS else "MISSED"
            print(
                f"{name + ', warm':42} {empty[name]:10.1f}ms {warm[name]:10.1f} {warm[name] / empty[name]:8.2f}  "
                f"{f'< {PAGE_TARGET_MS:.0f} ms: {mark}':18}"
            )
    print(f"\nselector and bare SQL agree: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
