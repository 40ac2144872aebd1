"""The status, inbox and payment-window sweepers: what callbacks miss, the schedules find."""

import datetime as dt
import json
import time

import pytest
import time_machine
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Success
from django_q.scheduler import scheduler

from orders.models import OrderStatus
from orders.services import order_cancel_unpaid
from orders.signals import order_status_changed
from payments import reconciliation, services
from payments.daraja.results import parse_stk_callback
from payments.inbox import inbox_store
from payments.models import (
    CallbackInbox,
    EventKind,
    EventSource,
    FailureClass,
    InboxKind,
    InboxStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ReviewReason,
)
from payments.schedules import PAYMENT_SCHEDULES, ensure_payment_schedules
from tests.conftest import stk_callback

SPIKE_ARREST = (
    500,
    {"requestId": "r", "errorCode": "500.003.02", "errorMessage": "Error Occurred: Spike Arrest Violation"},
)
GATEWAY_DOWN = (503, {"requestId": "r", "errorCode": "503.001.01", "errorMessage": "Service Unavailable"})


@pytest.fixture
def initiated(fake_daraja, place_order) -> Payment:
    _order, payment = place_order()
    assert payment.status == PaymentStatus.INITIATED
    return payment


def at(payment: Payment, seconds: float):
    """Travel to `seconds` after the attempt's push (time stands still there)."""
    return time_machine.travel(payment.initiated_at + dt.timedelta(seconds=seconds), tick=False)


def sweep():
    return reconciliation.payments_sweep()


def kinds(payment: Payment) -> list[str]:
    return list(payment.events.order_by("pk").values_list("kind", flat=True))


# --- the status sweeper ---------------------------------------------------------------------------
def test_nothing_is_asked_before_the_first_query_delay(initiated, fake_daraja, settings):
    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY - 1):
        assert sweep()["claimed"] == 0

    assert fake_daraja.queries == []


def test_lost_callback_is_found_by_stk_query_and_completed_with_the_receipt_to_follow(
    initiated, fake_daraja, settings
):
    fake_daraja.answer_query("0")

    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY + 1):
        counts = sweep()

    initiated.refresh_from_db()
    assert counts["claimed"] == 1
    assert fake_daraja.queries[0]["CheckoutRequestID"] == initiated.checkout_request_id
    assert initiated.status == PaymentStatus.COMPLETED
    assert initiated.receipt_pending is True
    assert initiated.events.get(kind=EventKind.RESULT_APPLIED).source == EventSource.QUERY
    assert initiated.order.status == OrderStatus.CONFIRMED

    # The late callback still brings the receipt.
    services.payment_apply_result(
        checkout_request_id=initiated.checkout_request_id,
        result=parse_stk_callback(stk_callback(initiated.checkout_request_id, receipt="SKQ1234567")),
        source=EventSource.CALLBACK,
    )
    initiated.refresh_from_db()
    assert (initiated.mpesa_receipt_number, initiated.receipt_pending) == ("SKQ1234567", False)


def test_still_processing_means_ask_again_later_with_a_growing_interval(initiated, fake_daraja, settings):
    delay, interval = settings.MPESA_FIRST_QUERY_DELAY, settings.MPESA_QUERY_INTERVAL

    with at(initiated, delay + 1):
        sweep()  # "The transaction is being processed"
    initiated.refresh_from_db()
    first_gap = initiated.next_query_at - (initiated.initiated_at + dt.timedelta(seconds=delay + 1))
    with at(initiated, delay + 2):
        assert sweep()["claimed"] == 0  # not due yet
    with at(initiated, delay + 1 + interval):
        sweep()
    initiated.refresh_from_db()
    second_gap = initiated.next_query_at - (
        initiated.initiated_at + dt.timedelta(seconds=delay + 1 + interval)
    )

    assert initiated.status == PaymentStatus.INITIATED
    assert len(fake_daraja.queries) == 2
    assert first_gap == dt.timedelta(seconds=interval)
    assert second_gap == dt.timedelta(seconds=2 * interval)
    assert kinds(initiated).count(EventKind.QUERY_PENDING) == 2


def test_pending_then_a_final_failure_is_applied_like_a_callback(initiated, fake_daraja, settings):
    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY + 1):
        sweep()
    fake_daraja.answer_query("1032", "Request cancelled by user")

    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY + 120):
        sweep()

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.FAILED
    assert initiated.result_code == "1032"
    assert initiated.failure_class == FailureClass.CUSTOMER
    assert initiated.next_query_at is None


@pytest.mark.parametrize("reply", [SPIKE_ARREST, GATEWAY_DOWN], ids=["spike-arrest", "5xx"])
def test_spike_arrest_and_server_errors_mean_ask_again_later(initiated, fake_daraja, settings, reply):
    fake_daraja.query_replies.append(reply)

    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY + 1):
        sweep()

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.INITIATED
    assert initiated.next_query_at > timezone.now()
    assert EventKind.QUERY_FAILED in kinds(initiated)


def test_no_answer_by_the_deadline_expires_after_one_last_query(initiated, fake_daraja, settings):
    with at(initiated, settings.MPESA_PAYMENT_DEADLINE + 1):
        sweep()

    initiated.refresh_from_db()
    assert len(fake_daraja.queries) == 1
    assert initiated.status == PaymentStatus.FAILED
    assert initiated.failure_class == FailureClass.EXPIRED
    assert kinds(initiated)[-1] == EventKind.EXPIRED
    assert initiated.order.status == OrderStatus.PENDING  # still payable with a new attempt


def test_a_success_at_the_deadline_wins_over_expiry(initiated, fake_daraja, settings):
    fake_daraja.answer_query("0")

    with at(initiated, settings.MPESA_PAYMENT_DEADLINE + 1):
        sweep()

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    assert EventKind.EXPIRED not in kinds(initiated)


def test_the_last_query_is_asked_at_the_deadline_not_an_interval_later(initiated, fake_daraja, settings):
    settings.MPESA_QUERY_INTERVAL = settings.MPESA_QUERY_INTERVAL_MAX = 600

    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY + 1):
        sweep()

    initiated.refresh_from_db()
    assert initiated.next_query_at == initiated.initiated_at + dt.timedelta(
        seconds=settings.MPESA_PAYMENT_DEADLINE
    )


def test_success_callback_after_expiry_goes_to_review(initiated, fake_daraja, settings):
    with at(initiated, settings.MPESA_PAYMENT_DEADLINE + 1):
        sweep()

    services.payment_apply_result(
        checkout_request_id=initiated.checkout_request_id,
        result=parse_stk_callback(stk_callback(initiated.checkout_request_id)),
        source=EventSource.CALLBACK,
    )

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.NEEDS_REVIEW
    assert initiated.review_reason == ReviewReason.LATE_PAYMENT
    assert initiated.mpesa_receipt_number == "NLJ7RT61SV"


def test_a_query_failure_never_overwrites_a_success_callback(initiated, fake_daraja):
    services.payment_apply_result(
        checkout_request_id=initiated.checkout_request_id,
        result=parse_stk_callback(stk_callback(initiated.checkout_request_id)),
        source=EventSource.CALLBACK,
    )
    fake_daraja.answer_query("1032")

    services.payment_query_status(payment_id=initiated.pk)

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    assert kinds(initiated)[-1] == EventKind.IGNORED_LATE_EVENT


def test_a_second_success_with_another_receipt_is_kept_as_a_disagreement(initiated):
    for receipt in ("NLJ7RT61SV", "NLJ7RT61XX"):
        services.payment_apply_result(
            checkout_request_id=initiated.checkout_request_id,
            result=parse_stk_callback(stk_callback(initiated.checkout_request_id, receipt=receipt)),
            source=EventSource.CALLBACK,
        )

    initiated.refresh_from_db()
    assert (initiated.status, initiated.mpesa_receipt_number) == (PaymentStatus.COMPLETED, "NLJ7RT61SV")
    assert kinds(initiated)[-1] == EventKind.DISAGREEMENT


def test_overlapping_sweeps_ask_once(initiated, place_order, fake_daraja, settings):
    """Two sweeps (two clusters, a slow schedule) that listed the same due attempts ask Daraja once each.

    The first sweep lists both attempts and asks about the first; while that question is in flight a second
    sweep lists (and asks about) the second. When the first sweep reaches the second attempt on its stale
    list, its claim must fail: without it, the second attempt would be asked twice.
    """
    _order, other = place_order()
    answer = fake_daraja._query
    second_sweep = []
    started = []

    def another_sweep_meanwhile(request):
        if not started:
            started.append(True)
            second_sweep.append(sweep())
        return answer(request)

    fake_daraja.mock.remove("POST", "https://daraja.fake/mpesa/stkpushquery/v1/query")
    fake_daraja.mock.add_callback(
        "POST", "https://daraja.fake/mpesa/stkpushquery/v1/query", callback=another_sweep_meanwhile
    )

    with at(other, settings.MPESA_FIRST_QUERY_DELAY + 1):
        first = sweep()

    assert first["claimed"] + second_sweep[0]["claimed"] == 2
    assert sorted(body["CheckoutRequestID"] for body in fake_daraja.queries) == sorted(
        [initiated.checkout_request_id, other.checkout_request_id]
    )


@pytest.mark.parametrize("reply", [SPIKE_ARREST, GATEWAY_DOWN], ids=["spike-arrest", "5xx"])
def test_an_unanswered_question_at_the_deadline_never_expires_the_attempt(
    initiated, fake_daraja, settings, reply, django_capture_on_commit_callbacks
):
    fake_daraja.query_replies.extend([reply, reply])

    with at(initiated, settings.MPESA_PAYMENT_DEADLINE + 1), django_capture_on_commit_callbacks(execute=True):
        sweep()
    initiated.refresh_from_db()
    assert (initiated.status, initiated.query_failing) == (PaymentStatus.INITIATED, True)
    # It is asked again with the capped backoff, still without expiring while Daraja does not answer.
    assert initiated.next_query_at <= initiated.initiated_at + dt.timedelta(
        seconds=settings.MPESA_PAYMENT_DEADLINE + 1 + settings.MPESA_QUERY_INTERVAL_MAX
    )
    with at(initiated, settings.MPESA_PAYMENT_DEADLINE + 1 + settings.MPESA_QUERY_INTERVAL_MAX):
        sweep()
    initiated.refresh_from_db()
    assert (initiated.status, initiated.query_failing) == (PaymentStatus.INITIATED, True)
    assert not initiated.order.notifications.filter(event="payment_failed").exists()

    # Daraja answers again ("still being processed", long past the deadline): now it expires.
    with at(initiated, settings.MPESA_PAYMENT_DEADLINE + 1 + 2 * settings.MPESA_QUERY_INTERVAL_MAX):
        sweep()
    initiated.refresh_from_db()
    assert (initiated.status, initiated.failure_class) == (PaymentStatus.FAILED, FailureClass.EXPIRED)
    assert initiated.query_failing is False
    assert len(fake_daraja.queries) == 3


def test_the_sweep_hands_each_due_attempt_to_its_own_task_and_calls_no_daraja_itself(
    fake_daraja, place_order, settings, monkeypatch
):
    payments = [place_order()[1] for _ in range(3)]
    monkeypatch.setattr(Conf, "SYNC", False)
    queued_before = OrmQ.objects.count()

    with at(payments[-1], settings.MPESA_FIRST_QUERY_DELAY + 1):
        started = time.monotonic()
        assert sweep()["claimed"] == 3
        elapsed = time.monotonic() - started

    assert fake_daraja.queries == []
    tasks = [package.task for package in OrmQ.objects.order_by("pk")][queued_before:]
    assert sorted(
        task["args"][0] for task in tasks if task["func"] == "payments.tasks.payment_reconcile"
    ) == [p.pk for p in payments]
    assert elapsed < reconciliation.sweep_time_budget()


# --- pending attempts whose push never answered -------------------------------------------------------
def test_a_pending_attempt_left_by_a_crash_fails_and_the_order_stays_payable(
    place_order, fake_daraja, settings, monkeypatch
):
    # The request reached Daraja and the process died waiting for the answer.
    fake_daraja.push_replies.append(SystemExit("web worker killed mid-push"))
    with pytest.raises(SystemExit):
        place_order()
    assert len(fake_daraja.pushes) == 1
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.PENDING

    with time_machine.travel(payment.created_at + dt.timedelta(seconds=settings.MPESA_PENDING_TIMEOUT - 5)):
        assert sweep()["abandoned"] == 0
    with time_machine.travel(payment.created_at + dt.timedelta(seconds=settings.MPESA_PENDING_TIMEOUT + 1)):
        assert sweep()["abandoned"] == 1

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_class == FailureClass.UNKNOWN
    assert kinds(payment)[-1] == EventKind.PUSH_UNKNOWN
    assert payment.order.status == OrderStatus.PENDING


def test_a_push_answered_after_the_sweeper_gave_up_keeps_its_id_so_a_late_success_is_reviewed(
    place_order, fake_daraja, settings
):
    def give_up_meanwhile(request):
        payment = Payment.objects.get()
        with time_machine.travel(
            payment.created_at + dt.timedelta(seconds=settings.MPESA_PENDING_TIMEOUT + 1)
        ):
            sweep()
        return fake_daraja._push(request)

    fake_daraja.mock.remove("POST", "https://daraja.fake/mpesa/stkpush/v1/processrequest")
    fake_daraja.mock.add_callback(
        "POST", "https://daraja.fake/mpesa/stkpush/v1/processrequest", callback=give_up_meanwhile
    )

    _order, payment = place_order()

    assert payment.status == PaymentStatus.FAILED
    assert payment.checkout_request_id
    services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id,
        result=parse_stk_callback(stk_callback(payment.checkout_request_id)),
        source=EventSource.CALLBACK,
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.NEEDS_REVIEW


# --- the inbox sweeper ----------------------------------------------------------------------------
def store(kind: str, body: dict, status: str = InboxStatus.RECEIVED, attempts: int = 0) -> CallbackInbox:
    inbox = inbox_store(
        kind=kind,
        body=json.dumps(body).encode(),
        headers={},
        source_ip="196.201.214.200",
        path="/hooks/",
        status=status,
    )
    CallbackInbox.objects.filter(pk=inbox.pk).update(attempts=attempts)
    return inbox


def test_a_callback_a_killed_worker_never_processed_is_picked_up(initiated, settings):
    # The view stored the body, then the worker died before processing it.
    inbox = store(InboxKind.STK_CALLBACK, stk_callback(initiated.checkout_request_id))

    assert reconciliation.inbox_sweep()["reprocessed"] == 0  # maybe still being processed right now
    with time_machine.travel(inbox.received_at + dt.timedelta(seconds=settings.INBOX_RETRY_AFTER + 1)):
        counts = reconciliation.inbox_sweep()

    inbox.refresh_from_db()
    initiated.refresh_from_db()
    assert counts == {"reprocessed": 1, "processed": 1}
    assert inbox.status == InboxStatus.PROCESSED
    assert initiated.status == PaymentStatus.COMPLETED


def test_failed_rows_are_retried_a_bounded_number_of_times(initiated, settings):
    retried = store(
        InboxKind.STK_CALLBACK, stk_callback(initiated.checkout_request_id), InboxStatus.FAILED, 1
    )
    exhausted = store(
        InboxKind.STK_CALLBACK, stk_callback("ws_CO_other"), InboxStatus.FAILED, settings.INBOX_MAX_ATTEMPTS
    )

    reconciliation.inbox_sweep()

    retried.refresh_from_db()
    exhausted.refresh_from_db()
    assert retried.status == InboxStatus.PROCESSED
    assert (exhausted.status, exhausted.attempts) == (InboxStatus.FAILED, settings.INBOX_MAX_ATTEMPTS)


# --- schedules -----------------------------------------------------------------------------------------
def test_schedules_exist_after_migrate_and_setup_is_idempotent(db):
    Schedule.objects.filter(name="payments-refund-sweeper").update(repeats=0)  # paused by an operator

    ensure_payment_schedules(using="default")
    ensure_payment_schedules(using="default")

    for spec in PAYMENT_SCHEDULES:
        schedule = Schedule.objects.get(name=spec.name)
        assert (schedule.func, schedule.schedule_type, schedule.minutes) == (spec.func, Schedule.MINUTES, 1)
    assert Schedule.objects.get(name="payments-refund-sweeper").repeats == 0
    assert Schedule.objects.get(name="orders-payment-window").func == "orders.tasks.cancel_unpaid_orders"


def test_the_scheduled_sweeper_resolves_a_lost_callback(initiated, fake_daraja, settings, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)
    Schedule.objects.exclude(name="payments-status-sweeper").update(
        next_run=timezone.now() + dt.timedelta(days=1)
    )
    fake_daraja.answer_query("0")

    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY + 61):
        scheduler(broker=get_broker())

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    [task] = Success.objects.filter(func="payments.tasks.reconcile_payments")
    assert task.result["claimed"] == 1
    assert Schedule.objects.get(name="payments-status-sweeper").next_run > initiated.initiated_at


# --- orders follow: the payment window --------------------------------------------------------------
@pytest.fixture
def cancellations():
    seen = []

    def receive(sender, order, from_status, to_status, reason, **kwargs):
        seen.append((order.pk, from_status, to_status, reason))

    order_status_changed.connect(receive, dispatch_uid="test-cancellations")
    yield seen
    order_status_changed.disconnect(dispatch_uid="test-cancellations")


def after_window(order):
    return time_machine.travel(order.payment_due_at + dt.timedelta(seconds=1), tick=False)


def test_unpaid_order_is_cancelled_when_its_payment_window_closes(
    initiated, fake_daraja, cancellations, settings
):
    order = initiated.order
    fake_daraja.answer_query("1032")
    with at(initiated, settings.MPESA_FIRST_QUERY_DELAY + 1):
        sweep()

    assert order_cancel_unpaid() == []  # window still open
    with after_window(order):
        assert order_cancel_unpaid() == [order.pk]

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.cancelled_at is not None
    assert cancellations == [(order.pk, OrderStatus.PENDING, OrderStatus.CANCELLED, "payment_window_closed")]


@pytest.mark.parametrize(
    "status", [PaymentStatus.INITIATED, PaymentStatus.NEEDS_REVIEW, PaymentStatus.COMPLETED]
)
def test_an_order_is_never_cancelled_while_an_attempt_is_in_flight_or_paid(initiated, cancellations, status):
    Payment.objects.filter(pk=initiated.pk).update(status=status)

    with after_window(initiated.order):
        assert order_cancel_unpaid() == []

    assert cancellations == []


def test_cash_on_delivery_orders_have_no_payment_window(place_order, fake_daraja, cancellations):
    order, payment = place_order(method=PaymentMethod.COD)

    with time_machine.travel(timezone.now() + dt.timedelta(days=30)):
        assert order_cancel_unpaid() == []
    assert order.payment_due_at is None
