"""`POST /api/v1/orders` with the STK push to the built-in Daraja simulator, against a baseline in the same run.

    .venv/bin/python bench/order_placement.py [--requests 300] [--concurrency 8] [--rate 0]

A scratch SQLite project in a temp dir and two gunicorn servers on loopback: the app, and the same code
serving only as the Daraja simulator, in its own process with its own scratch database (it keeps its state
in the database cache), so that Daraja's writes do not queue for the app's SQLite lock. Every order is an M-Pesa order from its own phone
number with its own Idempotency-Key, so each one makes a real STK push over HTTP; the simulator posts the
success callback back to the app `--callback-delay` seconds later, as Daraja does.

Phases: baseline (`GET /api/v1/products`, same count and concurrency), then the orders. Afterwards it waits
(bounded) for the callbacks and checks that every order placed was confirmed by exactly one applied result.
Exit status 1 only when an order was refused or that check fails; latency is reported, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal

import harness

CALLBACK_WAIT_MARGIN = 10.0  # seconds allowed after the last callback is due


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.load_parser(
        __doc__.split("\n\n")[0], requests=300, requests_max=5_000, concurrency=8, server="app gunicorn"
    )
    parser.add_argument(
        "--callback-delay", type=float, default=1.0, help="simulator's delay before a callback (default 1 s)"
    )
    args = parser.parse_args(argv)
    harness.check_load_args(parser, args)
    if not 0 <= args.callback_delay <= 10:
        parser.error("--callback-delay must be 0 to 10")
    return args


def seed() -> tuple[int, str]:
    """One product and one API user; returns (product id, raw bearer token)."""
    from backoffice.services import api_token_issue
    from orders.models import Product

    product = Product.objects.create(sku="BENCH-1", name="Bench item", price=Decimal("10.00"))
    _token, raw, _ = api_token_issue(username="bench-shopper")
    return product.pk, raw


def order_calls(count: int, *, product_id: int, token: str, first_phone: int) -> list[harness.Call]:
    calls = []
    for n in range(count):
        body = {
            "items": [{"productId": product_id, "quantity": 1, "price": 10.00}],
            "shipping": {"fullName": "Bench Shopper", "address": "1 Loop Rd", "city": "Nairobi"},
            # Any number the simulator does not list succeeds; a new one per order, like real shoppers.
            "payment": {"method": "mpesa", "phone": f"254722{first_phone + n:06d}"},
        }
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        calls.append(harness.Call("POST", "/api/v1/orders", json.dumps(body).encode(), headers))
    return calls


class OrderCollector:
    """`accept` for the order phase: 201 with a pushed payment; remembers the order ids (thread-safe).

    `completed` is as good as `initiated`: the callback outran the commit of the CheckoutRequestID, waited in
    the inbox as unmatched, and was applied by the push (faults 5, 14).
    """

    def __init__(self) -> None:
        self.order_ids: list[int] = []
        self.payment_statuses: Counter = Counter()
        self._lock = threading.Lock()

    def __call__(self, response) -> bool:
        if response.status_code != 201:
            return False
        created = response.json()
        with self._lock:
            self.order_ids.append(created["order"]["id"])
            self.payment_statuses[created["payment"]["status"]] += 1
        return created["payment"]["status"] in ("initiated", "completed")


def wait_for_callbacks(order_ids: list[int], *, timeout: float) -> tuple[float, int]:
    """(seconds waited, payments still `initiated`): until every payment left `initiated`, or `timeout`."""
    from payments.models import Payment, PaymentStatus

    started = time.monotonic()
    while True:
        waiting = Payment.objects.filter(order_id__in=order_ids, status=PaymentStatus.INITIATED).count()
        if not waiting or time.monotonic() - started > timeout:
            return time.monotonic() - started, waiting
        time.sleep(0.5)


def verify(order_ids: list[int]) -> bool:
    """Each order confirmed by exactly one applied result; a callback stuck as unmatched is reported apart.

    No django-q cluster runs here, so nothing sweeps the inbox: a callback that lost the race with the commit
    of its CheckoutRequestID and stayed `unmatched` waits for the inbox sweeper (INBOX_RETRY_AFTER) in real
    life. That is a delay, not a double payment, so it is printed as a warning and does not fail the run.
    """
    from django.db.models import Count, Q

    from orders.models import Order, OrderStatus
    from payments.models import CallbackInbox, EventKind, InboxStatus, Payment

    payments = Payment.objects.filter(order_id__in=order_ids).annotate(
        applied=Count("events", filter=Q(events__kind=EventKind.RESULT_APPLIED))
    )
    applied = Counter(payment.applied for payment in payments)
    statuses = Counter(payment.status for payment in payments)
    confirmed = Order.objects.filter(pk__in=order_ids, status=OrderStatus.CONFIRMED).count()
    once = applied.get(1, 0)
    more = sum(n for times, n in applied.items() if times > 1)
    early = CallbackInbox.objects.filter(payment__order_id__in=order_ids, attempts__gt=1).count()
    stuck = CallbackInbox.objects.filter(
        status=InboxStatus.UNMATCHED,
        correlation_id__in=payments.values("checkout_request_id"),
    ).count()
    print(
        f"callbacks: {confirmed}/{len(order_ids)} orders confirmed; {once} payments with exactly one "
        f"result_applied event, {more} with more; payment statuses {dict(statuses)}"
    )
    print(
        f"{early} callbacks arrived before their CheckoutRequestID was committed and were applied from the inbox"
    )
    if stuck:
        print(
            f"WARNING: {stuck} callbacks stayed unmatched although their payment exists (they lost the race "
            "with the commit of the CheckoutRequestID); only the inbox sweeper would apply them"
        )
    ok = more == 0 and once + stuck == len(order_ids) == len(payments)
    if not ok:
        print("FAILED: an order was not confirmed by exactly one applied result")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    app_port, simulator_port = harness.free_port(), harness.free_port()
    overrides = {
        "MPESA_BASE_URL": f"http://{harness.LOOPBACK}:{simulator_port}/simulator/daraja",
        "MPESA_CALLBACK_BASE_URL": f"http://{harness.LOOPBACK}:{app_port}",
        "SIMULATOR_CALLBACK_DELAY": str(args.callback_delay),
    }
    overrides |= harness.backend_overrides(args)
    with harness.scratch_database(postgres=args.postgres, redis=args.redis, keep=args.keep, **overrides) as (
        workdir,
        env,
    ):
        simulator_env = {**env, "DATABASE_URL": f"sqlite:///{workdir / 'simulator.sqlite3'}"}
        harness.migrate_other_database(env, simulator_env["DATABASE_URL"])
        product_id, token = seed()
        collector = OrderCollector()
        baseline_calls = [harness.Call("GET", "/api/v1/products")] * args.requests
        warm_orders = order_calls(2 * args.workers, product_id=product_id, token=token, first_phone=0)
        orders = order_calls(args.requests, product_id=product_id, token=token, first_phone=len(warm_orders))
        load = dict(concurrency=args.concurrency, max_seconds=args.max_seconds, rate=args.rate)
        warm = dict(concurrency=args.concurrency, max_seconds=10.0)  # closed loop whatever --rate says

        from django.conf import settings

        worker_mode = settings.MPESA_CALLBACK_APPLY == "worker"
        with (
            harness.gunicorn(
                "daraja-simulator", simulator_env, workdir, workers=1, threads=8, port=simulator_port
            ),
            harness.gunicorn(
                "app", env, workdir, workers=args.workers, threads=args.threads, port=app_port
            ) as app,
            # With MPESA_CALLBACK_APPLY=worker (the default with Redis) a task applies each stored callback.
            harness.qcluster(env, workdir, workers=2, nice=10) if worker_mode else contextlib.nullcontext(),
        ):
            # Warm the workers and mint the OAuth token outside the measurement.
            harness.run_load("warm-up", app.base_url, baseline_calls[:200], **warm)
            harness.run_load("warm-up", app.base_url, warm_orders, **warm, accept=lambda r: True)

            baseline = harness.run_load("baseline GET /api/v1/products", app.base_url, baseline_calls, **load)
            placed = harness.run_load(
                "POST /api/v1/orders (STK push)", app.base_url, orders, **load, accept=collector
            )
            waited, waiting = wait_for_callbacks(
                collector.order_ids, timeout=args.callback_delay + CALLBACK_WAIT_MARGIN
            )

        print()
        print(
            harness.load_settings_line(
                requests_count=args.requests,
                concurrency=args.concurrency,
                rate=args.rate,
                workers=args.workers,
                threads=args.threads,
            )
        )
        print(
            f"Daraja: built-in simulator in its own gunicorn (1 worker x 8 threads), callback delay {args.callback_delay:g} s; "
            f"callbacks applied in the {'worker (qcluster, 2 workers, nice 10)' if worker_mode else 'request'}"
        )
        harness.print_table([baseline, placed])
        harness.print_ratio(placed, baseline)
        if placed.statuses.keys() - {201}:
            print(f"order HTTP statuses: {dict(placed.statuses)}")
        print(f"payment status in the order responses: {dict(collector.payment_statuses)}")
        if waiting:
            print(f"{waiting} payments still initiated {waited:.1f} s after the last order answered")
        else:
            print(f"all callbacks applied {waited:.1f} s after the last order answered")
        ok = verify(collector.order_ids) and placed.refused == 0 and placed.errors == 0
    print(f"total {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
