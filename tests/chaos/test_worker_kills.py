"""django-q2 processes killed with SIGKILL in the middle of a task.

With the Redis broker a task a worker has taken is gone when the worker dies: nothing delivers it again.
What the task was doing is finished by the sweepers, and nothing is done twice:

- a refund killed while Daraja takes it (the simulator answers Reversal and B2C 4 s late, and decides after
  the wait, so the money moves although the worker is gone): recorded `submitting` before the call, it is
  never sent again; the Reversal's Result settles one, Transaction Status (asked by the refund sweeper once
  the refund is `unknown`) settles the B2C whose Result never comes. The simulator counts one request each;
- a callback killed while it is applied (its payment row held by the test, so the worker waits in the
  middle of the applying transaction): the transaction dies with the worker, the row stays `received`, and
  the inbox sweeper applies it once;
- an SMS killed mid-send (the local backend playing a 2.5 s provider), the whole cluster at once this time,
  then started again: the notification sweeper finds the stale claim and sends it once.

Afterwards every refund settled, every stored callback applied, every notification sent exactly once (each
provider message id recorded once by the local backend).
"""

import contextlib
import time

import psycopg
import pytest

from tests.chaos import checks
from tests.chaos.stack import ALIAS, SILENT_REFUND_PHONE, kill, pids_connected, wait_until

pytestmark = pytest.mark.chaos

SMS_LATENCY_MS = "2500"
SWEEPERS = (
    "payments-inbox-sweeper",
    "payments-refund-sweeper",
    "payments-status-sweeper",
    "notifications-sweeper",
)


def paid(stack, phone: str | None = None) -> int:
    response = stack.place_order(phone)
    assert response.status_code == 201, response.text
    payment_id = response.json()["payment"]["id"]
    wait_until("the payment", lambda: checks.payments([payment_id]).get().status == "completed", timeout=30)
    return payment_id


def refund_statuses(refund_ids) -> dict[int, str]:
    from payments.models import Refund

    return dict(Refund.objects.using(ALIAS).filter(pk__in=refund_ids).values_list("pk", "status"))


def refund_events(refund_id: int) -> list[str]:
    from payments.models import RefundEvent

    return list(
        RefundEvent.objects.using(ALIAS)
        .filter(refund_id=refund_id)
        .order_by("pk")
        .values_list("kind", flat=True)
    )


def sending_notification(order_id: int):
    from notifications.models import Notification

    return Notification.objects.using(ALIAS).filter(order_id=order_id, status="sending").first()


@contextlib.contextmanager
def row_locked(database_url: str, payment_id: int):
    """Hold the payment row as a long transaction would; yields the holder's backend pid."""
    with psycopg.connect(database_url) as connection:
        connection.execute("SELECT id FROM payments_payment WHERE id = %s FOR UPDATE", [payment_id])
        yield connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        connection.rollback()


def waiting_for(database_url: str, holder_pid: int) -> list[int]:
    """Client ports of the sessions waiting for a lock the holder has."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT client_port FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [holder_pid]
        ).fetchall()
    return [port for (port,) in rows]


def test_workers_killed_mid_task(stack, scratch_db):
    from django.utils import timezone

    started, started_at, log_from = time.time(), timezone.now(), stack.cluster.log_size()
    reversed_payment = paid(stack)
    b2c_payment = paid(stack, SILENT_REFUND_PHONE)

    # --- an SMS, the whole cluster killed while the provider takes it -------------------------------
    stack.cluster.restart(SMS_LOCAL_LATENCY_MS=SMS_LATENCY_MS)
    try:
        placed = stack.place_order().json()
        order, sms_payment = placed["order"]["id"], placed["payment"]["id"]
        in_flight = wait_until("an SMS being sent", lambda: sending_notification(order), timeout=30)
        stack.cluster.kill()
        killed_sms = checks.notification(in_flight.pk)
    finally:
        stack.cluster.restart()  # started again as it runs everywhere else: no slow provider
    assert killed_sms.status == "sending"

    # --- refunds, the workers killed while Daraja takes them -----------------------------------------
    reversal = stack.request_refund(reversed_payment)  # the whole amount: a Reversal
    b2c = stack.request_refund(b2c_payment, amount=5)  # a part: B2C, to a number that gets no Result
    refunds = [reversal["id"], b2c["id"]]
    assert (reversal["method"], b2c["method"]) == ("reversal", "b2c")
    killed_calls = set()

    def kill_calls_to_daraja() -> bool:
        calling = pids_connected(stack.cluster.pids(), remote_port=stack.simulator_port)
        for pid in calling:
            kill(pid)
        killed_calls.update(calling)
        return len(killed_calls) >= 2

    wait_until("both refunds killed mid-call", kill_calls_to_daraja, timeout=60, interval=0.2)
    print(f"chaos: killed {len(killed_calls)} workers calling Daraja with a refund")
    # Killed before Daraja's answer was recorded: recorded as being sent, never as accepted.
    assert set(refund_statuses(refunds).values()) <= {"submitting", "succeeded"}, refund_statuses(refunds)
    assert not [pk for pk in refunds if "accepted" in refund_events(pk)], {
        pk: refund_events(pk) for pk in refunds
    }

    # --- a callback, the worker killed while it applies it ---------------------------------------------
    response = stack.place_order()
    assert response.status_code == 201, response.text
    callback_payment = response.json()["payment"]["id"]
    checkout_request_id = checks.payments([callback_payment]).get().checkout_request_id
    with row_locked(stack.env["DATABASE_URL"], callback_payment) as holder:
        ports = wait_until(
            "a worker applying the callback",
            lambda: waiting_for(stack.env["DATABASE_URL"], holder),
            timeout=30,
        )
        applying = pids_connected(stack.cluster.pids(), local_port=ports[0])
        assert len(applying) == 1, (ports, applying)
        kill(applying[0])
    # The applying transaction died with the worker: the stored callback waits, unapplied.
    assert [status for _pk, status, _attempts in checks.inbox_rows_about(checkout_request_id)] == ["received"]
    assert checks.payments([callback_payment]).get().status == "initiated"

    # --- the sweepers finish the work ------------------------------------------------------------------
    def settled() -> bool:
        return (
            set(refund_statuses(refunds).values()) == {"succeeded"}
            and checks.payments([callback_payment]).get().status == "completed"
            and not checks.unsettled_inbox_rows(since=started_at)
            and not checks.notifications_not_sent(since=started_at)
        )

    def nudge_and_check() -> bool:
        if settled():
            return True
        stack.run_schedules_now(*SWEEPERS)
        return False

    wait_until(
        "the sweepers to finish what the killed workers were doing",
        nudge_and_check,
        timeout=150,
        interval=10,
        explain=lambda: (
            refund_statuses(refunds),
            {pk: refund_events(pk) for pk in refunds},
            checks.unsettled_inbox_rows(since=started_at),
            checks.notifications_not_sent(since=started_at),
        ),
    )
    wait_until(
        "the last notifications", lambda: not checks.notifications_not_sent(since=started_at), timeout=90
    )

    # No refund sent twice, none lost: one request each at Daraja, one submission each, both paid out.
    assert stack.simulator_stats("reversal", since=started) == 1
    assert stack.simulator_stats("b2c", since=started) == 1
    assert [refund_events(pk).count("submitting") for pk in refunds] == [1, 1]
    assert "status_query_sent" in refund_events(b2c["id"])  # settled by Transaction Status
    assert [p.status for p in checks.payments([reversed_payment, b2c_payment]).order_by("pk")] == [
        "refunded",
        "partially_refunded",
    ]

    # Every stored callback applied once, the one whose worker died included.
    ours = [reversed_payment, b2c_payment, sms_payment, callback_payment]
    assert set(checks.results_applied(ours).values()) == {1}, checks.applied_more_than_once(ours)
    assert [status for _pk, status, _attempts in checks.inbox_rows_about(checkout_request_id)] == [
        "processed"
    ]

    # Every notification sent once: the killed one by the sweeper, and the provider got each message once.
    resent = checks.notification(killed_sms.pk)
    assert (resent.status, resent.attempts, resent.uncertain_attempts) == ("sent", 2, 1)
    records = checks.local_sms_records(stack.cluster.log(since=log_from))
    assert set(records.values()) == {1}, records  # no message recorded twice
    sent = checks.sms_provider_ids(sent_since=started_at)
    assert resent.provider_message_id in records
    assert set(sent.values()) <= set(records), "a message marked sent that the provider never got"
    assert set(records) <= set(checks.sms_provider_ids().values()), "a message the provider got twice"
