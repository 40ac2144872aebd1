"""Duplicate-storm load on the STK callback front door (faults.md row 39), against a baseline in the same run.

    .venv/bin/python bench/callback_storm.py [--requests 2000] [--concurrency 16] [--rate 0]

A scratch SQLite project in a temp dir; payments put in `initiated` through the ordering service with Daraja
faked at the HTTP boundary (as the tests do); the real WSGI app under gunicorn on a loopback port. Phases:

1. baseline: the same number of `GET /api/v1/products` (Django, middleware, ninja, one read; none of our
   callback logic);
2. storm: POSTs to the tokenised STK callback URL, `--duplicate-share` of them byte-identical repeats of
   `--hot` success callbacks, the rest one distinct success callback per payment, shuffled.

Prints a table, the ratios storm / baseline, whether ack p99 < 300 ms, and then checks the database: every
payment got exactly one `result_applied` event however many copies arrived. Exit status 1 only when that
check (or an ack) fails; the latency target is reported, not asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections import Counter
from decimal import Decimal

import harness

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}
P99_TARGET_MS = 300.0
AMOUNT_KES = Decimal("10.00")
FAKE_DARAJA_URL = "https://daraja.bench.invalid"  # never resolved: `responses` answers in-process


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.load_parser(__doc__.split("\n\n")[0], requests=2000, requests_max=10_000, concurrency=16)
    parser.add_argument("--duplicate-share", type=float, default=0.9, help="share of repeats (default 0.9)")
    parser.add_argument("--hot", type=int, default=5, help="callbacks that are repeated (default 5)")
    args = parser.parse_args(argv)
    harness.check_load_args(parser, args)
    if not 0 <= args.duplicate_share < 1:
        parser.error("--duplicate-share must be in [0, 1)")
    if not 1 <= args.hot <= round(args.requests * args.duplicate_share):
        parser.error("--hot must be at least 1 and at most the number of repeated requests")
    return args


def seed_initiated_payments(count: int) -> list[str]:
    """`count` M-Pesa payments in `initiated`, made by order_place with Daraja's push answered in-process."""
    import responses
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    from orders.models import Product
    from orders.services import ItemRequest, Shipping, order_place
    from payments.models import PaymentStatus

    product = Product.objects.create(sku="BENCH-1", name="Bench item", price=AMOUNT_KES)
    owner = get_user_model().objects.create_user("bench-shopper")
    numbers = itertools.count(1)

    def push(_request):
        accepted = {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": f"ws_CO_BENCH{next(numbers):010d}",
            "ResponseCode": "0",
            "ResponseDescription": "Success. Request accepted for processing",
            "CustomerMessage": "Success. Request accepted for processing",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(accepted)

    checkout_ids = []
    with override_settings(MPESA_BASE_URL=FAKE_DARAJA_URL), responses.RequestsMock() as mock:
        mock.add(
            responses.GET,
            FAKE_DARAJA_URL + "/oauth/v1/generate",
            json={"access_token": "bench-access-token", "expires_in": "3599"},
        )
        mock.add_callback(responses.POST, FAKE_DARAJA_URL + "/mpesa/stkpush/v1/processrequest", callback=push)
        for n in range(count):
            _order, payment, _created = order_place(
                owner=owner,
                items=[ItemRequest(product_id=product.pk, quantity=1)],
                shipping=Shipping(full_name="Bench Shopper", address="1 Loop Rd", city="Nairobi"),
                payment_method="mpesa",
                payment_phone=f"254711{n:06d}",
            )
            if payment.status != PaymentStatus.INITIATED:
                raise RuntimeError(f"seeded payment #{payment.pk} is {payment.status}, not initiated")
            checkout_ids.append(payment.checkout_request_id)
    return checkout_ids


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


def storm_calls(
    checkout_ids: list[str], *, requests_count: int, hot: int, path: str
) -> tuple[list[harness.Call], int]:
    """The shuffled storm: one call per distinct payment, the rest byte-identical copies of the hot ones."""
    headers = {"Content-Type": "application/json", "User-Agent": "Apache-HttpClient/4.5.5 (bench)"}
    bodies = [
        success_callback(checkout_id, receipt=f"BNC{n:07d}", phone=f"254711{n:06d}")
        for n, checkout_id in enumerate(checkout_ids)
    ]
    hot_bodies, distinct_bodies = bodies[:hot], bodies[hot:]
    copies = requests_count - len(distinct_bodies)
    calls = [harness.Call("POST", path, body, headers) for body in distinct_bodies]
    calls += [harness.Call("POST", path, hot_bodies[n % hot], headers) for n in range(copies)]
    random.Random(39).shuffle(calls)  # fixed seed: the same interleaving every run
    repeats = copies - hot
    return calls, repeats


def verify(checkout_ids: list[str], *, all_delivered: bool) -> bool:
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

    print(
        f"exactly-once: {once}/{len(checkout_ids)} payments have exactly one result_applied event; "
        f"{more} have more, {never} have none; {statuses.get(PaymentStatus.COMPLETED, 0)} completed"
    )
    print(f"repeats recorded as duplicate_result events: {duplicates}")
    print(
        f"inbox: {sum(inbox.values())} rows for {bodies} distinct bodies "
        f"({', '.join(f'{status} {n}' for status, n in sorted(inbox.items()))})"
    )
    ok = more == 0 and (never == 0 or not all_delivered)
    if not ok:
        print("FAILED: a payment was applied more than once, or a delivered callback was not applied")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    distinct = args.requests - round(args.requests * args.duplicate_share)
    with harness.scratch_database(postgres=args.postgres, redis=args.redis, keep=args.keep) as (workdir, env):
        from django.urls import reverse

        from payments.callback_urls import callback_token

        seeding = time.monotonic()
        checkout_ids = seed_initiated_payments(args.hot + distinct)
        print(f"{len(checkout_ids)} initiated payments seeded in {time.monotonic() - seeding:.1f} s")
        callback_path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
        calls, repeats = storm_calls(
            checkout_ids, requests_count=args.requests, hot=args.hot, path=callback_path
        )
        baseline_calls = [harness.Call("GET", "/api/v1/products")] * len(calls)

        def acked(response) -> bool:
            return response.status_code == 200 and response.json() == ACK

        load = dict(concurrency=args.concurrency, max_seconds=args.max_seconds, rate=args.rate)
        warm = dict(concurrency=args.concurrency, max_seconds=10.0)  # closed loop whatever --rate says
        with harness.gunicorn("app", env, workdir, workers=args.workers, threads=args.threads) as app:
            # Warm every worker thread (imports, URL resolver, DB connection) outside the measurement; a
            # wrong token loads the callback view without touching the database.
            harness.run_load("warm-up", app.base_url, baseline_calls[:200], **warm)
            wrong_token = harness.Call(
                "POST", "/hooks/daraja/stk/not-the-token/", calls[0].body, calls[0].headers
            )
            harness.run_load("warm-up", app.base_url, [wrong_token] * 20, **warm, accept=lambda r: True)

            baseline = harness.run_load("baseline GET /api/v1/products", app.base_url, baseline_calls, **load)
            storm = harness.run_load("storm POST stk callback", app.base_url, calls, **load, accept=acked)

        print()
        print(
            harness.load_settings_line(
                requests_count=len(calls),
                concurrency=args.concurrency,
                rate=args.rate,
                workers=args.workers,
                threads=args.threads,
            )
        )
        print(
            f"storm: {len(checkout_ids)} payments, {repeats} of {len(calls)} callbacks are repeats "
            f"({repeats / len(calls):.0%}) of {args.hot} hot callbacks"
        )
        harness.print_table([baseline, storm])
        harness.print_ratio(storm, baseline)
        p99 = storm.percentile(99)
        verdict = "met" if p99 < P99_TARGET_MS else "NOT met"
        print(f"target ack p99 < {P99_TARGET_MS:.0f} ms (faults.md row 39): {verdict} (p99 {p99:.1f} ms)")
        if storm.statuses.keys() - {200}:
            print(f"storm HTTP statuses: {dict(storm.statuses)}")
        all_delivered = storm.errors == 0 and storm.completed == storm.planned
        ok = verify(checkout_ids, all_delivered=all_delivered) and storm.refused == 0
    print(f"total {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
