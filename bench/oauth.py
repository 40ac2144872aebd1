"""OAuth token mints per 1,000 orders across 4 web processes and 2 qcluster workers: one per token lifetime.

    .venv/bin/python bench/oauth.py [--orders 1000] [--rate 10] [--token-seconds 20]

The app under gunicorn (`--web-workers` processes, default 4) and a real `manage.py qcluster` (`--cluster-workers`,
default 2) share one token through the cache (Redis with `--redis`, else the database cache), against the
built-in simulator in its own process, whose tokens live `--token-seconds` (SIMULATOR_TOKEN_SECONDS) so that one
run spans several lifetimes; minting a token invalidates the previous one, as on Daraja. `--orders` orders
arrive through `POST /api/v1/orders` at `--rate` a second, each a real STK push from a web process; a share of
them (`--silent-share`) pays with the simulator's number whose callback never comes, so the cluster's sweeper
asks Daraja about them (STK Query) with the same token.

The simulator counts every token it mints, with its time. A client that shares its token mints once per refresh
period (the token's life less a tenth of it, at most 5 minutes: payments.daraja.client.token_cache_seconds), so
over E seconds from the first mint at most floor(E / period) + 1 tokens; several processes minting when the
token expires (a stampede) show as mints seconds apart. Exit 1 when there are more mints than that, two mints
less than half a period apart, an order refused or a payment not settled exactly once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections import Counter

import harness
import settlement

SILENT_PHONE = "254700000404"  # the simulator's success whose callback is never sent (STK Query answers)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders (1,000)")
    parser.add_argument("--rate", type=float, default=10.0, help="orders/s, open loop (10)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (16)")
    parser.add_argument("--token-seconds", type=int, default=20, help="simulator token lifetime (20 s)")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn processes (4)")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn process (8)")
    parser.add_argument("--cluster-workers", type=int, default=2, help="qcluster workers (2)")
    parser.add_argument("--silent-share", type=float, default=0.2, help="orders settled by STK Query (0.2)")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="cap on the whole run (10)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (databases, server logs)")
    harness.add_backend_args(parser)
    args = parser.parse_args(argv)
    if not (1 <= args.orders <= 10_000 and 0.1 <= args.rate <= 200 and 1 <= args.concurrency <= 64):
        parser.error("--orders 1 to 10,000, --rate 0.1 to 200, --concurrency 1 to 64")
    if not 5 <= args.token_seconds <= 3600:
        parser.error("--token-seconds must be 5 to 3600")
    if not (1 <= args.web_workers <= 8 and 1 <= args.threads <= 32 and 1 <= args.cluster_workers <= 8):
        parser.error("--web-workers 1 to 8, --threads 1 to 32, --cluster-workers 1 to 8")
    if not (0 <= args.silent_share <= 1 and 1 <= args.max_minutes <= 60):
        parser.error("--silent-share 0 to 1, --max-minutes 1 to 60")
    return args


def order_calls(count: int, *, product_id: int, token: str, silent_share: float) -> list[harness.Call]:
    """Orders from new phone numbers; every (1/silent_share)-th one pays with the silent number."""
    silent_every = round(1 / silent_share) if silent_share else 0
    calls = []
    for n in range(count):
        phone = SILENT_PHONE if silent_every and n % silent_every == 0 else f"254744{n:06d}"
        body = {
            "items": [{"productId": product_id, "quantity": 1, "price": 10.00}],
            "shipping": {"fullName": "Bench Shopper", "address": "1 Loop Rd", "city": "Nairobi"},
            "payment": {"method": "mpesa", "phone": phone},
        }
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        calls.append(harness.Call("POST", "/api/v1/orders", json.dumps(body).encode(), headers))
    return calls


def wait_settled(order_ids: list[int], *, deadline: float) -> int:
    """Payments of these orders still `initiated` when all left it or the deadline passed."""
    from payments.models import Payment, PaymentStatus

    while True:
        waiting = Payment.objects.filter(order_id__in=order_ids, status=PaymentStatus.INITIATED).count()
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(1.0)


def verify(order_ids: list[int]) -> tuple[bool, str]:
    from django.db.models import Count, Q

    from payments.models import EventKind, EventSource, Payment

    payments = Payment.objects.filter(order_id__in=order_ids).annotate(
        applied=Count("events", filter=Q(events__kind=EventKind.RESULT_APPLIED)),
        by_query=Count(
            "events", filter=Q(events__kind=EventKind.RESULT_APPLIED, events__source=EventSource.QUERY)
        ),
    )
    statuses = Counter(payment.status for payment in payments)
    applied = Counter(payment.applied for payment in payments)
    by_query = sum(payment.by_query for payment in payments)
    ok = applied.get(1, 0) == len(order_ids) == len(payments)
    return ok, (
        f"payments {dict(statuses)}; applied exactly once: {applied.get(1, 0)} of {len(order_ids)} "
        f"({by_query} by the sweeper's STK Query)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settlement.stop_on_signals()
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    app_port, simulator_port = harness.free_port(), harness.free_port()
    simulator_url = f"http://{harness.LOOPBACK}:{simulator_port}"
    overrides = {
        "MPESA_BASE_URL": f"{simulator_url}/simulator/daraja",
        "MPESA_CALLBACK_BASE_URL": f"http://{harness.LOOPBACK}:{app_port}",
        "SIMULATOR_CALLBACK_DELAY": "1",
        "SIMULATOR_TOKEN_SECONDS": str(args.token_seconds),
        # The silent payments are asked about soon after their push (default: 30 s).
        "MPESA_FIRST_QUERY_DELAY": "5",
    }
    with harness.scratch_database(postgres=args.postgres, redis=args.redis, keep=args.keep, **overrides) as (
        workdir,
        env,
    ):
        from payments.daraja.client import token_cache_seconds

        simulator_env = settlement.simulator_env(env, workdir)
        harness.migrate_other_database(env, simulator_env["DATABASE_URL"])
        product_id, _owner_id, token = settlement.seed_catalogue()
        calls = order_calls(args.orders, product_id=product_id, token=token, silent_share=args.silent_share)
        collector = settlement.order_placement.OrderCollector()
        with (
            harness.gunicorn(
                "daraja-simulator", simulator_env, workdir, workers=1, threads=16, port=simulator_port
            ),
            harness.gunicorn(
                "app", env, workdir, workers=args.web_workers, threads=args.threads, port=app_port
            ) as app,
            settlement.qcluster(env, workdir, workers=args.cluster_workers, name="qcluster"),
        ):
            # Every web process up and answering (nothing here talks to Daraja).
            warm = [harness.Call("GET", "/api/v1/products")] * (20 * args.web_workers)
            harness.run_load("warm-up", app.base_url, warm, concurrency=args.concurrency, max_seconds=10)
            began = time.time()
            placed = harness.run_load(
                f"POST /api/v1/orders at {args.rate:g}/s",
                app.base_url,
                calls,
                concurrency=args.concurrency,
                rate=args.rate,
                max_seconds=max(1.0, min(args.orders / args.rate + 30, deadline - time.monotonic())),
                accept=collector,
            )
            waiting = wait_settled(collector.order_ids, deadline=deadline)
            ended = time.time()
            stats = settlement.simulator_stats(
                simulator_url, since=began, until=ended, apis=["oauth", "stk_push", "stk_query"]
            )
        settled_ok, summary = verify(collector.order_ids)

        lifetime = args.token_seconds
        period = token_cache_seconds(lifetime - 1)  # the simulator announces expires_in = lifetime - 1
        mints = sorted(stats["oauth"]["minted_at"])
        window = ended - mints[0] if mints else 0.0
        allowed = math.floor(window / period) + 1 if mints else 0
        gaps = [later - earlier for earlier, later in zip(mints, mints[1:], strict=False)]
        refused_tokens = {api: stats["apis"][api]["invalid_token"] for api in ("stk_push", "stk_query")}
        print()
        print(
            f"app: gunicorn {args.web_workers} workers x {args.threads} threads; qcluster {args.cluster_workers} "
            f"workers; {harness.backend_name()}; {os.cpu_count()} CPUs; simulator tokens live {lifetime} s "
            f"(expires_in {lifetime - 1}), the client renews them every {period} s"
        )
        harness.print_table([placed])
        print(
            f"Daraja calls: {stats['apis']['stk_push']['requests']} STK pushes, "
            f"{stats['apis']['stk_query']['requests']} STK Queries, {stats['apis']['oauth']['requests']} OAuth; "
            f"refused for an invalid token: {refused_tokens}"
        )
        print(f"orders: {summary}" + (f"; {waiting} still initiated at the cap" if waiting else ""))
        print(
            f"tokens minted: {len(mints)} over {window:.0f} s from the first mint = {window / lifetime:.1f} "
            f"token lifetimes, {window / period:.1f} renewal periods; at most {allowed} allowed; "
            f"{len(mints) / max(len(collector.order_ids), 1) * 1000:.1f} per 1,000 orders"
        )
        if gaps:
            print(
                f"seconds between mints: min {min(gaps):.1f}, median {sorted(gaps)[len(gaps) // 2]:.1f}, "
                f"max {max(gaps):.1f}"
            )
        no_stampede = len(mints) <= allowed and all(gap >= period / 2 for gap in gaps)
        orders_ok = placed.refused == 0 and placed.errors == 0 and placed.completed == args.orders
        if not no_stampede:
            print("FAILED: more than one token per renewal period (several processes minted at once)")
        if not orders_ok:
            print(f"FAILED: orders refused or lost: {dict(placed.statuses)}, {placed.errors} errors")
        if not settled_ok:
            print("FAILED: a payment was not settled exactly once")
        ok = no_stampede and orders_ok and settled_ok and waiting == 0
    print(f"total {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
