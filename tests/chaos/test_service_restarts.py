"""PostgreSQL, then Redis, restarted under load.

While a server is down the web answers at once with 503 and Retry-After (JSON for the API and Daraja's
hooks, a page for the admin): never a 500, never a hang. A callback that could not be stored gets a
non-2xx, so Daraja (here: the load generator) sends it again; one that was stored while the task queue was
down is applied by the inbox sweeper. Nothing is half-applied, and everything recovers by itself: new orders
are taken and pushed, every callback is applied exactly once.
"""

import os
import time

import pytest

from tests.chaos import checks
from tests.chaos.load import DarajaSender, Delivery, Load
from tests.chaos.stack import (
    NO_CALLBACK_PHONE,
    nairobi_timestamp,
    restart_postgres,
    restart_redis,
    wait_until,
)

pytestmark = pytest.mark.chaos

OUTAGE_SECONDS = float(os.environ.get("CHAOS_OUTAGE_SECONDS", "3"))
# Seconds: slower than this is a hang. A refused connection fails at once; a connection pool
# (DATABASE_POOL_MAX_SIZE) makes a request wait up to its timeout (5 s) for a connection first.
ANSWER_WITHIN = 8.0
CALLBACKS = 20
# After the last restart: new connections, and django-q2's pusher reincarnated (it sleeps 10 s first).
RECOVERY_GRACE = 5.0
RECOVERY_WINDOW = 8.0


def success_callback(payment, receipt: str) -> dict:
    """What Daraja posts for a paid prompt (daraja.md §3), for an attempt whose callback the simulator
    never sends (NO_CALLBACK_PHONE)."""
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": payment.merchant_request_id,
                "CheckoutRequestID": payment.checkout_request_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": float(payment.amount)},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": nairobi_timestamp()},
                        {"Name": "PhoneNumber", "Value": int(payment.phone)},
                    ]
                },
            }
        }
    }


def test_postgres_and_redis_restarts_under_load(stack, scratch_db):
    waiting = []
    for _ in range(CALLBACKS):
        response = stack.place_order(NO_CALLBACK_PHONE)
        assert response.status_code == 201 and response.json()["payment"]["status"] == "initiated", (
            response.text
        )
        waiting.append(response.json()["payment"]["id"])
    deliveries = [
        Delivery(key=str(payment.pk), body=success_callback(payment, receipt=f"CHS{payment.pk:07d}"))
        for payment in checks.payments(waiting)
    ]
    app = stack.app_url
    placed: list[tuple[float, dict]] = []

    def place(session):
        response = stack.place_order(session=session, timeout=15)
        if response.status_code == 201:
            placed.append((time.monotonic(), response.json()))
        return response

    load = Load()
    load.stream("api read", lambda s: s.get(app + "/api/v1/products", timeout=15), interval=0.25)
    load.stream("api order", place, interval=0.5)
    load.stream(
        "admin page",
        lambda s: s.get(app + "/admin/payments/payment/", timeout=15),
        interval=0.5,
        session=stack.staff_session(),
    )
    sender = DarajaSender(load, app + stack.callback_path(), deliveries, interval=1.0)
    load.start()
    sender.start()
    try:
        time.sleep(3)
        postgres_down = time.monotonic()
        restart_postgres(port=stack.postgres_port, down_seconds=OUTAGE_SECONDS)
        postgres_up = time.monotonic()
        time.sleep(4)
        redis_down = time.monotonic()
        restart_redis(port=stack.redis_port, down_seconds=OUTAGE_SECONDS)
        redis_up = time.monotonic()
        time.sleep(RECOVERY_GRACE)
        recovered = time.monotonic()
        time.sleep(RECOVERY_WINDOW)
        all_delivered = sender.join(timeout=60)
    finally:
        load.stop()
    print(
        f"chaos: PostgreSQL down {postgres_up - postgres_down:.1f} s, Redis down {redis_up - redis_down:.1f} s; "
        f"answers {dict(load.statuses())}, the slowest in {max(s.seconds for s in load.of()):.1f} s; "
        + ", ".join(
            f"{name} {dict(load.statuses(name))}"
            for name in ("api read", "api order", "admin page", "callback")
        )
    )

    # Never a 500, never a hang: every request got an answer, in seconds, and a failure is a 503.
    samples = load.of()
    assert all(s.status is not None for s in samples), [s for s in samples if s.status is None][:5]
    assert max(s.seconds for s in samples) < ANSWER_WITHIN, sorted(samples, key=lambda s: -s.seconds)[:5]
    assert set(load.statuses()) <= {200, 201, 503}, load.statuses()
    # A 503 says when to come back, in the API's error body (Daraja's hooks answer their own refusal).
    unavailable = [s for s in samples if s.status == 503 and s.stream != "callback"]
    assert all(s.retry_after for s in unavailable), [s for s in unavailable if not s.retry_after][:5]
    assert all(s.error_code == "unavailable" for s in unavailable if s.stream.startswith("api"))
    assert all(s.content_type.startswith("text/html") for s in unavailable if s.stream == "admin page")
    # The database outage was seen, and answered 503, by the API, the admin and Daraja's hooks.
    during_postgres = {"since": postgres_down, "until": postgres_up}
    for stream in ("api read", "api order", "admin page", "callback"):
        assert load.statuses(stream, **during_postgres)[503], (
            stream,
            load.statuses(stream, **during_postgres),
        )

    # Recovered by itself: after the restarts everything answers 2xx again.
    after = load.of(since=recovered)
    assert after and all(s.ok for s in after), [s for s in after if not s.ok][:5]
    assert any(at >= recovered for at, _order in placed), "no order was placed after the restarts"

    # Every callback was acknowledged in the end (Daraja retried the refused ones), and each was applied once.
    assert all_delivered, [d.key for d in deliveries if not d.acknowledged]
    assert any(len(d.attempts) > 1 for d in deliveries), "no callback needed a retry: the outage missed them"
    stack.run_schedules_now("payments-inbox-sweeper", "payments-status-sweeper")
    wait_until(
        "every callback applied",
        lambda: (
            set(checks.inbox_statuses(waiting)) == {"processed"}
            and all(p.status == "completed" for p in checks.payments(waiting))
        ),
        timeout=90,
        explain=lambda: (checks.inbox_statuses(waiting), checks.unsettled_inbox_rows()),
    )
    assert set(checks.results_applied(waiting).values()) == {1}, checks.applied_more_than_once(waiting)
    assert set(checks.inbox_statuses(waiting)) == {"processed"}, checks.inbox_statuses(waiting)
    # Every callback's own receipt, or (when the status sweeper's STK Query completed the attempt before
    # the stored callback was applied) a receipt still pending, never another's.
    receipts = {p.pk: (p.mpesa_receipt_number, p.receipt_pending) for p in checks.payments(waiting)}
    wrong = {pk: got for pk, got in receipts.items() if got not in ((f"CHS{pk:07d}", False), (None, True))}
    assert not wrong, (wrong, checks.history(wrong))
    pending = [pk for pk, (_receipt, receipt_pending) in receipts.items() if receipt_pending]
    print(
        f"chaos: {len(pending)} of {len(waiting)} paid attempts completed by STK Query with the receipt pending"
    )

    # Nothing half-applied: the orders taken meanwhile settle too (their callbacks come from the simulator).
    wait_until(
        "every attempt settled",
        lambda: not checks.open_payments(),
        timeout=90,
        explain=lambda: checks.history(pk for pk, _status in checks.open_payments()),
    )
    assert not checks.half_applied_orders(), checks.half_applied_orders()
    # An order taken while Redis was down is answered 201 with its attempt failed at once as "Daraja
    # unavailable" (the token and the rate limit live in the cache, so no push went out), retryable. An
    # order cut off by the database between the push and the write of its answer is answered 503 and keeps
    # an attempt the status sweeper fails after MPESA_PENDING_TIMEOUT; the simulator's callback for it waits
    # as unmatched, for staff to attach, as designed.
    abandoned = checks.abandoned_pushes()
    refused_orders = load.statuses("api order")[503]
    unmatched = checks.unsettled_inbox_rows()
    print(
        f"chaos: {len(abandoned)} pushes abandoned by the sweeper, {len(unmatched)} callbacks left unmatched; "
        f"{refused_orders} orders answered 503"
    )
    assert len(abandoned) <= refused_orders
    assert all(status == "unmatched" for _pk, status, _attempts in unmatched), unmatched
    assert len(unmatched) <= len(abandoned), unmatched
    pushed = [order["payment"]["id"] for _at, order in placed if order["payment"]["status"] != "failed"]
    not_pushed = [order["payment"]["id"] for _at, order in placed if order["payment"]["status"] == "failed"]
    print(f"chaos: {len(not_pushed)} orders taken with their push failed at once as unavailable")
    assert set(checks.results_applied(pushed).values()) <= {1}
    assert set(checks.results_applied(not_pushed).values()) <= {0}
    assert all(p.status == "failed" and p.failure_class == "system" for p in checks.payments(not_pushed))
