"""Maker-checker: approving and rejecting refund requests, and handing approved ones to a worker."""

import logging

from django.conf import settings
from django.db import transaction

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.exceptions import IllegalTransition, RefundPermissionDenied
from payments.models import EventSource, Refund, RefundEventKind, RefundStatus
from payments.permissions import require_perm
from payments.state import lock_refund, refund_transition

logger = logging.getLogger(__name__)

# What a person's action on a refund may change; its audit record keeps the before/after of those that did.
REFUND_AUDIT_FIELDS = (
    "status",
    "method",
    "amount",
    "reason",
    "internal_note",
    "approved_by",
    "rejected_by",
    "transaction_id",
    "result_code",
    "result_desc",
    "status_query_originator_id",
    "status_query_conversation_id",
)


def refund_auto_approve(refund: Refund, *, actor, source: str) -> None:
    """Within the threshold the requester's own permission is enough (inside the request's transaction)."""
    refund_transition(
        refund,
        RefundStatus.APPROVED,
        kind=RefundEventKind.APPROVED,
        source=source,
        actor=actor,
        message="Approved automatically: refunds on this payment stay at or below the approval "
        f"threshold (KES {settings.REFUND_APPROVAL_THRESHOLD}).",
        approved_by=actor,
    )
    refund_submit_after_commit(refund.pk)


@transaction.atomic
def refund_approve(*, refund_id: int, actor, source: str = EventSource.ADMIN) -> Refund:
    """A second person with payments.approve_refund, never the requester."""
    refund = lock_refund(refund_id)
    require_perm(
        actor,
        "payments.approve_refund",
        "You are not allowed to approve refunds.",
        error=RefundPermissionDenied,
    )
    if refund.requested_by_id == actor.pk:
        raise RefundPermissionDenied("A second person must approve this refund: you requested it.")
    if refund.status != RefundStatus.REQUESTED:
        raise IllegalTransition(
            f"Only refunds awaiting approval can be approved; this one is {refund.status}."
        )
    before = field_values(refund, REFUND_AUDIT_FIELDS)
    refund_transition(
        refund,
        RefundStatus.APPROVED,
        kind=RefundEventKind.APPROVED,
        source=source,
        actor=actor,
        approved_by=actor,
    )
    audit_record(
        action=AuditAction.REFUND_APPROVED,
        actor=actor,
        obj=refund,
        changes=changes_between(before, field_values(refund, REFUND_AUDIT_FIELDS)),
    )
    refund_submit_after_commit(refund.pk)
    return refund


@transaction.atomic
def refund_reject(*, refund_id: int, actor, note: str = "", source: str = EventSource.ADMIN) -> Refund:
    """An approver says no, or the requester withdraws the request; nothing was sent."""
    refund = lock_refund(refund_id)
    if (
        actor is None
        or not actor.is_active
        or not (actor.has_perm("payments.approve_refund") or refund.requested_by_id == actor.pk)
    ):
        raise RefundPermissionDenied("You are not allowed to reject refunds.")
    if refund.status != RefundStatus.REQUESTED:
        raise IllegalTransition(
            f"Only refunds awaiting approval can be rejected; this one is {refund.status}."
        )
    before = field_values(refund, REFUND_AUDIT_FIELDS)
    refund_transition(
        refund,
        RefundStatus.REJECTED,
        kind=RefundEventKind.REJECTED,
        source=source,
        actor=actor,
        message=note[:500] or "Rejected",
        rejected_by=actor,
    )
    audit_record(
        action=AuditAction.REFUND_REJECTED,
        actor=actor,
        obj=refund,
        changes=changes_between(before, field_values(refund, REFUND_AUDIT_FIELDS)),
        reason=note,
    )
    return refund


def refund_submit_after_commit(refund_id: int) -> None:
    transaction.on_commit(lambda: refund_submit_enqueue(refund_id=refund_id), robust=True)


def refund_submit_enqueue(*, refund_id: int, claimed: bool = False) -> None:
    """Hand the send to django-q2. If the broker is unavailable the refund stays approved; the sweeper sends it.

    `claimed`: the sweeper found it due and pushed its next turn back; the task sends it now.
    """
    from common.queue import enqueue

    try:
        enqueue("payments.tasks.refund_submit", refund_id, claimed, task_name=f"refund-submit-{refund_id}")
    except Exception:
        logger.exception(
            "Could not enqueue the submission of refund #%s; the sweeper will send it", refund_id
        )
