"""Transaction Status: asking Daraja what became of a refund whose outcome is unknown."""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments import inbox as inbox_module
from payments.callback_urls import queue_timeout_url, result_url
from payments.daraja.async_results import INVALID_ORIGINAL_TRANSACTION, AsyncResult
from payments.daraja.client import get_client
from payments.daraja.errors import DarajaError
from payments.daraja.security import SecurityCredentialError
from payments.exceptions import RefundPermissionDenied
from payments.models import (
    CallbackInbox,
    EventSource,
    InboxStatus,
    Refund,
    RefundEventKind,
    RefundMethod,
    RefundStatus,
)
from payments.refunds.approval import REFUND_AUDIT_FIELDS
from payments.refunds.outcome import refund_succeed, result_summary
from payments.state import event_record, lock_inbox, lock_payment_and_refund, lock_refund, refund_transition

logger = logging.getLogger(__name__)


def status_backoff(count: int) -> dt.timedelta:
    seconds = settings.REFUND_STATUS_INTERVAL * 2 ** min(count, 16)
    return dt.timedelta(seconds=min(seconds, settings.REFUND_STATUS_INTERVAL_MAX))


def reversal_sent_again(refund: Refund) -> bool:
    """A reversal staff sent again: its latest request may have been answered "already reversed" because
    an earlier one ran, so "no such transaction" about the latest request proves nothing."""
    return (
        refund.method == RefundMethod.REVERSAL
        and refund.events.filter(kind=RefundEventKind.SUBMITTING, source=EventSource.ADMIN).exists()
    )


def refund_check_claim(refund_id: int, *, now: dt.datetime | None = None) -> bool:
    """Push the next check back before asking, so overlapping sweeps (or clusters) ask only once."""
    now = now or timezone.now()
    with transaction.atomic():
        refund = lock_refund(refund_id)
        if refund.status != RefundStatus.UNKNOWN:
            return False
        refund.next_check_at = now + status_backoff(refund.status_query_count)
        refund.status_query_count += 1
        refund.save(update_fields=["next_check_at", "status_query_count", "updated_at"])
    return True


def refund_check_status(
    *, refund_id: int, actor=None, source: str = EventSource.SYSTEM, claimed: bool = False
) -> Refund:
    """Ask Transaction Status about an unknown refund; the answer comes to ResultURL.

    `claimed`: the sweeper already pushed the next check back (refund_check_claim) before handing it here.
    """
    if actor is not None and (not actor.is_active or not actor.has_perm("payments.query_payment")):
        raise RefundPermissionDenied("You are not allowed to ask M-Pesa about refunds.")
    if not claimed and not refund_check_claim(refund_id):
        return Refund.objects.get(pk=refund_id)
    refund = Refund.objects.get(pk=refund_id)
    # A reversal sent again is asked about by the receipt it reverses: the answer then shows the reversal
    # whichever of its requests made it.
    by_request_id = (
        "" if reversal_sent_again(refund) else (refund.originator_conversation_id or refund.conversation_id)
    )
    query = (
        {"original_conversation_id": by_request_id}
        if by_request_id
        else {"transaction_id": refund.original_receipt}
    )
    try:
        accepted = get_client().transaction_status(
            **query, result_url=result_url(), timeout_url=queue_timeout_url(), remarks="Refund reconciliation"
        )
    except (DarajaError, SecurityCredentialError, ValueError) as exc:
        with transaction.atomic():
            refund = lock_refund(refund_id)
            before = field_values(refund, REFUND_AUDIT_FIELDS)
            event_record(
                refund,
                kind=RefundEventKind.STATUS_QUERY_FAILED,
                source=source,
                actor=actor,
                message=getattr(exc, "message", str(exc)),
                data={"query": query, "errorCode": getattr(exc, "error_code", "")},
            )
            _audit_check(
                refund,
                actor=actor,
                before=before,
                data={"query": query, "unanswered": getattr(exc, "message", str(exc))},
            )
        return refund
    with transaction.atomic():
        refund = lock_refund(refund_id)
        before = field_values(refund, REFUND_AUDIT_FIELDS)
        refund.status_query_originator_id = accepted.originator_conversation_id
        refund.status_query_conversation_id = accepted.conversation_id
        refund.save(
            update_fields=["status_query_originator_id", "status_query_conversation_id", "updated_at"]
        )
        event_record(
            refund,
            kind=RefundEventKind.STATUS_QUERY_SENT,
            source=source,
            actor=actor,
            message="Transaction Status asked "
            + ("by request id" if by_request_id else "by the original receipt"),
            data={
                "query": query,
                "OriginatorConversationID": accepted.originator_conversation_id,
                "ConversationID": accepted.conversation_id,
            },
        )
        _audit_check(refund, actor=actor, before=before, data={"query": query})
    inbox_module.inbox_reprocess_unmatched(
        kinds=inbox_module.ASYNC_KINDS,
        correlation_ids=[accepted.originator_conversation_id, accepted.conversation_id],
    )
    return Refund.objects.get(pk=refund_id)


def _audit_check(refund: Refund, *, actor, before: dict, data: dict) -> None:
    """A person asked Transaction Status now (the sweeper's questions are only refund events). Its answer
    comes later to ResultURL and is the system's."""
    if actor is None:
        return
    audit_record(
        action=AuditAction.REFUND_QUERIED,
        actor=actor,
        obj=refund,
        changes=changes_between(before, field_values(refund, REFUND_AUDIT_FIELDS)),
        data=data,
    )


def refund_check_enqueue(*, refund_id: int) -> None:
    """Hand a claimed Transaction Status question to a worker; a lost one is asked at the next due check."""
    from common.queue import enqueue

    try:
        enqueue("payments.tasks.refund_check_status", refund_id, task_name=f"refund-status-{refund_id}")
    except Exception:
        logger.exception("Could not enqueue Transaction Status for refund #%s; asked again later", refund_id)


def _status_verdict(refund: Refund, result: AsyncResult) -> tuple[str, str, str]:
    """('succeeded' | 'failed' | 'inconclusive', receipt, explanation) for a Transaction Status Result."""
    if result.result_code == "0":
        receipt = result.text("ReceiptNo")
        state = result.text("TransactionStatus")
        about_originator = result.text("OriginatorConversationID")
        about_conversation = result.text("ConversationID")
        ours = bool(
            (
                about_originator
                and about_originator in {refund.originator_conversation_id, refund.idempotency_key}
            )
            or (about_conversation and about_conversation == refund.conversation_id)
            or (refund.transaction_id and receipt == refund.transaction_id)
            or (
                # Asked by the original receipt: only an answer describing a reversal of it is about us.
                refund.method == RefundMethod.REVERSAL
                and "revers" in result.text("ReasonType").lower()
                and receipt
                and receipt != refund.original_receipt
            )
        )
        if not ours:
            return (
                "inconclusive",
                "",
                f"Transaction Status describes another transaction ({result.text('ReasonType') or receipt}); "
                "the refund's outcome is still unknown.",
            )
        if state.lower() == "completed":
            return "succeeded", receipt, f"Transaction Status: completed, receipt {receipt}"
        return "inconclusive", "", f"Transaction Status: {state or 'no status given'}"
    if result.result_code == INVALID_ORIGINAL_TRANSACTION:
        asked_by_request_id = bool(refund.originator_conversation_id or refund.conversation_id)
        sent_at = refund.accepted_at or refund.submitted_at
        grace = dt.timedelta(seconds=settings.REFUND_NOT_FOUND_GRACE)
        if asked_by_request_id and sent_at and timezone.now() - sent_at >= grace:
            return "failed", "", "Transaction Status knows no such transaction: nothing was paid out."
        return "inconclusive", "", "Transaction Status found nothing (yet); asking again later."
    return "inconclusive", "", f"Transaction Status answered {result.result_code}: {result.result_desc}"


@transaction.atomic
def refund_apply_status_result(
    *, refund_id: int, result: AsyncResult, inbox: CallbackInbox | None = None
) -> Refund:
    payment, refund = lock_payment_and_refund(refund_id)
    if inbox is not None:
        inbox = lock_inbox(inbox.pk)
        if inbox.status == InboxStatus.PROCESSED:
            return refund
    verdict, receipt, message = _status_verdict(refund, result)
    data = {**result_summary(result), "verdict": verdict}
    record = {"source": EventSource.STATUS_QUERY, "inbox": inbox, "data": data}
    awaiting = (RefundStatus.SUBMITTING, RefundStatus.SUBMITTED, RefundStatus.UNKNOWN)
    if refund.status not in awaiting or verdict == "inconclusive":
        if refund.status not in awaiting:
            message = f"{message} (the refund is already {refund.status})"
        event_record(refund, kind=RefundEventKind.STATUS_RESULT, message=message, **record)
    elif verdict == "succeeded":
        refund_succeed(
            payment,
            refund,
            message=message,
            transaction_id=receipt or refund.transaction_id,
            result_code="0",
            result_desc=result.result_desc,
            **record,
        )
    elif refund.status != RefundStatus.UNKNOWN:
        # Transaction Status is only asked about unknown refunds: a "not paid" answer reaching a refund that
        # was sent again since is about the earlier request and must not fail the one now in flight.
        event_record(
            refund,
            kind=RefundEventKind.STATUS_RESULT,
            message=f"{message} (about an earlier request; the refund was sent again and is {refund.status})",
            **record,
        )
    elif reversal_sent_again(refund):
        event_record(
            refund,
            kind=RefundEventKind.STATUS_RESULT,
            message=f"{message} (not concluded: an earlier request of this re-sent reversal may have run; "
            "Transaction Status is asked about the receipt instead)",
            **record,
        )
    else:
        refund_transition(
            refund,
            RefundStatus.FAILED,
            kind=RefundEventKind.STATUS_RESULT,
            message=message,
            result_code=result.result_code,
            result_desc=message,
            **record,
        )
    if inbox is not None:
        inbox_module.inbox_mark_processed(inbox, payment_id=payment.pk)
    return refund
