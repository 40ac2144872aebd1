"""Settlement throughput: M-Pesa attempts whose callbacks never come, settled by the status sweeper's STK
Queries against a slow, rate-limited Daraja, with 2 and then 4 qcluster workers; new orders meanwhile.

    .venv/bin/python bench/settlement.py [--attempts 10000] [--latency-ms 300] [--rate-limit 10] [--workers 2,4]

Per worker count: `--attempts` orders are placed through `orders.services.order_place` (in this process, the STK
push going to the built-in simulator over HTTP) with their callback URL pointed at a closed port, so Daraja
decides every outcome (7 in 10 paid, the rest cancelled, unreachable or short of funds, by the simulator's
test numbers) and no callback ever arrives. The simulator is then restarted answering STK Query
`--latency-ms` late and refusing more than `--rate-limit` requests a second per API with Daraja's Spike
Arrest error; the app and its cluster run with MPESA_RATE_LIMIT_PER_SECOND at the same figure. A real
`manage.py qcluster` with Q_WORKERS workers runs the scheduled sweeper until every attempt is settled (or
`--max-minutes` passes), while `--orders` new orders are placed through `POST /api/v1/orders` at
`--order-rate`; the same orders, before any cluster runs, are the baseline.

Checks (exit 1 when one fails): every settled attempt ended as the simulator decided, with exactly one applied
result; the simulator never refused a request (Spike Arrest) nor counted more than the limit in any second;
every order was accepted. Time and rates are reported, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import harness
import order_placement
import requests

CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens on the discard port: every callback is lost
# The simulator's test numbers (payments/simulator/README.md): which STK outcome each attempt gets.
FAILURES = {
    "254700000032": ("1032", "failed"),  # cancelled by user
    "254700000037": ("1037", "failed"),  # unreachable
    "254700000001": ("1", "failed"),  # insufficient funds
}
SUCCESS = ("0", "completed")
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 60.0
CLUSTER_STOP_TIMEOUT = 30.0


# --- processes ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def qcluster(env: dict[str, str], workdir: Path, *, workers: int, name: str) -> Iterator[subprocess.Popen]:
    """`manage.py qcluster` with `workers` workers; stopped (SIGTERM, then its whole group) on exit."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own venv's python, fixed arguments
            [sys.executable, "manage.py", "qcluster"],
            cwd=harness.ROOT,
            env={**env, "Q_WORKERS": str(workers)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=CLUSTER_STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=harness.STOP_TIMEOUT)


def simulator_env(env: dict[str, str], workdir: Path, **settings: str) -> dict[str, str]:
    """The simulator's own process: its own SQLite database (state in its database cache) unless Redis holds
    the cache, room for every record it keeps, and `settings`."""
    return {
        **env,
        "DATABASE_URL": f"sqlite:///{workdir / 'simulator.sqlite3'}",
        "CACHE_MAX_ENTRIES": "5000000",
        "DATABASE_CONN_MAX_AGE": "0",
        **settings,
    }


def simulator_stats(base_url: str, *, since: float, until: float, apis: list[str]) -> dict:
    """What the simulator counted between two moments (epoch seconds)."""
    response = requests.get(
        base_url + "/simulator/daraja/stats",
        params={"since": math.floor(since), "until": math.ceil(until), "api": apis},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


# --- seeding ------------------------------------------------------------------------------------------
def expected_outcome(n: int) -> tuple[str, str, str]:
    """(phone, result code, final status) of the n-th seeded attempt: 7 in 10 paid, 1 in 10 of each failure."""
    kind = n % 10
    if kind < 7:
        return f"254733{n:06d}", *SUCCESS
    phone = list(FAILURES)[kind - 7]
    return phone, *FAILURES[phone]


@dataclass
class Seeded:
    payment_ids: list[int] = field(default_factory=list)
    expected: dict[int, tuple[str, str]] = field(default_factory=dict)  # payment id -> (result code, status)
    refused: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def id_range(self) -> tuple[int, int]:
        return min(self.payment_ids), max(self.payment_ids)


def seed_attempts(count: int, *, first: int, product_id: int, owner_id: int, threads: int) -> Seeded:
    """`count` orders through order_place with a real STK push each; no callback will ever come back."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import override_settings

    from orders.services import ItemRequest, Shipping, order_place
    from payments.models import PaymentStatus

    owner = get_user_model().objects.get(pk=owner_id)
    seeded = Seeded()
    lock = threading.Lock()
    numbers = iter(range(first, first + count))

    def place() -> None:
        try:
            while True:
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                phone, code, status = expected_outcome(n)
                _order, payment, _created = order_place(
                    owner=owner,
                    items=[ItemRequest(product_id=product_id, quantity=1)],
                    shipping=Shipping(full_name="Bench Shopper", address="1 Loop Rd", city="Nairobi"),
                    payment_method="mpesa",
                    payment_phone=phone,
                )
                with lock:
                    if payment.status == PaymentStatus.INITIATED:
                        seeded.payment_ids.append(payment.pk)
                        seeded.expected[payment.pk] = (code, status)
                    else:
                        seeded.refused[f"{payment.status}: {payment.result_desc[:120]}"] += 1
        finally:
            connection.close()

    started = time.monotonic()
    # The callbacks go nowhere; this process paces nothing (the simulator is not limiting while it seeds).
    with override_settings(MPESA_CALLBACK_BASE_URL=CLOSED_PORT_URL, MPESA_RATE_LIMIT_PER_SECOND=0):
        workers = [threading.Thread(target=place, name=f"seed-{n}", daemon=True) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    seeded.seconds = time.monotonic() - started
    return seeded


# --- settling -----------------------------------------------------------------------------------------
STATUS_SWEEPER = "payments-status-sweeper"  # payments/schedules.py
DRAIN_CAP_SECONDS = 20 * 60


def status_sweeper_pause(paused: bool) -> None:
    """Pause the sweeper's schedule (repeats = 0, as an operator would in the admin) or run it now and on."""
    from django.utils import timezone
    from django_q.models import Schedule

    changes = {"repeats": 0} if paused else {"repeats": -1, "next_run": timezone.now()}
    if not Schedule.objects.filter(name=STATUS_SWEEPER).update(**changes):
        raise RuntimeError(f"no schedule named {STATUS_SWEEPER}")


def between_phases() -> int:
    """Before seeding: the sweeper paused, and the tasks a previous phase's cluster left queued dropped (its
    queued sweeps would settle the next phase's attempts before its clock starts); returns how many."""
    from django_q.brokers import get_broker

    status_sweeper_pause(True)
    broker = get_broker()
    left = broker.queue_size()
    broker.purge_queue()
    return left


def drain_queue(cluster: subprocess.Popen, *, label: str) -> float:
    """Wait until the task queue is empty (the notifications the seeded orders queued); returns seconds."""
    from django_q.brokers import get_broker

    broker = get_broker()
    started = time.monotonic()
    empty_polls = 0
    while empty_polls < 3 and time.monotonic() - started < DRAIN_CAP_SECONDS:
        if cluster.poll() is not None:
            raise RuntimeError(f"qcluster exited with {cluster.returncode}")
        queued = broker.queue_size()
        empty_polls = empty_polls + 1 if not queued else 0
        time.sleep(POLL_SECONDS)
    print(
        f"  {label}: the queue the seeding left was drained in {time.monotonic() - started:.0f} s", flush=True
    )
    return time.monotonic() - started


def still_initiated(seeded: Seeded) -> int:
    from payments.models import Payment, PaymentStatus

    low, high = seeded.id_range
    return Payment.objects.filter(pk__gte=low, pk__lte=high, status=PaymentStatus.INITIATED).count()


@dataclass
class Settlement:
    workers: int
    attempts: int
    settled: int = 0
    seconds: float = 0.0  # from the sweeper's start to the last attempt settled (or the cap)
    first_settled_after: float = math.nan
    capped: bool = False
    started_epoch: float = 0.0
    ended_epoch: float = 0.0
    orders: harness.LoadResult | None = None
    stats: dict = field(default_factory=dict)

    @property
    def settle_rate(self) -> float:
        return self.settled / self.seconds if self.seconds else 0.0


def settle(
    seeded: Seeded,
    *,
    env: dict[str, str],
    workdir: Path,
    workers: int,
    cap_seconds: float,
    order_load,
) -> Settlement:
    """Run the cluster until every seeded attempt left `initiated` (or the cap); the order load runs meanwhile,
    from the first settled attempt on.

    The clock starts when the status sweeper is scheduled: first the cluster works off, with the sweeper paused
    since before the seeding, the notifications the seeded orders queued (in real life they went out as the
    orders came in).
    """
    result = Settlement(workers=workers, attempts=len(seeded.payment_ids))
    loader: threading.Thread | None = None
    with qcluster(env, workdir, workers=workers, name=f"qcluster-{workers}") as cluster:
        drain_queue(cluster, label=f"{workers} workers")
        status_sweeper_pause(False)
        started = time.monotonic()
        result.started_epoch = time.time()
        last_progress, last_settled = started, 0
        while True:
            time.sleep(POLL_SECONDS)
            if cluster.poll() is not None:
                raise RuntimeError(f"qcluster exited with {cluster.returncode}; see {workdir}")
            remaining = still_initiated(seeded)
            now = time.monotonic()
            result.settled = result.attempts - remaining
            if result.settled and math.isnan(result.first_settled_after):
                result.first_settled_after = now - started
                loader = threading.Thread(target=lambda: setattr(result, "orders", order_load()), daemon=True)
                loader.start()
            if now - last_progress >= PROGRESS_SECONDS:
                rate = (result.settled - last_settled) / (now - last_progress)
                print(
                    f"  {workers} workers, {now - started:5.0f} s: {result.settled:,} of {result.attempts:,} "
                    f"settled ({rate:.1f}/s over the last minute)",
                    flush=True,
                )
                last_progress, last_settled = now, result.settled
            if not remaining:
                result.seconds = now - started
                break
            if now - started >= cap_seconds:
                result.seconds, result.capped = now - started, True
                break
        if loader is not None:
            loader.join()
        result.ended_epoch = time.time()
    return result


def verify(seeded: Seeded) -> tuple[bool, str]:
    """Every settled attempt ended as the simulator decided, by exactly one applied result."""
    from django.db.models import Count, Q

    from payments.models import EventKind, Payment, PaymentStatus

    low, high = seeded.id_range
    rows = (
        Payment.objects.filter(pk__gte=low, pk__lte=high)
        .exclude(status=PaymentStatus.INITIATED)
        .annotate(
            applied=Count("events", filter=Q(events__kind=EventKind.RESULT_APPLIED)),
            unanswered=Count("events", filter=Q(events__kind=EventKind.QUERY_FAILED)),
        )
        .values_list("pk", "status", "result_code", "applied", "unanswered")
    )
    wrong, twice, unanswered, statuses = 0, 0, 0, Counter()
    for pk, status, result_code, applied, failed_queries in rows:
        if pk not in seeded.expected:  # its push was not accepted: not one of the attempts in flight
            continue
        statuses[status] += 1
        expected_code, expected_status = seeded.expected[pk]
        wrong += (status, result_code) != (expected_status, expected_code)
        twice += applied != 1
        unanswered += failed_queries
    ok = wrong == 0 and twice == 0
    summary = (
        f"statuses {dict(statuses)}; {wrong} not as the simulator decided; {twice} not applied exactly once; "
        f"{unanswered} STK Queries unanswered (busy) on the way"
    )
    return ok, summary


# --- the run ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=10_000, help="attempts per worker count (10,000)")
    parser.add_argument("--latency-ms", type=int, default=300, help="STK Query latency (300 ms)")
    parser.add_argument("--rate-limit", type=int, default=10, help="Daraja requests/s per API (10)")
    parser.add_argument("--workers", default="2,4", help="qcluster worker counts, in order (2,4)")
    parser.add_argument("--orders", type=int, default=300, help="orders per order phase (300)")
    parser.add_argument("--order-rate", type=float, default=5.0, help="orders/s, open loop (5)")
    parser.add_argument("--order-concurrency", type=int, default=8, help="client threads for orders (8)")
    parser.add_argument("--seed-threads", type=int, default=8, help="threads placing the attempts (8)")
    parser.add_argument("--max-minutes", type=float, default=40.0, help="cap per worker count (40)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (databases, server logs)")
    harness.add_backend_args(parser)
    args = parser.parse_args(argv)
    try:
        args.worker_counts = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error("--workers is a comma-separated list of numbers, e.g. 2,4")
    if not 1 <= args.attempts <= 50_000:
        parser.error("--attempts must be 1 to 50,000")
    if not all(1 <= n <= 8 for n in args.worker_counts):
        parser.error("--workers: 1 to 8 workers each")
    if not (1 <= args.rate_limit <= 200 and 0 <= args.latency_ms <= 5000):
        parser.error("--rate-limit must be 1 to 200 and --latency-ms 0 to 5000")
    if not (1 <= args.orders <= 5_000 and 0.1 <= args.order_rate <= 100):
        parser.error("--orders must be 1 to 5,000 and --order-rate 0.1 to 100")
    if not 1 <= args.max_minutes <= 180:
        parser.error("--max-minutes must be 1 to 180")
    return args


def seed_catalogue() -> tuple[int, int, str]:
    """One product, the storefront's user and its API token: (product id, user id, raw bearer token)."""
    from django.contrib.auth import get_user_model

    from backoffice.services import api_token_issue
    from orders.models import Product

    product = Product.objects.create(sku="BENCH-1", name="Bench item", price=Decimal("10.00"))
    _token, raw, _ = api_token_issue(username="bench-shopper")
    owner = get_user_model().objects.get(username="bench-shopper")
    return product.pk, owner.pk, raw


def print_report(args, baseline: harness.LoadResult, runs: list[Settlement], seeding: list[Seeded]) -> None:
    latency = args.latency_ms / 1000
    print()
    print(
        f"Daraja (simulator): STK Query {args.latency_ms} ms, {args.rate_limit} requests/s per API "
        f"(Spike Arrest past it); app and cluster: MPESA_RATE_LIMIT_PER_SECOND={args.rate_limit}; "
        f"{harness.backend_name()}; {os.cpu_count()} CPUs"
    )
    for count, seeded in zip(args.worker_counts, seeding, strict=False):
        print(
            f"seeding for {count} workers: {len(seeded.payment_ids):,} attempts in {seeded.seconds:.0f} s "
            f"({len(seeded.payment_ids) / seeded.seconds:.0f}/s)"
            + (f"; refused {dict(seeded.refused)}" if seeded.refused else "")
        )
    header = (
        f"{'workers':>7} {'attempts':>8} {'settled':>8} {'seconds':>8} {'settled/s':>9} {'bound/s':>7} "
        f"{'queries':>8} {'peak/s':>6} {'refused':>7} {'first s':>7}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        query = run.stats["apis"]["stk_query"]
        bound = min(args.rate_limit, run.workers / latency) if latency else args.rate_limit
        print(
            f"{run.workers:>7} {run.attempts:>8,} {run.settled:>8,} {run.seconds:>8.0f} "
            f"{run.settle_rate:>9.2f} {bound:>7.1f} {query['requests']:>8,} {query['peak_per_second']:>6} "
            f"{query['rejected']:>7} {run.first_settled_after:>7.0f}" + ("  (capped)" if run.capped else "")
        )
    print(
        "bound/s: min(rate limit, workers / latency), one STK Query per attempt; seconds and first s: from "
        "the moment the sweeper's schedule is due (the cluster's scheduler looks every 30 s) to the last and "
        "the first settled attempt"
    )
    print()
    orders = [baseline] + [run.orders for run in runs if run.orders is not None]
    harness.print_table(orders)
    for run in runs:
        if run.orders is not None:
            harness.print_ratio(run.orders, baseline)


def stop_on_signals() -> None:
    """SIGTERM and SIGINT (even when started in the background, where SIGINT is ignored) unwind the run, so
    every server and cluster it started is stopped and the scratch databases are dropped."""

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    started = time.monotonic()
    app_port, simulator_port = harness.free_port(), harness.free_port()
    simulator_url = f"http://{harness.LOOPBACK}:{simulator_port}"
    overrides = {
        "MPESA_BASE_URL": f"{simulator_url}/simulator/daraja",
        "MPESA_CALLBACK_BASE_URL": f"http://{harness.LOOPBACK}:{app_port}",
        "SIMULATOR_CALLBACK_DELAY": "1",
        "MPESA_RATE_LIMIT_PER_SECOND": str(args.rate_limit),
        # The scheduled statement pull (statements.py measures it) would read every seeded payment back.
        "MPESA_PULL_TRANSACTIONS_ENABLED": "false",
    }
    ok = True
    with harness.scratch_database(postgres=args.postgres, redis=args.redis, keep=args.keep, **overrides) as (
        workdir,
        env,
    ):
        unlimited = simulator_env(env, workdir)
        limited = simulator_env(
            env,
            workdir,
            SIMULATOR_QUERY_LATENCY_MS=str(args.latency_ms),
            SIMULATOR_RATE_LIMIT_PER_SECOND=str(args.rate_limit),
        )
        harness.migrate_other_database(env, unlimited["DATABASE_URL"])
        product_id, owner_id, token = seed_catalogue()
        simulator = dict(workers=1, threads=16, port=simulator_port)
        order_calls = order_placement.order_calls
        phone_block = 0

        def orders_phase(label: str) -> harness.LoadResult:
            nonlocal phone_block
            phone_block += 1
            calls = order_calls(
                args.orders, product_id=product_id, token=token, first_phone=phone_block * 10_000
            )
            collector = order_placement.OrderCollector()
            return harness.run_load(
                label,
                app.base_url,
                calls,
                concurrency=args.order_concurrency,
                rate=args.order_rate,
                max_seconds=args.orders / args.order_rate + 30,
                accept=collector,
            )

        runs: list[Settlement] = []
        seeding: list[Seeded] = []
        baseline: harness.LoadResult | None = None
        with harness.gunicorn("app", env, workdir, workers=2, threads=8, port=app_port) as app:
            for index, workers in enumerate(args.worker_counts):
                dropped = between_phases()
                if dropped:
                    print(f"dropped {dropped:,} tasks the previous cluster left queued", flush=True)
                with harness.gunicorn(f"simulator-seeding-{index}", unlimited, workdir, **simulator):
                    print(f"seeding {args.attempts:,} attempts for {workers} workers ...", flush=True)
                    seeded = seed_attempts(
                        args.attempts,
                        first=index * args.attempts,
                        product_id=product_id,
                        owner_id=owner_id,
                        threads=args.seed_threads,
                    )
                    print(
                        f"  {len(seeded.payment_ids):,} in {seeded.seconds:.0f} s; refused: {dict(seeded.refused)}",
                        flush=True,
                    )
                seeding.append(seeded)
                with harness.gunicorn(f"simulator-{index}", limited, workdir, **simulator):
                    if baseline is None:
                        # Every web worker warm, and the simulator's first answers, outside the measurement.
                        warm = [harness.Call("GET", "/api/v1/products")] * 100
                        harness.run_load("warm-up", app.base_url, warm, concurrency=8, max_seconds=20)
                        harness.run_load(
                            "warm-up",
                            app.base_url,
                            order_calls(8, product_id=product_id, token=token, first_phone=0),
                            concurrency=4,
                            max_seconds=20,
                            accept=lambda response: True,
                        )
                        print("baseline orders (no cluster running) ...", flush=True)
                        baseline = orders_phase("baseline: orders, no settlement")
                    print(f"settling with {workers} workers ...", flush=True)
                    run = settle(
                        seeded,
                        env=env,
                        workdir=workdir,
                        workers=workers,
                        cap_seconds=args.max_minutes * 60,
                        order_load=lambda workers=workers: orders_phase(
                            f"orders while {workers} workers settle"
                        ),
                    )
                    run.stats = simulator_stats(
                        simulator_url,
                        since=run.started_epoch,
                        until=run.ended_epoch,
                        apis=["stk_query", "stk_push", "oauth"],
                    )
                runs.append(run)
                verified, summary = verify(seeded)
                query = run.stats["apis"]["stk_query"]
                within_limit = query["rejected"] == 0 and query["peak_per_second"] <= args.rate_limit
                print(f"  {workers} workers: {summary}", flush=True)
                print(
                    f"  STK Query at the simulator: {query['requests']:,} requests, peak {query['peak_per_second']}/s, "
                    f"{query['rejected']} refused (Spike Arrest); tokens minted: "
                    f"{run.stats['oauth']['tokens_minted']}",
                    flush=True,
                )
                if run.capped:
                    print(
                        f"  cap of {args.max_minutes:g} min reached: {run.settled:,} of {run.attempts:,} settled",
                        flush=True,
                    )
                orders_ok = run.orders is None or (run.orders.refused == 0 and run.orders.errors == 0)
                ok = ok and verified and within_limit and orders_ok
                if not within_limit:
                    print(f"FAILED: the Daraja rate limit of {args.rate_limit}/s was exceeded", flush=True)
                if not orders_ok:
                    print(
                        f"FAILED: orders refused during settlement: {dict(run.orders.statuses)}", flush=True
                    )
        if baseline is not None and (baseline.refused or baseline.errors):
            ok = False
            print(f"FAILED: baseline orders refused: {dict(baseline.statuses)}")
        print_report(args, baseline, runs, seeding)
        print(json.dumps({"runs": [_summary(run) for run in runs]}))
    print(f"total {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


def _summary(run: Settlement) -> dict:
    query = run.stats["apis"]["stk_query"]
    return {
        "workers": run.workers,
        "attempts": run.attempts,
        "settled": run.settled,
        "seconds": round(run.seconds, 1),
        "capped": run.capped,
        "stk_queries": query["requests"],
        "peak_per_second": query["peak_per_second"],
        "spike_arrest": query["rejected"],
        "tokens_minted": run.stats["oauth"]["tokens_minted"],
    }


if __name__ == "__main__":
    sys.exit(main())
