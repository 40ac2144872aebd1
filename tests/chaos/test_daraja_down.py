"""Daraja down (the simulator crashed) under load, then back.

While it is down, a new order is answered in seconds with its attempt failed as a system failure, the
order still payable (the contract of a push Daraja could not take: payments/services/attempts.py); the
attempts in flight are asked about and get no answer, so they are never expired on that, even past their
deadline. When Daraja is back the status sweeper settles every one of them, and a failed order is paid by
a new attempt.

The outage lasts CHAOS_DARAJA_OUTAGE_SECONDS (30 by default), longer if needed until the status sweeper
has asked about every attempt in flight after its deadline: that question is what must not expire them.
"""

import os
import time

import pytest

from tests.chaos import checks
from tests.chaos.load import Load
from tests.chaos.stack import NO_CALLBACK_PHONE, wait_until

pytestmark = pytest.mark.chaos

OUTAGE_SECONDS = float(os.environ.get("CHAOS_DARAJA_OUTAGE_SECONDS", "30"))
PUSH_WITHIN = 5.0  # seconds for an order to be answered while Daraja is down: fast, not a hang


def asked_and_unanswered_after_deadline(payment_ids, deadline_seconds: float) -> bool:
    """Every attempt got a failed STK Query past its deadline (the moment expiry would happen)."""
    import datetime as dt

    from payments.models import EventKind, PaymentEvent

    for payment in checks.payments(payment_ids).filter(status="initiated"):
        deadline = payment.initiated_at + dt.timedelta(seconds=deadline_seconds)
        if not PaymentEvent.objects.using("chaos").filter(
            payment=payment, kind=EventKind.QUERY_FAILED, created_at__gte=deadline
        ):
            return False
    return True


def test_daraja_down_under_load(stack, scratch_db):
    deadline = float(stack.env["MPESA_PAYMENT_DEADLINE"])
    in_flight = []
    # Paid, but the callback never comes: only an STK Query can settle them.
    for _ in range(6):
        response = stack.place_order(NO_CALLBACK_PHONE)
        assert response.status_code == 201 and response.json()["payment"]["status"] == "initiated"
        in_flight.append(response.json()["payment"]["id"])
    # Paid, with callbacks the simulator still owes when it goes down: they are lost with it.
    for _ in range(3):
        response = stack.place_order()
        assert response.status_code == 201, response.text
        in_flight.append(response.json()["payment"]["id"])
    stack.stop_simulator(crash=True)
    down_at = time.monotonic()

    refused: list[dict] = []

    def place(session):
        response = stack.place_order(session=session, timeout=15)
        if response.status_code == 201:
            refused.append(response.json())
        return response

    load = Load()
    load.stream("api order", place, interval=1.0)
    load.stream("api read", lambda s: s.get(stack.app_url + "/api/v1/products", timeout=15), interval=0.5)
    load.stream(
        "ask m-pesa now",
        lambda s: s.get(
            f"{stack.app_url}/api/v1/payments/mpesa/{in_flight[0]}/status",
            headers={"Authorization": f"Bearer {stack.shopper_token}"},
            timeout=15,
        ),
        interval=2.0,
    )
    load.start()
    try:
        # The sweeper asks as soon as the deadlines have passed (it would within the minute anyway).
        time.sleep(max(0.0, deadline + 2 - (time.monotonic() - down_at)))
        stack.run_schedules_now("payments-status-sweeper")
        wait_until(
            "the status sweeper to ask about every attempt past its deadline",
            lambda: asked_and_unanswered_after_deadline(in_flight, deadline),
            timeout=90,
            explain=lambda: checks.history(in_flight),
        )
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        load.stop()
        outage = time.monotonic() - down_at
        during = list(checks.payments(in_flight))
        expired = [pk for pk in in_flight if "expired" in checks.event_kinds(pk)]
        history = checks.history(in_flight)
    finally:
        load.stop()
        stack.start_simulator()  # back, whatever happened: the next scenarios need Daraja

    # Nothing expired: no answer is not "still being processed".
    assert {p.status for p in during} == {"initiated"}, history
    assert all(p.query_failing for p in during)
    assert not expired, history

    # Pushes failed fast as a system failure, the order still payable; nothing else was disturbed.
    orders = load.of("api order")
    print(
        f"chaos: Daraja down {outage:.0f} s; orders {dict(load.statuses('api order'))} in at most "
        f"{max(s.seconds for s in orders):.1f} s; reads {dict(load.statuses('api read'))}; "
        f"asked now {dict(load.statuses('ask m-pesa now'))}"
    )
    assert orders and all(s.status == 201 for s in orders), load.statuses("api order")
    assert max(s.seconds for s in load.of()) < PUSH_WITHIN
    assert all(s.ok for s in load.of("api read")) and all(s.ok for s in load.of("ask m-pesa now"))
    assert all(
        order["payment"]["status"] == "failed"
        and order["payment"]["retryable"]
        and order["order"]["status"] == "PENDING"
        for order in refused
    ), checks.history(order["payment"]["id"] for order in refused if order["payment"]["status"] != "failed")
    failed = checks.payments(order["payment"]["id"] for order in refused)
    assert all(p.failure_class == "system" and "unreachable" in p.result_desc for p in failed), [
        (p.failure_class, p.result_desc) for p in failed
    ]

    # Back: everything in flight settles, each attempt once; a failed order is paid by a new attempt.
    stack.run_schedules_now("payments-status-sweeper")
    wait_until(
        "every attempt in flight settled",
        lambda: {p.status for p in checks.payments(in_flight)} == {"completed"},
        timeout=90,
        explain=lambda: checks.history(in_flight),
    )
    assert set(checks.results_applied(in_flight).values()) == {1}, checks.applied_more_than_once(in_flight)
    # From another phone: the same amount to the same phone waits out M-Pesa's 2-minute rule (rule 17),
    # which the service applies to an attempt Daraja never saw too.
    retried = stack.retry_payment(refused[0]["payment"]["id"], phone=stack.next_phone())
    assert retried["status"] == "initiated", retried
    wait_until(
        "the new attempt paid",
        lambda: checks.payments([retried["id"]]).get().status == "completed",
        timeout=30,
    )
    assert checks.payments([retried["id"]]).get().order.status == "CONFIRMED"
    assert not checks.half_applied_orders(), checks.half_applied_orders()
