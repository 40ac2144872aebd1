"""Daraja's asynchronous answers about refunds (ResultURL and QueueTimeOutURL), routed and applied.

`result_apply` and `queue_timeout_apply` are the inbox's handlers for those kinds: each finds the refund a
request is about (by our ids, or a reversal by the receipt it reverses) and applies it, with the payment,
the refund and the inbox row locked in that order.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.daraja.async_results import ALREADY_REVERSED, AsyncResult, QueueTimeout
from payments.inbox import inbox_mark_processed
from payments.models import (
    CallbackInbox,
    EventSource,
    InboxStatus,
    Refund,
    RefundEventKind,
    RefundMethod,
    RefundStatus,
)
from payments.refunds.outcome import refund_disagree, refund_succeed, result_summary
from payments.refunds.status_check import refund_apply_status_result, reversal_sent_again
from payments.state import event_record, lock_inbox, lock_payment_and_refund, refund_transition

logger = logging.getLogger(__name__)

AWAITING_RESULT = (RefundStatus.SUBMITTING, RefundStatus.SUBMITTED, RefundStatus.UNKNOWN)


# --- routing (the inbox's handlers) -----------------------------------------------------------------
def _id_filter(originator: str, conversation: str, *, originator_fields, conversation_fields) -> Q | None:
    condition = Q()
    if originator:
        for name in originator_fields:
            condition |= Q(**{name: originator})
    if conversation:
        for name in conversation_fields:
            condition |= Q(**{name: conversation})
    return condition or None


def _refund_for_status_query(originator: str, conversation: str) -> Refund | None:
    condition = _id_filter(
        originator,
        conversation,
        originator_fields=["status_query_originator_id"],
        conversation_fields=["status_query_conversation_id"],
    )
    return None if condition is None else Refund.objects.filter(condition).order_by("-pk").first()


def _refund_for_request(originator: str, conversation: str) -> Refund | None:
    condition = _id_filter(
        originator,
        conversation,
        originator_fields=["originator_conversation_id", "idempotency_key"],
        conversation_fields=["conversation_id"],
    )
    return None if condition is None else Refund.objects.filter(condition).order_by("-pk").first()


def _reversal_in_flight_for(receipt: str) -> Refund | None:
    if not receipt:
        return None
    reversals = Refund.objects.filter(method=RefundMethod.REVERSAL, original_receipt=receipt).order_by("-pk")
    # In flight first; else the latest one (a late Result of a re-sent reversal still brings its receipt).
    return reversals.filter(status__in=AWAITING_RESULT).first() or reversals.first()


def result_apply(inbox: CallbackInbox, result: AsyncResult) -> bool:
    ids = (result.originator_conversation_id, result.conversation_id)
    refund = _refund_for_status_query(*ids)
    if refund is not None:
        refund_apply_status_result(refund_id=refund.pk, result=result, inbox=inbox)
        return True
    # A worker that died after Daraja accepted never stored the reversal's ids: its Result is still ours,
    # recognised by the receipt it reverses.
    refund = _refund_for_request(*ids) or _reversal_in_flight_for(result.text("OriginalTransactionID"))
    if refund is not None:
        refund_apply_result(refund_id=refund.pk, result=result, inbox=inbox)
        return True
    return False


def queue_timeout_apply(inbox: CallbackInbox, timeout: QueueTimeout) -> bool:
    ids = (timeout.originator_conversation_id, timeout.conversation_id)
    refund = _refund_for_request(*ids)
    if refund is None and timeout.command_id == "TransactionReversal":
        refund = _reversal_in_flight_for(timeout.transaction_id)
    if refund is not None:
        refund_apply_queue_timeout(refund_id=refund.pk, timeout=timeout, inbox=inbox)
        return True
    refund = _refund_for_status_query(*ids)
    if refund is not None:
        _status_query_timed_out(refund.pk, inbox)
        return True
    return False


@transaction.atomic
def _status_query_timed_out(refund_id: int, inbox: CallbackInbox) -> None:
    payment, refund = lock_payment_and_refund(refund_id)
    inbox = lock_inbox(inbox.pk)
    if inbox.status == InboxStatus.PROCESSED:
        return
    event_record(
        refund,
        kind=RefundEventKind.STATUS_RESULT,
        source=EventSource.RESULT,
        inbox=inbox,
        message="The Transaction Status request timed out in Daraja's queue; it will be asked again.",
    )
    inbox_mark_processed(inbox, payment_id=payment.pk)


def _fill_ids(refund: Refund, result: AsyncResult) -> dict:
    fields = {}
    if not refund.originator_conversation_id and result.originator_conversation_id:
        fields["originator_conversation_id"] = result.originator_conversation_id
    if not refund.conversation_id and result.conversation_id:
        fields["conversation_id"] = result.conversation_id
    return fields


# --- applying ---------------------------------------------------------------------------------------
@transaction.atomic
def refund_apply_result(
    *,
    refund_id: int,
    result: AsyncResult,
    inbox: CallbackInbox | None = None,
    source: str = EventSource.RESULT,
) -> Refund:
    """Apply a Reversal or B2C Result. Idempotent: settled refunds record repeats and change nothing."""
    payment, refund = lock_payment_and_refund(refund_id)
    if inbox is not None:
        inbox = lock_inbox(inbox.pk)
        if inbox.status == InboxStatus.PROCESSED:
            return refund
    data = result_summary(result)
    code = result.result_code
    success = result.is_success or (refund.method == RefundMethod.REVERSAL and code == ALREADY_REVERSED)
    receipt = (result.transaction_id or result.text("TransactionReceipt")) if result.is_success else ""
    record = {"source": source, "inbox": inbox, "data": data}

    if not result.is_final:
        event_record(
            refund,
            kind=RefundEventKind.NOTE,
            message="Result pending further messages (ResultType 1)",
            **record,
        )
    elif refund.status in AWAITING_RESULT:
        fields = _fill_ids(refund, result)
        if success:
            message = (
                "Already reversed (R000001): the money went back earlier."
                if code == ALREADY_REVERSED
                else f"Refunded, M-Pesa receipt {receipt}"
            )
            refund_succeed(
                payment,
                refund,
                message=message,
                transaction_id=receipt or refund.transaction_id,
                result_code=code,
                result_desc=result.result_desc,
                **fields,
                **record,
            )
        elif reversal_sent_again(refund):
            # This request failing says nothing of the other one, which may have run or may still run (a
            # queue timeout is not a failure): unknown, settled by Transaction Status on the receipt it
            # reverses, or by staff from the statement. Failing it would hide a reversal that did go out.
            message = (
                f"This request failed: {result.result_desc} ({code}). Not concluded: another request of this "
                "re-sent reversal may have run; Transaction Status is asked about the receipt."
            )
            if refund.status == RefundStatus.UNKNOWN:
                event_record(refund, kind=RefundEventKind.RESULT_APPLIED, message=message, **record)
            else:
                refund_transition(
                    refund,
                    RefundStatus.UNKNOWN,
                    kind=RefundEventKind.RESULT_APPLIED,
                    message=message,
                    next_check_at=timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL),
                    **fields,
                    **record,
                )
        else:
            logger.warning("Refund #%s failed with ResultCode %s", refund.pk, code)
            refund_transition(
                refund,
                RefundStatus.FAILED,
                kind=RefundEventKind.RESULT_APPLIED,
                message=f"Refund failed: {result.result_desc} ({code})",
                result_code=code,
                result_desc=result.result_desc,
                **fields,
                **record,
            )
    elif refund.status == RefundStatus.FAILED and success and receipt:
        # Money moved after we called the refund failed: a receipt-bearing success wins.
        refund_succeed(
            payment,
            refund,
            message=f"Late success with receipt {receipt} after the refund was marked failed",
            transaction_id=receipt,
            result_code=code,
            result_desc=result.result_desc,
            **record,
        )
    elif refund.status == RefundStatus.SUCCEEDED and success and receipt and not refund.transaction_id:
        # Settled on R000001 or by staff without a receipt: the original Result brings it now.
        if Refund.objects.filter(transaction_id=receipt).exclude(pk=refund.pk).exists():
            refund_disagree(payment, refund, message=f"Receipt {receipt} belongs to another refund", **record)
        else:
            refund.transaction_id = receipt
            refund.save(update_fields=["transaction_id", "updated_at"])
            event_record(
                refund, kind=RefundEventKind.RESULT_APPLIED, message=f"Receipt {receipt} filled in", **record
            )
    elif (refund.status in (RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED) and success) or (
        refund.status == RefundStatus.FAILED and not success
    ):
        event_record(refund, kind=RefundEventKind.DUPLICATE_RESULT, message=f"Repeat result {code}", **record)
    else:
        refund_disagree(payment, refund, message=f"Result {code} for a {refund.status} refund", **record)
    if inbox is not None:
        inbox_mark_processed(inbox, payment_id=payment.pk)
    return refund


@transaction.atomic
def refund_apply_queue_timeout(
    *, refund_id: int, timeout: QueueTimeout, inbox: CallbackInbox | None = None
) -> Refund:
    """The request timed out in Daraja's queue: unknown, not failed (it may still run, or may have run)."""
    payment, refund = lock_payment_and_refund(refund_id)
    if inbox is not None:
        inbox = lock_inbox(inbox.pk)
        if inbox.status == InboxStatus.PROCESSED:
            return refund
    data = {
        "OriginatorConversationID": timeout.originator_conversation_id,
        "ConversationID": timeout.conversation_id,
        "CommandID": timeout.command_id,
    }
    if refund.status in (RefundStatus.SUBMITTING, RefundStatus.SUBMITTED):
        fields = {}
        if not refund.originator_conversation_id and timeout.originator_conversation_id:
            fields["originator_conversation_id"] = timeout.originator_conversation_id
        refund_transition(
            refund,
            RefundStatus.UNKNOWN,
            kind=RefundEventKind.QUEUE_TIMEOUT,
            source=EventSource.RESULT,
            inbox=inbox,
            data=data,
            message="Timed out in Daraja's queue; the money may or may not have moved. Transaction Status will tell.",
            next_check_at=timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL),
            **fields,
        )
    else:
        event_record(
            refund,
            kind=RefundEventKind.QUEUE_TIMEOUT,
            source=EventSource.RESULT,
            inbox=inbox,
            data=data,
            message=f"Queue timeout for a {refund.status} refund; nothing changed.",
        )
    if inbox is not None:
        inbox_mark_processed(inbox, payment_id=payment.pk)
    return refund
