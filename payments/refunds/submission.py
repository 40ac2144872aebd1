"""Sending approved refunds to Daraja: recorded as `submitting` before the call, never sent twice blindly."""

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments import inbox as inbox_module
from payments.callback_urls import queue_timeout_url, result_url
from payments.daraja.async_results import AsyncAccepted
from payments.daraja.client import get_client
from payments.daraja.errors import DarajaBusy, DarajaError, DarajaOutcomeUnknown, DarajaUnavailable
from payments.daraja.security import SecurityCredentialError
from payments.exceptions import IllegalTransition, RefundPermissionDenied
from payments.models import EventSource, Refund, RefundEventKind, RefundMethod, RefundStatus
from payments.permissions import require_perm
from payments.refunds.approval import REFUND_AUDIT_FIELDS
from payments.refunds.lifecycle import REFUNDABLE_PAYMENT_STATUSES, refundable_amount
from payments.state import event_record, lock_payment_and_refund, lock_refund, refund_transition


def _still_fits(payment, refund) -> str:
    """Why this refund may no longer be sent, or "" when it still fits (checked under the payment lock)."""
    if payment.status not in REFUNDABLE_PAYMENT_STATUSES:
        return f"the payment is {payment.get_status_display().lower()}"
    remaining = refundable_amount(payment, excluding=refund)
    if refund.amount > remaining:
        return f"only KES {remaining} of the payment can still be refunded"
    return ""


def refund_submit(*, refund_id: int, claimed: bool = False) -> Refund:
    """Send an approved refund to Daraja. Runs outside any transaction (a task); safe to run twice.

    A refund deferred after "busy" waits for its turn, unless the sweeper `claimed` it as due.
    """
    with transaction.atomic():
        payment, refund = lock_payment_and_refund(refund_id)
        if refund.status != RefundStatus.APPROVED:
            return refund  # already sent or settled: a redelivered task changes nothing
        if not claimed and refund.next_check_at and refund.next_check_at > timezone.now():
            return refund  # deferred after "busy": the sweeper sends it when due
        # Right before money is sent, with the payment locked: what was approved must still fit.
        problem = _still_fits(payment, refund)
        if problem:
            refund_transition(
                refund,
                RefundStatus.FAILED,
                kind=RefundEventKind.SEND_REFUSED,
                source=EventSource.SYSTEM,
                message=f"Not sent: it no longer fits ({problem}).",
                result_desc=f"No longer fits: {problem}"[:512],
            )
            return refund
        fields = {}
        if refund.method == RefundMethod.B2C:
            fields["originator_conversation_id"] = refund.idempotency_key
        refund_transition(
            refund,
            RefundStatus.SUBMITTING,
            kind=RefundEventKind.SUBMITTING,
            source=EventSource.SYSTEM,
            message="Recorded before sending to Daraja",
            **fields,
        )
    return _send(refund_id)


def refund_resend_reversal(*, refund_id: int, actor) -> Refund:
    """Staff re-send a reversal whose outcome stayed unknown.

    Safe because Safaricom reverses a receipt at most once: if the first request went through, this one is
    answered R000001 (already reversed), which counts as success; otherwise it reverses now. B2C is never
    re-sent: a second B2C payment would pay the customer twice.
    """
    require_perm(
        actor,
        "payments.resolve_refund",
        "You are not allowed to re-send refunds.",
        error=RefundPermissionDenied,
    )
    with transaction.atomic():
        payment, refund = lock_payment_and_refund(refund_id)
        if refund.method != RefundMethod.REVERSAL or refund.status != RefundStatus.UNKNOWN:
            raise IllegalTransition("Only reversals whose outcome is unknown can be sent again.")
        problem = _still_fits(payment, refund)
        if problem:
            raise IllegalTransition(f"This reversal no longer fits ({problem}); resolve it by hand.")
        before = field_values(refund, REFUND_AUDIT_FIELDS)
        refund_transition(
            refund,
            RefundStatus.SUBMITTING,
            kind=RefundEventKind.SUBMITTING,
            source=EventSource.ADMIN,
            actor=actor,
            message="Re-sent by staff; a reversal that already ran is answered R000001 (already reversed).",
            data={
                "previous_OriginatorConversationID": refund.originator_conversation_id,
                "previous_ConversationID": refund.conversation_id,
            },
        )
        # Recorded as sent again before it is sent; what Daraja answers is the system's (refund events).
        audit_record(
            action=AuditAction.REFUND_RESENT,
            actor=actor,
            obj=refund,
            changes=changes_between(before, field_values(refund, REFUND_AUDIT_FIELDS)),
            data={
                "previous_OriginatorConversationID": refund.originator_conversation_id,
                "previous_ConversationID": refund.conversation_id,
            },
        )
    return _send(refund_id, earlier_request_unknown=True)


def _send(refund_id: int, *, earlier_request_unknown: bool = False) -> Refund:
    # The refund is committed as `submitting`: a crash from here on leaves a row the sweeper resolves.
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    payment = refund.payment
    remarks = f"Refund {payment.account_reference or payment.pk}"
    client = get_client()
    retry_at = timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL)
    try:
        if refund.method == RefundMethod.REVERSAL:
            accepted = client.reversal(
                receipt=refund.original_receipt,
                amount=refund.amount,
                remarks=remarks,
                result_url=result_url(),
                timeout_url=queue_timeout_url(),
            )
        else:
            accepted = client.b2c_payment(
                originator_conversation_id=refund.idempotency_key,
                phone=payment.phone,
                amount=refund.amount,
                remarks=remarks,
                result_url=result_url(),
                timeout_url=queue_timeout_url(),
            )
    except (DarajaUnavailable, DarajaBusy) as exc:
        if earlier_request_unknown:
            return _earlier_request_still_unknown(refund_id, exc.message, exc.error_code, retry_at)
        # Nothing was sent, or Daraja said it processed nothing: sending again later is safe.
        return _after_send(
            refund_id,
            RefundStatus.APPROVED,
            kind=RefundEventKind.SEND_DEFERRED,
            message=f"{exc.message}; will be sent again.",
            data={"errorCode": exc.error_code},
            next_check_at=retry_at,
        )
    except DarajaOutcomeUnknown as exc:
        return _after_send(
            refund_id,
            RefundStatus.UNKNOWN,
            kind=RefundEventKind.OUTCOME_UNKNOWN,
            message=f"{exc.message}. Daraja may have taken it: not re-sent, Transaction Status will tell.",
            data={"errorCode": exc.error_code},
            next_check_at=retry_at,
        )
    except DarajaError as exc:
        if earlier_request_unknown:
            return _earlier_request_still_unknown(refund_id, exc.message, exc.error_code, retry_at)
        return _after_send(
            refund_id,
            RefundStatus.FAILED,
            kind=RefundEventKind.SEND_REFUSED,
            message=exc.message,
            data={"errorCode": exc.error_code},
            result_code=exc.error_code[:16],
            result_desc=exc.message[:512],
        )
    except (SecurityCredentialError, ValueError) as exc:
        if earlier_request_unknown:
            return _earlier_request_still_unknown(refund_id, str(exc), "", retry_at)
        return _after_send(
            refund_id,
            RefundStatus.FAILED,
            kind=RefundEventKind.SEND_REFUSED,
            message=f"Not sent: {exc}",
            result_desc=str(exc)[:512],
        )
    return _accepted(refund_id, accepted)


def _earlier_request_still_unknown(refund_id: int, message: str, error_code: str, next_check_at) -> Refund:
    """A re-sent reversal that Daraja did not take: whatever it said of this request, the earlier one may
    have run (or may still run), so the refund stays unknown and is never failed on this answer."""
    return _after_send(
        refund_id,
        RefundStatus.UNKNOWN,
        kind=RefundEventKind.SEND_REFUSED,
        message=f"Not re-sent: {message}. The earlier request may still have run; Transaction Status will tell.",
        data={"errorCode": error_code},
        next_check_at=next_check_at,
    )


@transaction.atomic
def _after_send(refund_id: int, to_status: str, *, kind: str, message: str, data=None, **fields) -> Refund:
    refund = lock_refund(refund_id)
    if refund.status != RefundStatus.SUBMITTING:
        event_record(refund, kind=RefundEventKind.NOTE, source=EventSource.SYSTEM, message=message, data=data)
        return refund
    refund_transition(
        refund, to_status, kind=kind, source=EventSource.SYSTEM, message=message, data=data, **fields
    )
    return refund


def _accepted(refund_id: int, accepted: AsyncAccepted) -> Refund:
    ids = {
        "OriginatorConversationID": accepted.originator_conversation_id,
        "ConversationID": accepted.conversation_id,
    }
    with transaction.atomic():
        refund = lock_refund(refund_id)
        if refund.status == RefundStatus.SUBMITTING:
            refund_transition(
                refund,
                RefundStatus.SUBMITTED,
                kind=RefundEventKind.ACCEPTED,
                source=EventSource.SYSTEM,
                message=accepted.response_description or "Accepted for processing",
                data=ids,
                originator_conversation_id=accepted.originator_conversation_id
                or refund.originator_conversation_id,
                conversation_id=accepted.conversation_id,
                accepted_at=timezone.now(),
                next_check_at=timezone.now() + dt.timedelta(seconds=settings.REFUND_RESULT_TIMEOUT),
            )
        else:
            # The Result (or a queue timeout) outran this write: keep the ids, change nothing else.
            refund.originator_conversation_id = (
                refund.originator_conversation_id or accepted.originator_conversation_id
            )
            refund.conversation_id = refund.conversation_id or accepted.conversation_id
            refund.accepted_at = refund.accepted_at or timezone.now()
            refund.save(
                update_fields=["originator_conversation_id", "conversation_id", "accepted_at", "updated_at"]
            )
            event_record(
                refund,
                kind=RefundEventKind.ACCEPTED,
                source=EventSource.SYSTEM,
                message=f"Acknowledgement recorded after the refund became {refund.status}",
                data=ids,
            )
    inbox_module.inbox_reprocess_unmatched(
        kinds=inbox_module.ASYNC_KINDS,
        correlation_ids=[accepted.originator_conversation_id, accepted.conversation_id],
    )
    return Refund.objects.get(pk=refund_id)
