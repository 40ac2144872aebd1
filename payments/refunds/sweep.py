"""The refund sweeper: approved refunds nobody sent, and refunds that went quiet. Never re-sends money.

It only claims work and hands every Daraja call to its own task (one refund each), so a slow Daraja slows
refunds down but can never push a sweep past its task timeout.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.models import EventSource, Refund, RefundEventKind, RefundStatus
from payments.refunds.approval import refund_submit_enqueue
from payments.refunds.status_check import refund_check_claim, refund_check_enqueue
from payments.state import lock_refund, refund_transition

logger = logging.getLogger(__name__)

# An approved refund whose submit task never ran (the enqueue was lost) is sent by the sweeper after this.
APPROVED_UNSENT_GRACE = dt.timedelta(seconds=60)
SWEEP_BATCH = 100


@transaction.atomic
def _mark_unknown(refund_id: int, *, expected: str, message: str, now: dt.datetime) -> bool:
    refund = lock_refund(refund_id)
    if refund.status != expected:
        return False
    # Due at once: the same sweep asks Transaction Status next.
    refund_transition(
        refund,
        RefundStatus.UNKNOWN,
        kind=RefundEventKind.OUTCOME_UNKNOWN,
        source=EventSource.SYSTEM,
        message=message,
        next_check_at=now,
    )
    return True


def _claim_send(refund_id: int, now: dt.datetime) -> bool:
    """Due again only after the grace period: a slow queue must not collect one more task every minute."""
    return bool(
        Refund.objects.filter(pk=refund_id, status=RefundStatus.APPROVED)
        .filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True))
        .update(next_check_at=now + APPROVED_UNSENT_GRACE)
    )


def refunds_sweep(*, now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    counts = {"sent": 0, "unknown": 0, "status_queries": 0}

    def each(queryset, step, counter: str) -> None:
        for refund_id in list(queryset.values_list("pk", flat=True)[:SWEEP_BATCH]):
            try:
                counts[counter] += int(bool(step(refund_id)))
            except Exception:
                # One bad row must not stop the sweep; it is logged and tried again next time.
                logger.exception("Refund sweep step failed for refund #%s", refund_id)

    def send(refund_id: int) -> bool:
        if not _claim_send(refund_id, now):
            return False
        refund_submit_enqueue(refund_id=refund_id, claimed=True)
        return True

    def ask(refund_id: int) -> bool:
        if not refund_check_claim(refund_id, now=now):
            return False
        refund_check_enqueue(refund_id=refund_id)
        return True

    each(
        Refund.objects.filter(status=RefundStatus.APPROVED)
        .filter(
            Q(next_check_at__lte=now)
            | Q(next_check_at__isnull=True, approved_at__lte=now - APPROVED_UNSENT_GRACE)
        )
        .order_by("approved_at"),
        send,
        "sent",
    )
    each(
        Refund.objects.filter(
            status=RefundStatus.SUBMITTING,
            submitted_at__lte=now - dt.timedelta(seconds=settings.REFUND_SUBMITTING_TIMEOUT),
        ).order_by("submitted_at"),
        lambda refund_id: _mark_unknown(
            refund_id,
            expected=RefundStatus.SUBMITTING,
            message="No answer recorded since it was sent (the worker stopped mid-call?). Not re-sent.",
            now=now,
        ),
        "unknown",
    )
    each(
        Refund.objects.filter(status=RefundStatus.SUBMITTED, next_check_at__lte=now).order_by(
            "next_check_at"
        ),
        lambda refund_id: _mark_unknown(
            refund_id,
            expected=RefundStatus.SUBMITTED,
            message="No Result from Daraja in time; asking Transaction Status.",
            now=now,
        ),
        "unknown",
    )
    each(
        Refund.objects.filter(status=RefundStatus.UNKNOWN)
        .filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True))
        .order_by("next_check_at"),
        ask,
        "status_queries",
    )
    return counts
