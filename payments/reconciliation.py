"""What callbacks miss, the sweepers find: scheduled every minute (payments/schedules.py).

- Attempts still `initiated` are asked with STK Query once `next_query_at` is due (MPESA_FIRST_QUERY_DELAY
  after the push), with a doubling interval capped at MPESA_QUERY_INTERVAL_MAX. The sweep only claims due
  attempts (pushing `next_query_at` back, so overlapping sweeps or clusters ask once) and hands each to
  its own task: a slow Daraja slows settlement but never pushes a sweep past its task timeout.
- "Being processed" leaves an attempt as it is; a final answer goes through payment_apply_result (source
  `query`), like a callback. At the deadline (MPESA_PAYMENT_DEADLINE after initiated_at) an attempt that
  Daraja still says is being processed becomes `failed` (expired). One whose question got no answer (5xx,
  Spike Arrest, timeout) is never expired on that: it stays open, flagged `query_failing`, and is asked
  again with the capped backoff. A success arriving after expiry still lands in review (late_payment).
- Attempts stuck in `pending` (the process stopped between committing the attempt and hearing back from the
  push) have no CheckoutRequestID, so they cannot be queried: after MPESA_PENDING_TIMEOUT they become
  `failed` (failure class unknown), which keeps the order payable. If the push did reach Daraja after all,
  its callback waits in the inbox as unmatched, where staff can attach it.
- Inbox rows a dead worker left `received`, and `failed` or `unmatched` ones, are processed again, at most
  INBOX_MAX_ATTEMPTS times each; after that they show as needing attention.
"""

import datetime as dt
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from payments import services
from payments.inbox import inbox_process
from payments.models import (
    CallbackInbox,
    EventKind,
    EventSource,
    FailureClass,
    InboxStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from payments.state import lock_payment, payment_transition

logger = logging.getLogger(__name__)

SWEEP_BATCH = 200
SWEEP_PERIOD_SECONDS = 60  # the status sweeper's schedule (payments/schedules.py)


def sweep_batch_size() -> int:
    """Attempts one sweep hands to query tasks: with a Daraja rate limit, as many STK Queries as it lets
    through until the next sweep (fewer would leave Daraja's budget unused while attempts wait; more would
    only queue), else SWEEP_BATCH."""
    rate = settings.MPESA_RATE_LIMIT_PER_SECOND
    return rate * SWEEP_PERIOD_SECONDS if rate > 0 else SWEEP_BATCH


def sweep_time_budget() -> float:
    """Seconds a sweep may spend: half the task timeout, whatever the database or Daraja are doing."""
    return settings.Q_CLUSTER.get("timeout", 60) / 2


def payment_deadline(payment: Payment) -> dt.datetime:
    started = payment.initiated_at or payment.created_at
    return started + dt.timedelta(seconds=settings.MPESA_PAYMENT_DEADLINE)


def _next_query_at(*, now: dt.datetime, query_count: int, deadline: dt.datetime) -> dt.datetime:
    interval = min(
        settings.MPESA_QUERY_INTERVAL * 2 ** min(query_count, 16), settings.MPESA_QUERY_INTERVAL_MAX
    )
    next_at = now + dt.timedelta(seconds=interval)
    # The last question is asked at the deadline itself, not up to an interval after it.
    return min(next_at, deadline) if now < deadline else next_at


def payment_query_claim(payment: Payment, now: dt.datetime) -> bool:
    """Push next_query_at back before asking, so overlapping sweeps (or clusters) ask only once."""
    next_at = _next_query_at(now=now, query_count=payment.query_count, deadline=payment_deadline(payment))
    return bool(
        Payment.objects.filter(
            pk=payment.pk, status=PaymentStatus.INITIATED, next_query_at=payment.next_query_at
        ).update(next_query_at=next_at)
    )


def payment_reconcile(*, payment_id: int, now: dt.datetime | None = None) -> Payment:
    """One sweeper step for a claimed initiated attempt: ask Daraja, and expire it at the deadline when
    Daraja answered that it is still being processed."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != PaymentStatus.INITIATED or payment.method != PaymentMethod.MPESA:
        return payment
    # A final answer here (success above all) wins over expiry.
    payment = services.payment_query_status(payment_id=payment_id, source=EventSource.QUERY)
    now = now or timezone.now()
    if (
        payment.status == PaymentStatus.INITIATED
        and not payment.query_failing
        and now >= payment_deadline(payment)
    ):
        payment = payment_expire(payment_id=payment_id, now=now)
    return payment


def payment_reconcile_enqueue(*, payment_id: int) -> None:
    from common.queue import enqueue

    try:
        enqueue("payments.tasks.payment_reconcile", payment_id, task_name=f"reconcile-{payment_id}")
    except Exception:
        # Claimed but not queued: it is due again at its new next_query_at.
        logger.exception("Could not enqueue the STK Query of payment #%s", payment_id)


@transaction.atomic
def payment_expire(*, payment_id: int, now: dt.datetime | None = None) -> Payment:
    """Past the deadline and still "being processed": the prompt is gone, the order stays payable."""
    now = now or timezone.now()
    payment = lock_payment(payment_id)
    if payment.status != PaymentStatus.INITIATED or payment.query_failing or now < payment_deadline(payment):
        return payment
    payment_transition(
        payment,
        PaymentStatus.FAILED,
        kind=EventKind.EXPIRED,
        source=EventSource.SYSTEM,
        message=f"No final answer {settings.MPESA_PAYMENT_DEADLINE} s after the push; "
        f"{payment.query_count} STK Queries asked.",
        failure_class=FailureClass.EXPIRED,
        result_desc="The payment request expired before it was answered.",
    )
    return payment


@transaction.atomic
def payment_abandon_push(*, payment_id: int, now: dt.datetime | None = None) -> Payment:
    """A pending M-Pesa attempt whose push never got an answer recorded (the process stopped mid-push)."""
    now = now or timezone.now()
    payment = lock_payment(payment_id)
    cutoff = now - dt.timedelta(seconds=settings.MPESA_PENDING_TIMEOUT)
    if (
        payment.status != PaymentStatus.PENDING
        or payment.method != PaymentMethod.MPESA
        or payment.created_at > cutoff
    ):
        return payment
    payment_transition(
        payment,
        PaymentStatus.FAILED,
        kind=EventKind.PUSH_UNKNOWN,
        source=EventSource.SYSTEM,
        message="The STK push never got an answer recorded (the process stopped mid-push). Without a "
        "CheckoutRequestID it cannot be queried; a callback that still comes waits in the inbox as unmatched.",
        failure_class=FailureClass.UNKNOWN,
        result_desc="The payment request could not be confirmed with M-Pesa.",
    )
    return payment


def payments_sweep(*, now: dt.datetime | None = None) -> dict:
    """The status sweeper: hand due initiated attempts to their query tasks, settle stuck pushes."""
    now = now or timezone.now()
    stop_at = time.monotonic() + sweep_time_budget()
    counts = {"claimed": 0, "abandoned": 0}
    due = (
        Payment.objects.filter(method=PaymentMethod.MPESA, status=PaymentStatus.INITIATED)
        .filter(Q(next_query_at__lte=now) | Q(next_query_at__isnull=True))
        .order_by(F("next_query_at").asc(nulls_first=True), "pk")
        .only("pk", "next_query_at", "query_count", "initiated_at", "created_at")[: sweep_batch_size()]
    )
    for payment in list(due):
        if time.monotonic() > stop_at:
            break
        if payment_query_claim(payment, now):
            counts["claimed"] += 1
            payment_reconcile_enqueue(payment_id=payment.pk)
    cutoff = now - dt.timedelta(seconds=settings.MPESA_PENDING_TIMEOUT)
    stuck = Payment.objects.filter(
        method=PaymentMethod.MPESA, status=PaymentStatus.PENDING, created_at__lte=cutoff
    ).values_list("pk", flat=True)[:SWEEP_BATCH]
    for payment_id in list(stuck):
        if time.monotonic() > stop_at:
            break
        try:
            payment = payment_abandon_push(payment_id=payment_id, now=now)
        except Exception:
            logger.exception("Settling stuck payment #%s failed", payment_id)
            continue
        counts["abandoned"] += payment.status == PaymentStatus.FAILED
    return counts


def inbox_sweep(*, now: dt.datetime | None = None) -> dict:
    """Process again what a dead worker left behind, and failed or unmatched rows, a bounded number of times."""
    now = now or timezone.now()
    stop_at = time.monotonic() + sweep_time_budget()
    cutoff = now - dt.timedelta(seconds=settings.INBOX_RETRY_AFTER)
    rows = (
        CallbackInbox.objects.filter(attempts__lt=settings.INBOX_MAX_ATTEMPTS)
        .filter(
            Q(status=InboxStatus.RECEIVED, received_at__lte=cutoff)
            | Q(status=InboxStatus.FAILED)
            | Q(status=InboxStatus.UNMATCHED, received_at__lte=cutoff)
        )
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    counts = {"reprocessed": 0, "processed": 0}
    for inbox_id in list(rows):
        if time.monotonic() > stop_at:
            break
        try:
            inbox = inbox_process(inbox_id=inbox_id)
        except Exception:
            logger.exception("Reprocessing inbox #%s failed", inbox_id)
            continue
        counts["reprocessed"] += 1
        counts["processed"] += inbox.status == InboxStatus.PROCESSED
    return counts
