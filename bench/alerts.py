"""Alert evaluation at a million attempts: every rule, once a minute, must stay a handful of indexed reads.

In one run, on one scratch database (SQLite by default, PostgreSQL with --postgres):
1. `--attempts` attempts of demo history are written (seed_demo's bulk path), and the STK callbacks of the
   last three days are put in the callback inbox (history has none), so callback silence reads a real table;
2. the evaluation moment is a busy evening hour of yesterday (Nairobi), so the 30-minute window is full;
3. the baseline is one bare COUNT of the attempts in that window; then each rule's check alone, and the
   whole evaluation (`alert_evaluate_all`: every rule, plus opening, reminding and clearing alerts and
   queuing their messages) are timed against it.

Target (printed, never asserted): the whole evaluation well under a second on PostgreSQL (< 250 ms).
Exit 1 only when the evaluation's attempt count disagrees with the bare COUNT.

    .venv/bin/python bench/alerts.py                                   # SQLite, 1,000,000 attempts
    .venv/bin/python bench/alerts.py --attempts 100000                 # quicker
    .venv/bin/python bench/alerts.py --postgres postgres://backoffice:backoffice@127.0.0.1:5432/backoffice
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import scratch_database, timed  # noqa: E402

EVALUATION_TARGET_MS = 250.0
INBOX_DAYS = 3


def bare_count(window) -> int:
    """The baseline: one COUNT of the M-Pesa attempts created in the window, as hand-written SQL."""
    from django.db import connection

    start, end = (connection.ops.adapt_datetimefield_value(moment) for moment in (window.start, window.end))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM payments_payment WHERE method = 'mpesa' AND created_at >= %s AND created_at < %s",
            [start, end],
        )
        return cursor.fetchone()[0]


def fill_inbox(until: dt.datetime) -> int:
    """One processed STK callback per attempt settled by callback in the INBOX_DAYS before `until`."""
    from django.db.models.functions import Coalesce

    from backoffice.demo_history import _timestamps_as_given
    from payments.models import CallbackInbox, InboxKind, InboxStatus, Payment

    settled = (
        Payment.objects.filter(
            method="mpesa",
            settled_by="callback",
            created_at__gte=until - dt.timedelta(days=INBOX_DAYS),
            created_at__lt=until + dt.timedelta(days=1),
        )
        .annotate(answered=Coalesce("completed_at", "failed_at"))
        .values_list("pk", "checkout_request_id", "answered")
    )
    rows = [
        CallbackInbox(
            kind=InboxKind.STK_CALLBACK,
            status=InboxStatus.PROCESSED,
            received_at=answered,
            processed_at=answered,
            path="/hooks/daraja/stk/bench/",
            body='{"Body": {"stkCallback": {}}}',
            correlation_id=checkout,
            payment_id=pk,
            attempts=1,
        )
        for pk, checkout, answered in settled.iterator(chunk_size=5_000)
    ]
    with _timestamps_as_given(CallbackInbox):
        CallbackInbox.objects.bulk_create(rows, batch_size=2_000)
    return len(rows)


def busy_moment(now: dt.datetime) -> dt.datetime:
    """Yesterday at 19:30 in Nairobi: the evening peak, with a full 30-minute window behind it."""
    from reports.periods import NAIROBI

    yesterday = (now - dt.timedelta(days=1)).astimezone(NAIROBI).date()
    return dt.datetime.combine(yesterday, dt.time(19, 30), tzinfo=NAIROBI)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="Days of history the attempts spread over.")
    parser.add_argument("--repeat", type=int, default=7, help="Timed runs of each measurement (median).")
    parser.add_argument("--postgres", metavar="URL", help="Run on a scratch database on this server.")
    parser.add_argument("--keep", action="store_true", help="Keep the SQLite scratch folder.")
    args = parser.parse_args()

    with scratch_database(postgres=args.postgres, keep=args.keep, ALERT_EMAILS="ops@example.com"):
        return run(args)


def run(args) -> int:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from tqdm import tqdm

    from backoffice.demo_history import HistoryWriter
    from reports.alerts.checks import CHECKS, Evaluation
    from reports.alerts.services import alert_evaluate_all
    from reports.models import Alert, AlertRule

    call_command("seed_demo", "--logins-file", "", verbosity=0, stdout=open("/dev/null", "w"))  # noqa: SIM115
    users = get_user_model()
    writer = HistoryWriter(
        owner=users.objects.get(username="storefront"), staff=users.objects.get(username="manager"),
        now=timezone.now(),
    )  # fmt: skip
    started = time.monotonic()
    with tqdm(total=args.attempts, unit=" attempts", file=sys.stderr) as bar:
        counts = writer.run(days=args.days, attempts=args.attempts, progress=bar.update)
    seeded = time.monotonic() - started
    at = busy_moment(writer.now)
    inbox = fill_inbox(at)
    print(
        f"seeded {counts.attempts:,} attempts, {counts.orders:,} orders, {counts.events:,} events in "
        f"{seeded:.0f} s; {inbox:,} STK callbacks in the inbox"
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    rules = list(AlertRule.objects.filter(enabled=True))
    window = Evaluation(at).window(max(rule.window_minutes for rule in rules if rule.kind == "success_rate"))
    bare_ms, in_window = timed(lambda: bare_count(window), repeat=args.repeat)

    per_check = {}
    for rule in rules:
        per_check[rule.name] = timed(
            lambda rule=rule: CHECKS[rule.kind](rule, Evaluation(at)), repeat=args.repeat
        )

    first_started = time.perf_counter()
    with CaptureQueriesContext(connection) as first_queries:
        first = alert_evaluate_all(now=at)
    first_ms = (time.perf_counter() - first_started) * 1000
    with CaptureQueriesContext(connection) as steady_queries:
        steady = alert_evaluate_all(now=at)
    steady_ms, _ = timed(lambda: alert_evaluate_all(now=at), repeat=args.repeat)
    evaluation = Evaluation(at)
    attempts_seen = evaluation.attempts(
        window_minutes := int((window.end - window.start).total_seconds() // 60)
    )
    agree = attempts_seen.attempts_total == in_window

    database = f"{connection.vendor} ({connection.settings_dict['NAME']})"
    print(
        f"\n{counts.attempts:,} attempts on {database}; evaluated at {at:%Y-%m-%d %H:%M} Nairobi, "
        f"{in_window:,} attempts in the last {window_minutes} min\n"
    )
    print(f"{'measurement':46} {'ms':>9} {'x bare COUNT':>13}")
    print(f"{'baseline: bare COUNT of the window':46} {bare_ms:9.2f} {1:13.2f}")
    for name, (ms, findings) in per_check.items():
        firing = sum(1 for finding in findings if finding.firing)
        print(f"{'  check: ' + name:46} {ms:9.2f} {ms / bare_ms:13.2f}  {firing} firing")
    print(
        f"{'first evaluation (opens alerts, queues mail)':46} {first_ms:9.2f} {first_ms / bare_ms:13.2f}  "
        f"{len(first_queries)} queries: {first}"
    )
    mark = "met" if steady_ms < EVALUATION_TARGET_MS else "MISSED"
    print(
        f"{'every minute after (alerts still open)':46} {steady_ms:9.2f} {steady_ms / bare_ms:13.2f}  "
        f"{len(steady_queries)} queries: {steady}; < {EVALUATION_TARGET_MS:.0f} ms: {mark}"
    )
    print(f"\nopen alerts: {', '.join(sorted(Alert.objects.values_list('title', flat=True))) or 'none'}")
    print(f"evaluation and bare COUNT agree on the window: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
