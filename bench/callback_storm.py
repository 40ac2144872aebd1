"""STK callback acks, distinct and duplicate storms, against a trivial JSON view in the same run and server.

    .venv/bin/python bench/callback_storm.py [--loads 0,100,200,400] [--requests 2000]
        [--postgres URL --redis URL]

A scratch project (SQLite, or PostgreSQL and Redis by flag) and the real WSGI app under gunicorn on a loopback
port; with MPESA_CALLBACK_APPLY=worker (the default with Redis) a real qcluster applies what the web stored.
M-Pesa payments in `initiated` are bulk inserted, one per distinct callback. For each load (0 = closed loop, as
fast as answered; R = open loop, call i sent at i/R s and timed from then):

1. baseline: `GET /api/v1/products` (Django, middleware, ninja, one read; none of our callback logic);
2. distinct: one success callback per payment, each new to the server;
3. duplicates: `--duplicate-share` of the calls byte-identical repeats of `--hot` success callbacks, the rest
   distinct (faults.md row 39), shuffled with a fixed seed.

Prints a table, the ratios to the baseline of the same load, and the targets: closed-loop ack throughput at
least half the baseline's, ack p99 < 50 ms at 200 req/s, ack p99 < 300 ms in the storm (row 39). Then it waits
(bounded) until every stored callback is applied and checks the database: every payment has exactly one
`result_applied` event and every repeat one `duplicate_result` event. Exit status 1 only when that check, or an
ack, fails; the latency targets are reported, not asserted.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from decimal import Decimal

import harness

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}
STORM_P99_TARGET_MS = 300.0  # faults.md row 39
OPEN_LOOP_P99_TARGET_MS = 50.0  # at 200 req/s
TARGET_RATE = 200.0
THROUGHPUT_TARGET = 0.5  # closed-loop ack throughput / baseline throughput
AMOUNT_KES = Decimal("10.00")
DRAIN_TIMEOUT = 120.0
SEED_BATCH = 1000


def parse_args(argv: list[str] | None = None):
    parser = harness.load_parser(__doc__.split("\n\n")[0], requests=2000, requests_max=10_000, concurrency=16)
    parser.add_argument(
        "--loads",
        default="0,100,200,400",
        help="comma-separated loads: 0 = closed loop, R = open loop at R req/s (default 0,100,200,400)",
    )
    parser.add_argument("--duplicate-share", type=float, default=0.9, help="share of repeats (default 0.9)")
    parser.add_argument("--hot", type=int, default=5, help="callbacks that are repeated (default 5)")
    parser.add_argument("--queue-workers", type=int, default=2, help="qcluster workers (default 2)")
    parser.add_argument(
        "--queue-nice",
        type=int,
        default=10,
        help="CPU niceness of the qcluster (default 10: the workers take what the web tier leaves, as they "
        "would on machines of their own; 0 = compete)",
    )
    args = parser.parse_args(argv)
    harness.check_load_args(parser, args)
    try:
        args.loads = [float(load) for load in args.loads.split(",") if load.strip()]
    except ValueError:
        parser.error("--loads must be numbers, e.g. 0,100,200,400")
    if not args.loads or not all(0 <= load <= 2000 for load in args.loads):
        parser.error("--loads must be 0 to 2000 each")
    if not 0 <= args.duplicate_share < 1:
        parser.error("--duplicate-share must be in [0, 1)")
    if not 1 <= args.hot <= round(args.requests * args.duplicate_share):
        parser.error("--hot must be at least 1 and at most the number of repeated requests")
    return args


def seed_initiated_payments(count: int, *, first: int) -> list[str]:
    """`count` M-Pesa payments in `initiated`, one pending order each, bulk inserted: what an accepted STK push
    leaves behind. Their next status query is an hour away, so only the callbacks settle them."""
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from orders.models import Customer, Order, OrderStatus
    from payments.models import Payment, PaymentStatus

    owner, _ = get_user_model().objects.get_or_create(username="bench-storefront")
    now = timezone.now()
    checkout_ids = []
    for start in range(first, first + count, SEED_BATCH):
        numbers = range(start, min(start + SEED_BATCH, first + count))
        customers = Customer.objects.bulk_create(
            Customer(full_name=f"Bench Shopper {n}", phone=_phone(n)) for n in numbers
        )
        orders = Order.objects.bulk_create(
            Order(
                reference=f"S{n:011d}",
                owner=owner,
                customer=customer,
                status=OrderStatus.PENDING,
                payment_method="mpesa",
                total=AMOUNT_KES,
                contact_name=customer.full_name,
                contact_phone=customer.phone,
                shipping_full_name=customer.full_name,
                shipping_address="1 Loop Rd",
                shipping_city="Nairobi",
            )
            for n, customer in zip(numbers, customers, strict=True)
        )
        Payment.objects.bulk_create(
            Payment(
                order=order,
                method="mpesa",
                status=PaymentStatus.INITIATED,
                amount=AMOUNT_KES,
                phone=_phone(n),
                account_reference=order.reference,
                merchant_request_id=f"29115-{n}-1",
                checkout_request_id=_checkout_id(n),
                initiated_at=now,
                next_query_at=now + dt.timedelta(hours=1),
            )
            for n, order in zip(numbers, orders, strict=True)
        )
        checkout_ids += [_checkout_id(n) for n in numbers]
    return checkout_ids


def _phone(number: int) -> str:
    return f"254711{number:06d}"


def _checkout_id(number: int) -> str:
    return f"ws_CO_BENCH{number:010d}"


def success_callback(checkout_request_id: str, *, receipt: str, phone: str) -> bytes:
    """One success callback in Safaricom's production shape (Balance without a Value), as wire bytes."""
    body = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": checkout_request_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": float(AMOUNT_KES)},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20251127102115},
                        {"Name": "PhoneNumber", "Value": int(phone)},
                    ]
                },
            }
        }
    }
    return json.dumps(body).encode()


HEADERS = {"Content-Type": "application/json", "User-Agent": "Apache-HttpClient/4.5.5 (bench)"}


def callback_for(checkout_id: str) -> bytes:
    number = int(checkout_id.removeprefix("ws_CO_BENCH"))
    return success_callback(checkout_id, receipt=f"BNC{number:07d}", phone=_phone(number))


def distinct_calls(checkout_ids: list[str], path: str) -> list[harness.Call]:
    return [harness.Call("POST", path, callback_for(checkout_id), HEADERS) for checkout_id in checkout_ids]


def duplicate_calls(
    checkout_ids: list[str], *, requests_count: int, hot: int, path: str
) -> list[harness.Call]:
    """The shuffled storm: one call per distinct payment, the rest byte-identical copies of the hot ones."""
    bodies = [callback_for(checkout_id) for checkout_id in checkout_ids]
    hot_bodies, distinct_bodies = bodies[:hot], bodies[hot:]
    copies = requests_count - len(distinct_bodies)
    calls = [harness.Call("POST", path, body, HEADERS) for body in distinct_bodies]
    calls += [harness.Call("POST", path, hot_bodies[n % hot], HEADERS) for n in range(copies)]
    random.Random(39).shuffle(calls)  # fixed seed: the same interleaving every run
    return calls


def wait_until_applied(timeout: float) -> tuple[float, int]:
    """Seconds waited until no stored callback is left to apply (bounded), and how many are left."""
    from django.db.models import Q

    from payments.models import CallbackInbox, InboxStatus

    started = time.monotonic()
    left = 0
    while time.monotonic() - started < timeout:
        left = CallbackInbox.objects.filter(Q(status=InboxStatus.RECEIVED)).count()
        if left == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - started, left


def verify(checkout_ids: list[str], *, repeats: int, all_delivered: bool) -> bool:
    """Exactly one result_applied event per payment, whatever the number of copies; prints what it found."""
    from django.db.models import Count, Q

    from payments.models import CallbackInbox, EventKind, Payment, PaymentEvent, PaymentStatus

    payments = Payment.objects.filter(checkout_request_id__in=checkout_ids).annotate(
        applied=Count("events", filter=Q(events__kind=EventKind.RESULT_APPLIED))
    )
    applied = Counter(payment.applied for payment in payments)
    statuses = Counter(payment.status for payment in payments)
    once, never = applied.get(1, 0), applied.get(0, 0)
    more = sum(n for times, n in applied.items() if times > 1)
    duplicates = PaymentEvent.objects.filter(kind=EventKind.DUPLICATE_RESULT).count()
    inbox = Counter(dict(CallbackInbox.objects.values_list("status").annotate(n=Count("id"))))
    bodies = CallbackInbox.objects.values("body_sha256").distinct().count()
    counted = sum(CallbackInbox.objects.values_list("duplicates", flat=True))

    print(
        f"exactly-once: {once}/{len(checkout_ids)} payments have exactly one result_applied event; "
        f"{more} have more, {never} have none; {statuses.get(PaymentStatus.COMPLETED, 0)} completed"
    )
    print(
        f"repeats sent: {repeats}; recorded as duplicate_result events: {duplicates}; "
        f"counted on inbox rows: {counted}"
    )
    print(
        f"inbox: {sum(inbox.values())} rows for {bodies} distinct bodies "
        f"({', '.join(f'{status} {n}' for status, n in sorted(inbox.items()))})"
    )
    ok = more == 0 and (never == 0 and duplicates == repeats or not all_delivered)
    if not ok:
        print(
            "FAILED: a payment was applied more than once, or a delivered callback or repeat was not recorded"
        )
    return ok


def load_label(load: float) -> str:
    return "closed" if not load else f"{load:g}/s"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    distinct_share = args.requests - round(args.requests * args.duplicate_share)
    with harness.scratch_database(
        postgres=args.postgres, redis=args.redis, keep=args.keep, **harness.backend_overrides(args)
    ) as (workdir, env):
        from django.conf import settings
        from django.urls import reverse

        from payments.callback_urls import callback_token

        path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
        seeding = time.monotonic()
        plans = []
        seeded: list[str] = []
        for load in args.loads:
            distinct_ids = seed_initiated_payments(args.requests, first=len(seeded))
            seeded += distinct_ids
            storm_ids = seed_initiated_payments(args.hot + distinct_share, first=len(seeded))
            seeded += storm_ids
            storm = duplicate_calls(storm_ids, requests_count=args.requests, hot=args.hot, path=path)
            plans.append((load, distinct_calls(distinct_ids, path), storm))
        repeats = len(args.loads) * (args.requests - distinct_share - args.hot)
        print(f"{len(seeded)} initiated payments seeded in {time.monotonic() - seeding:.1f} s")
        apply_mode = settings.MPESA_CALLBACK_APPLY

        def acked(response) -> bool:
            return response.status_code == 200 and response.json() == ACK

        baseline_calls = [harness.Call("GET", "/api/v1/products")] * args.requests
        warm = dict(concurrency=args.concurrency, max_seconds=10.0)  # closed loop whatever the load
        rows = []
        with (
            harness.gunicorn("app", env, workdir, workers=args.workers, threads=args.threads) as app,
            harness.qcluster(env, workdir, workers=args.queue_workers, nice=args.queue_nice)
            if apply_mode == "worker"
            else _nothing(),
        ):
            # Warm every worker thread (imports, URL resolver, DB connection) outside the measurement; a
            # wrong token loads the callback view without touching the database.
            harness.run_load("warm-up", app.base_url, baseline_calls[:200], **warm)
            wrong_token = harness.Call(
                "POST", "/hooks/daraja/stk/not-the-token/", plans[0][1][0].body, HEADERS
            )
            harness.run_load("warm-up", app.base_url, [wrong_token] * 20, **warm, accept=lambda r: True)

            results = []
            for load, distinct, storm in plans:
                common = dict(concurrency=args.concurrency, max_seconds=args.max_seconds, rate=load)
                label = load_label(load)
                baseline = harness.run_load(
                    f"{label} baseline GET products", app.base_url, baseline_calls, **common
                )
                acks = harness.run_load(
                    f"{label} distinct callbacks", app.base_url, distinct, **common, accept=acked
                )
                dups = harness.run_load(
                    f"{label} 90% duplicates", app.base_url, storm, **common, accept=acked
                )
                results += [baseline, acks, dups]
                rows.append((load, baseline, acks, dups))
                time.sleep(1)  # let the queue catch up between loads
            waited, left = wait_until_applied(DRAIN_TIMEOUT)

        print()
        print(
            harness.load_settings_line(
                requests_count=args.requests,
                concurrency=args.concurrency,
                rate=0,
                workers=args.workers,
                threads=args.threads,
            ).replace("closed loop (as fast as answered)", f"loads {', '.join(map(load_label, args.loads))}")
        )
        worker = f"worker (qcluster, {args.queue_workers} workers, nice {args.queue_nice})"
        print(
            f"callbacks applied in the {worker if apply_mode == 'worker' else 'request'}; "
            f"storm: {args.duplicate_share:.0%} byte-identical repeats of {args.hot} hot callbacks"
        )
        harness.print_table(results)
        print()
        for _load, baseline, acks, dups in rows:
            for subject in (acks, dups):
                harness.print_ratio(subject, baseline)
        print()
        for load, baseline, acks, dups in rows:
            for subject in (acks, dups):
                p99 = subject.percentile(99)
                if not load:
                    ratio = subject.throughput / baseline.throughput if baseline.throughput else 0.0
                    verdict = "met" if ratio >= THROUGHPUT_TARGET else "NOT met"
                    print(
                        f"target {subject.label}: throughput >= {THROUGHPUT_TARGET:.0%} of baseline: {verdict} (x{ratio:.2f})"
                    )
                if load == TARGET_RATE:
                    verdict = "met" if p99 < OPEN_LOOP_P99_TARGET_MS else "NOT met"
                    print(
                        f"target {subject.label}: p99 < {OPEN_LOOP_P99_TARGET_MS:.0f} ms: {verdict} (p99 {p99:.1f} ms)"
                    )
                if subject is dups and load:
                    verdict = "met" if p99 < STORM_P99_TARGET_MS else "NOT met"
                    print(
                        f"target {subject.label}: p99 < {STORM_P99_TARGET_MS:.0f} ms (faults.md row 39): {verdict}"
                    )
        bad_statuses = {s for _, _, a, d in rows for s in (a.statuses | d.statuses)} - {200}
        if bad_statuses:
            print(f"callback HTTP statuses other than 200: {sorted(bad_statuses)}")
        print(
            f"every stored callback applied {waited:.1f} s after the last phase"
            if not left
            else f"{left} callbacks still unapplied after {waited:.0f} s"
        )
        all_delivered = all(r.errors == 0 and r.completed == r.planned for _, _, a, d in rows for r in (a, d))
        refused = sum(r.refused for _, _, a, d in rows for r in (a, d))
        ok = verify(seeded, repeats=repeats, all_delivered=all_delivered and not left) and refused == 0
    print(f"total {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


def _nothing():
    import contextlib

    return contextlib.nullcontext()


if __name__ == "__main__":
    sys.exit(main())
