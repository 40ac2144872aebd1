"""Refunds: the only code that changes refund state.

States: requested -> approved -> submitting -> submitted -> succeeded | failed, plus rejected (a checker
said no) and unknown (the request may have reached Safaricom but we do not know what happened: read
timeout, 5xx, a worker that died mid-call, a queue timeout, no Result in time).

Rules:
- Record before send: a refund is committed as `submitting` before the HTTP call, so a crash leaves a row
  the sweeper sees. It is never sent again blindly: `submitting` and `submitted` refunds that go quiet
  become `unknown`, and `unknown` is settled by a Result (matched on our ids or, for a reversal, on
  OriginalTransactionID), by Transaction Status, or by staff. Only a refund Daraja told us it did not
  process (busy, unreachable) goes back to `approved` to be sent again.
- The payment row is locked for every change that touches money (request, success): at most one refund in
  flight per payment (also a partial unique constraint), and succeeded + in-flight never exceed the amount.
- Lock order: payment, then refund.
"""

import datetime as dt
import json
import logging
import secrets
import traceback
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from payments.callback_urls import queue_timeout_url, result_url
from payments.daraja.async_results import (
    ALREADY_REVERSED,
    INVALID_ORIGINAL_TRANSACTION,
    AsyncAccepted,
    AsyncFormatError,
    AsyncResult,
    QueueTimeout,
    parse_queue_timeout,
    parse_result,
)
from payments.daraja.client import get_client
from payments.daraja.errors import DarajaBusy, DarajaError, DarajaOutcomeUnknown, DarajaUnavailable
from payments.daraja.security import SecurityCredentialError, initiator_configured
from payments.exceptions import (
    IllegalTransition,
    RefundInProgress,
    RefundInvalid,
    RefundMethodUnavailable,
    RefundNotAllowed,
    RefundNotFound,
    RefundPermissionDenied,
    RefundsNotConfigured,
)
from payments.models import (
    REFUND_IN_FLIGHT_STATUSES,
    CallbackInbox,
    EventKind,
    EventSource,
    InboxKind,
    InboxStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundEvent,
    RefundEventKind,
    RefundMethod,
    RefundStatus,
)
from payments.services import _locked, _transition, payment_event_record
from payments.signals import refund_status_changed

logger = logging.getLogger(__name__)

R = RefundStatus
K = RefundEventKind
REFUND_EDGES: dict[str, set[str]] = {
    R.REQUESTED: {R.APPROVED, R.REJECTED},
    R.APPROVED: {R.SUBMITTING},
    # back to approved only when Daraja said nothing was processed (busy) or nothing was sent
    R.SUBMITTING: {R.SUBMITTED, R.SUCCEEDED, R.FAILED, R.UNKNOWN, R.APPROVED},
    R.SUBMITTED: {R.SUCCEEDED, R.FAILED, R.UNKNOWN},
    # unknown -> submitting: staff re-send a reversal, which Safaricom answers R000001 if it already ran
    R.UNKNOWN: {R.SUCCEEDED, R.FAILED, R.SUBMITTING},
    # a Result with a receipt after we gave up: the money did move
    R.FAILED: {R.SUCCEEDED},
    R.SUCCEEDED: set(),
    R.REJECTED: set(),
}
REFUNDABLE_PAYMENT_STATUSES = (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED)
# An approved refund whose submit task never ran (the enqueue was lost) is sent by the sweeper after this.
APPROVED_UNSENT_GRACE = dt.timedelta(seconds=60)
SWEEP_BATCH = 100


# --- events and transitions -----------------------------------------------------------------------
def refund_event_record(
    *,
    refund: Refund,
    kind: str,
    source: str,
    actor=None,
    message: str = "",
    data: dict | None = None,
    inbox: CallbackInbox | None = None,
    from_status: str = "",
    to_status: str = "",
) -> RefundEvent:
    return RefundEvent.objects.create(
        refund=refund,
        kind=kind,
        source=source,
        actor=actor,
        message=message[:512],
        data=data or {},
        inbox=inbox,
        from_status=from_status,
        to_status=to_status,
    )


def _refund_transition(
    refund: Refund,
    to_status: str,
    *,
    kind: str,
    source: str,
    actor=None,
    message: str = "",
    data: dict | None = None,
    inbox: CallbackInbox | None = None,
    **fields,
) -> RefundEvent:
    """Move a locked refund along a legal edge, write its event and signal it, inside the caller's atomic."""
    from_status = refund.status
    if to_status not in REFUND_EDGES.get(from_status, set()):
        raise IllegalTransition(f"A {from_status} refund cannot become {to_status}.")
    now = timezone.now()
    refund.status = to_status
    if to_status not in (R.APPROVED, R.SUBMITTED, R.UNKNOWN):
        refund.next_check_at = None
    for name, value in fields.items():
        setattr(refund, name, value)
    if to_status == R.APPROVED and refund.approved_at is None:
        refund.approved_at = now
    elif to_status == R.SUBMITTING:
        refund.submitted_at = now
    elif to_status in (R.SUCCEEDED, R.FAILED, R.REJECTED):
        refund.completed_at = now
    refund.save()
    event = refund_event_record(
        refund=refund,
        kind=kind,
        source=source,
        actor=actor,
        message=message,
        data=data,
        inbox=inbox,
        from_status=from_status,
        to_status=to_status,
    )
    refund_status_changed.send(
        sender=Refund, refund=refund, from_status=from_status, to_status=to_status, source=source
    )
    return event


def _locked_refund(refund_id: int) -> Refund:
    try:
        return Refund.objects.select_for_update().get(pk=refund_id)
    except Refund.DoesNotExist as exc:
        raise RefundNotFound("No such refund.") from exc


def _locked_pair(refund_id: int) -> tuple[Payment, Refund]:
    try:
        payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
    except Refund.DoesNotExist as exc:
        raise RefundNotFound("No such refund.") from exc
    payment = _locked(payment_id)
    return payment, _locked_refund(refund_id)


def _backoff(base: int, cap: int, count: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(base * 2 ** min(count, 16), cap))


# --- requesting and approving ---------------------------------------------------------------------
def refund_request(
    *,
    payment_id: int,
    amount: Decimal | None,
    reason: str,
    actor,
    internal_note: str = "",
    source: str = EventSource.ADMIN,
) -> Refund:
    """Ask for money back. `amount=None` means everything not yet refunded.

    While the payment's refunds, this one included, stay at or below REFUND_APPROVAL_THRESHOLD the
    requester's permission is enough and the refund is sent at once (after commit, by a task); above it a
    second person with payments.approve_refund must approve it.
    """
    if actor is None or not actor.has_perm("payments.add_refund"):
        raise RefundPermissionDenied("You are not allowed to request refunds.")
    reason = " ".join((reason or "").split())
    if not reason:
        raise RefundInvalid("Give a reason for the refund; the customer sees it.", field="reason")
    if len(reason) > 200:
        raise RefundInvalid("The reason is at most 200 characters.", field="reason")
    if amount is not None:
        try:
            amount = Decimal(str(amount))
        except InvalidOperation as exc:
            raise RefundInvalid("The amount is not a number.", field="amount") from exc
    try:
        initiator_configured()
    except SecurityCredentialError as exc:
        raise RefundsNotConfigured(f"Refunds are not configured: {exc}") from exc
    return _refund_create(
        payment_id=payment_id,
        amount=amount,
        reason=reason,
        actor=actor,
        internal_note=internal_note,
        source=source,
    )


@transaction.atomic
def _refund_create(*, payment_id: int, amount, reason: str, actor, internal_note: str, source: str) -> Refund:
    payment = _locked(payment_id)
    if payment.method != PaymentMethod.MPESA:
        raise RefundNotAllowed("Only M-Pesa payments are refunded through M-Pesa.")
    if payment.status not in REFUNDABLE_PAYMENT_STATUSES:
        raise RefundNotAllowed(
            f"Only paid payments can be refunded; this one is {payment.get_status_display().lower()}."
        )
    in_flight = payment.refunds.filter(status__in=REFUND_IN_FLIGHT_STATUSES).first()
    if in_flight is not None:
        raise RefundInProgress(
            f"Refund #{in_flight.pk} for this payment is still in progress ({in_flight.get_status_display()}).",
            refund_id=in_flight.pk,
        )
    remaining = payment.amount - payment.refunded_amount
    if amount is None:
        amount = remaining
    if not amount.is_finite() or amount <= 0:
        raise RefundInvalid("The refund amount must be more than zero.", field="amount")
    if amount != amount.to_integral_value():
        raise RefundInvalid(
            "M-Pesa moves whole shillings only: refund a whole number of KES.", field="amount"
        )
    if amount > remaining:
        raise RefundInvalid(
            f"At most KES {remaining} of this payment can still be refunded.",
            field="amount",
            refundable=str(remaining),
        )
    if amount == payment.amount and payment.refunded_amount == 0:
        # Reversal gives back exactly the original transaction (daraja.md §6.3: partial reversal unverified).
        method = RefundMethod.REVERSAL
        if not payment.mpesa_receipt_number or payment.receipt_pending:
            raise RefundNotAllowed(
                "The M-Pesa receipt of this payment is not known yet; a reversal needs it."
            )
    else:
        method = RefundMethod.B2C
        if not settings.MPESA_B2C_SHORTCODE:
            raise RefundMethodUnavailable(
                f"A partial refund is paid by B2C and no B2C shortcode is configured (MPESA_B2C_SHORTCODE). "
                f"Only the full amount (KES {payment.amount}) can be reversed.",
                field="amount",
            )
        if not payment.phone:
            raise RefundNotAllowed("The payment has no phone number to pay the refund to.")
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                payment=payment,
                status=R.REQUESTED,
                method=method,
                amount=amount,
                currency=payment.currency,
                reason=reason,
                internal_note=internal_note,
                requested_by=actor,
                idempotency_key=f"BO-RF-{secrets.token_hex(12)}",
                original_receipt=payment.mpesa_receipt_number or "",
            )
    except IntegrityError as exc:
        raise RefundInProgress("A refund for this payment is already in progress.") from exc
    refund_event_record(
        refund=refund,
        kind=K.REQUESTED,
        source=source,
        actor=actor,
        to_status=R.REQUESTED,
        message=f"KES {amount} by {refund.get_method_display().lower()}: {reason}",
    )
    refund_status_changed.send(
        sender=Refund, refund=refund, from_status="", to_status=R.REQUESTED, source=source
    )
    payment_event_record(
        payment=payment,
        kind=EventKind.NOTE,
        source=source,
        actor=actor,
        message=f"Refund #{refund.pk} of KES {amount} requested",
        data={"refund": refund.pk},
    )
    # The threshold counts everything refunded on this payment, so splitting a refund cannot dodge approval.
    if payment.refunded_amount + amount <= settings.REFUND_APPROVAL_THRESHOLD:
        _refund_transition(
            refund,
            R.APPROVED,
            kind=K.APPROVED,
            source=source,
            actor=actor,
            message="Approved automatically: refunds on this payment stay at or below the approval "
            f"threshold (KES {settings.REFUND_APPROVAL_THRESHOLD}).",
            approved_by=actor,
        )
        _submit_after_commit(refund.pk)
    return refund


@transaction.atomic
def refund_approve(*, refund_id: int, actor, source: str = EventSource.ADMIN) -> Refund:
    """Maker-checker: a second person with payments.approve_refund, never the requester."""
    refund = _locked_refund(refund_id)
    if actor is None or not actor.has_perm("payments.approve_refund"):
        raise RefundPermissionDenied("You are not allowed to approve refunds.")
    if refund.requested_by_id == actor.pk:
        raise RefundPermissionDenied("A second person must approve this refund: you requested it.")
    if refund.status != R.REQUESTED:
        raise IllegalTransition(
            f"Only refunds awaiting approval can be approved; this one is {refund.status}."
        )
    _refund_transition(refund, R.APPROVED, kind=K.APPROVED, source=source, actor=actor, approved_by=actor)
    _submit_after_commit(refund.pk)
    return refund


@transaction.atomic
def refund_reject(*, refund_id: int, actor, note: str = "", source: str = EventSource.ADMIN) -> Refund:
    """An approver says no, or the requester withdraws the request; nothing was sent."""
    refund = _locked_refund(refund_id)
    if actor is None or not (actor.has_perm("payments.approve_refund") or refund.requested_by_id == actor.pk):
        raise RefundPermissionDenied("You are not allowed to reject refunds.")
    if refund.status != R.REQUESTED:
        raise IllegalTransition(
            f"Only refunds awaiting approval can be rejected; this one is {refund.status}."
        )
    _refund_transition(
        refund,
        R.REJECTED,
        kind=K.REJECTED,
        source=source,
        actor=actor,
        message=note[:500] or "Rejected",
        rejected_by=actor,
    )
    return refund


def _submit_after_commit(refund_id: int) -> None:
    transaction.on_commit(lambda: refund_submit_enqueue(refund_id=refund_id), robust=True)


def refund_submit_enqueue(*, refund_id: int) -> None:
    """Hand the send to django-q2. If the broker is unavailable the refund stays approved; the sweeper sends it."""
    from django_q.tasks import async_task

    try:
        async_task("payments.tasks.refund_submit", refund_id, task_name=f"refund-submit-{refund_id}")
    except Exception:
        logger.exception(
            "Could not enqueue the submission of refund #%s; the sweeper will send it", refund_id
        )


# --- sending --------------------------------------------------------------------------------------
def refund_submit(*, refund_id: int) -> Refund:
    """Send an approved refund to Daraja. Runs outside any transaction (a task); safe to run twice."""
    with transaction.atomic():
        refund = _locked_refund(refund_id)
        if refund.status != R.APPROVED:
            return refund  # already sent or settled: a redelivered task changes nothing
        if refund.next_check_at and refund.next_check_at > timezone.now():
            return refund  # deferred after "busy": the sweeper sends it when due
        fields = {}
        if refund.method == RefundMethod.B2C:
            fields["originator_conversation_id"] = refund.idempotency_key
        _refund_transition(
            refund,
            R.SUBMITTING,
            kind=K.SUBMITTING,
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
    if actor is None or not actor.has_perm("payments.approve_refund"):
        raise RefundPermissionDenied("You are not allowed to re-send refunds.")
    with transaction.atomic():
        refund = _locked_refund(refund_id)
        if refund.method != RefundMethod.REVERSAL or refund.status != R.UNKNOWN:
            raise IllegalTransition("Only reversals whose outcome is unknown can be sent again.")
        _refund_transition(
            refund,
            R.SUBMITTING,
            kind=K.SUBMITTING,
            source=EventSource.ADMIN,
            actor=actor,
            message="Re-sent by staff; a reversal that already ran is answered R000001 (already reversed).",
            data={
                "previous_OriginatorConversationID": refund.originator_conversation_id,
                "previous_ConversationID": refund.conversation_id,
            },
        )
    return _send(refund_id)


def _send(refund_id: int) -> Refund:
    # The refund is committed as `submitting`: a crash from here on leaves a row the sweeper resolves.
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    payment = refund.payment
    remarks = f"Refund {payment.account_reference or payment.pk}"
    client = get_client()
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
        # Nothing was sent, or Daraja said it processed nothing: sending again later is safe.
        return _after_send(
            refund_id,
            R.APPROVED,
            kind=K.SEND_DEFERRED,
            message=f"{exc.message}; will be sent again.",
            data={"errorCode": exc.error_code},
            next_check_at=timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL),
        )
    except DarajaOutcomeUnknown as exc:
        return _after_send(
            refund_id,
            R.UNKNOWN,
            kind=K.OUTCOME_UNKNOWN,
            message=f"{exc.message}. Daraja may have taken it: not re-sent, Transaction Status will tell.",
            data={"errorCode": exc.error_code},
            next_check_at=timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL),
        )
    except DarajaError as exc:
        return _after_send(
            refund_id,
            R.FAILED,
            kind=K.SEND_REFUSED,
            message=exc.message,
            data={"errorCode": exc.error_code},
            result_code=exc.error_code[:16],
            result_desc=exc.message[:512],
        )
    except (SecurityCredentialError, ValueError) as exc:
        return _after_send(
            refund_id, R.FAILED, kind=K.SEND_REFUSED, message=f"Not sent: {exc}", result_desc=str(exc)[:512]
        )
    return _accepted(refund_id, accepted)


@transaction.atomic
def _after_send(refund_id: int, to_status: str, *, kind: str, message: str, data=None, **fields) -> Refund:
    refund = _locked_refund(refund_id)
    if refund.status != R.SUBMITTING:
        refund_event_record(refund=refund, kind=K.NOTE, source=EventSource.SYSTEM, message=message, data=data)
        return refund
    _refund_transition(
        refund, to_status, kind=kind, source=EventSource.SYSTEM, message=message, data=data, **fields
    )
    return refund


def _accepted(refund_id: int, accepted: AsyncAccepted) -> Refund:
    ids = {
        "OriginatorConversationID": accepted.originator_conversation_id,
        "ConversationID": accepted.conversation_id,
    }
    with transaction.atomic():
        refund = _locked_refund(refund_id)
        if refund.status == R.SUBMITTING:
            _refund_transition(
                refund,
                R.SUBMITTED,
                kind=K.ACCEPTED,
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
            refund_event_record(
                refund=refund,
                kind=K.ACCEPTED,
                source=EventSource.SYSTEM,
                message=f"Acknowledgement recorded after the refund became {refund.status}",
                data=ids,
            )
    _reprocess_unmatched(accepted.originator_conversation_id, accepted.conversation_id)
    return Refund.objects.get(pk=refund_id)


def _reprocess_unmatched(*ids: str) -> None:
    """A Result can arrive before we stored the ids it carries; it waits in the inbox as unmatched."""
    ids = [value for value in ids if value]
    if not ids:
        return
    for inbox_id in CallbackInbox.objects.filter(
        kind__in=(InboxKind.RESULT, InboxKind.QUEUE_TIMEOUT),
        status=InboxStatus.UNMATCHED,
        correlation_id__in=ids,
    ).values_list("pk", flat=True):
        async_inbox_process(inbox_id=inbox_id)


# --- results (ResultURL, QueueTimeOutURL) ---------------------------------------------------------
def async_inbox_process(*, inbox_id: int) -> CallbackInbox:
    """Parse and apply one stored Result or queue-timeout notice. Safe to run again."""
    inbox = CallbackInbox.objects.get(pk=inbox_id)
    if inbox.status in (InboxStatus.PROCESSED, InboxStatus.DUPLICATE, InboxStatus.REJECTED):
        return inbox
    try:
        body = json.loads(inbox.body)
        parsed = parse_result(body) if inbox.kind == InboxKind.RESULT else parse_queue_timeout(body)
    except (ValueError, AsyncFormatError) as exc:
        CallbackInbox.objects.filter(pk=inbox.pk).update(
            status=InboxStatus.REJECTED, error=f"Malformed: {exc}"[:2000], processed_at=timezone.now()
        )
        inbox.refresh_from_db()
        return inbox
    correlation = parsed.originator_conversation_id or parsed.conversation_id or parsed.transaction_id
    CallbackInbox.objects.filter(pk=inbox.pk).update(
        correlation_id=correlation[:64], attempts=inbox.attempts + 1
    )
    inbox.refresh_from_db()
    try:
        if isinstance(parsed, AsyncResult):
            matched = _route_result(parsed, inbox)
        else:
            matched = _route_queue_timeout(parsed, inbox)
        if not matched:
            CallbackInbox.objects.filter(pk=inbox.pk).update(
                status=InboxStatus.UNMATCHED, error="No refund or status request has these ids (yet)."
            )
            logger.warning("Daraja result kept as unmatched (inbox #%s)", inbox.pk)
    except Exception:
        CallbackInbox.objects.filter(pk=inbox.pk).update(
            status=InboxStatus.FAILED, error=traceback.format_exc()[-8000:]
        )
        logger.exception("Daraja result processing failed (inbox #%s)", inbox.pk)
    inbox.refresh_from_db()
    return inbox


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
    return reversals.filter(status__in=(R.SUBMITTING, R.SUBMITTED, R.UNKNOWN)).first() or reversals.first()


def _route_result(result: AsyncResult, inbox: CallbackInbox) -> bool:
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


def _route_queue_timeout(timeout: QueueTimeout, inbox: CallbackInbox) -> bool:
    ids = (timeout.originator_conversation_id, timeout.conversation_id)
    refund = _refund_for_request(*ids)
    if refund is None and timeout.command_id == "TransactionReversal":
        refund = _reversal_in_flight_for(timeout.transaction_id)
    if refund is not None:
        refund_apply_queue_timeout(refund_id=refund.pk, timeout=timeout, inbox=inbox)
        return True
    refund = _refund_for_status_query(*ids)
    if refund is not None:
        with transaction.atomic():
            refund = _locked_refund(refund.pk)
            refund_event_record(
                refund=refund,
                kind=K.STATUS_RESULT,
                source=EventSource.RESULT,
                inbox=inbox,
                message="The Transaction Status request timed out in Daraja's queue; it will be asked again.",
            )
            _inbox_processed(inbox, refund.payment_id)
        return True
    return False


def _inbox_processed(inbox: CallbackInbox | None, payment_id: int) -> None:
    if inbox is None:
        return
    inbox.payment_id = payment_id
    inbox.status = InboxStatus.PROCESSED
    inbox.processed_at = timezone.now()
    inbox.error = ""
    inbox.save(update_fields=["payment", "status", "processed_at", "error"])


def _summary(result: AsyncResult) -> dict:
    return {
        "ResultType": result.result_type,
        "ResultCode": result.result_code,
        "ResultDesc": result.result_desc,
        "OriginatorConversationID": result.originator_conversation_id,
        "ConversationID": result.conversation_id,
        "TransactionID": result.transaction_id,
        "ResultParameters": {key: str(value)[:128] for key, value in result.parameters.items()},
    }


def _fill_ids(refund: Refund, result: AsyncResult) -> dict:
    fields = {}
    if not refund.originator_conversation_id and result.originator_conversation_id:
        fields["originator_conversation_id"] = result.originator_conversation_id
    if not refund.conversation_id and result.conversation_id:
        fields["conversation_id"] = result.conversation_id
    return fields


@transaction.atomic
def refund_apply_result(
    *,
    refund_id: int,
    result: AsyncResult,
    inbox: CallbackInbox | None = None,
    source: str = EventSource.RESULT,
) -> Refund:
    """Apply a Reversal or B2C Result. Idempotent: settled refunds record repeats and change nothing."""
    payment, refund = _locked_pair(refund_id)
    data = _summary(result)
    code = result.result_code
    success = result.is_success or (refund.method == RefundMethod.REVERSAL and code == ALREADY_REVERSED)
    receipt = ""
    if result.is_success:
        receipt = result.transaction_id or result.text("TransactionReceipt")
    record = dict(refund=refund, source=source, inbox=inbox, data=data)

    if not result.is_final:
        refund_event_record(kind=K.NOTE, message="Result pending further messages (ResultType 1)", **record)
    elif refund.status in (R.SUBMITTING, R.SUBMITTED, R.UNKNOWN):
        fields = _fill_ids(refund, result)
        if success:
            message = (
                "Already reversed (R000001): the money went back earlier."
                if code == ALREADY_REVERSED
                else f"Refunded, M-Pesa receipt {receipt}"
            )
            if not _refund_succeed(
                payment,
                refund,
                source=source,
                inbox=inbox,
                data=data,
                message=message,
                transaction_id=receipt or refund.transaction_id,
                result_code=code,
                result_desc=result.result_desc,
                **fields,
            ):
                # Another refund of this payment already succeeded meanwhile (e.g. a late success of one
                # staff had settled as failed): money may have gone out twice. Never drop it silently.
                _disagree(payment, refund, record, _overflow_message(payment, refund, receipt or code))
        else:
            logger.warning("Refund #%s failed with ResultCode %s", refund.pk, code)
            _refund_transition(
                refund,
                R.FAILED,
                kind=K.RESULT_APPLIED,
                source=source,
                inbox=inbox,
                data=data,
                message=f"Refund failed: {result.result_desc} ({code})",
                result_code=code,
                result_desc=result.result_desc,
                **fields,
            )
    elif refund.status == R.FAILED and success and receipt:
        # Money moved after we called the refund failed: a receipt-bearing success wins when it still fits.
        if not _refund_succeed(
            payment,
            refund,
            source=source,
            inbox=inbox,
            data=data,
            message=f"Late success with receipt {receipt} after the refund was marked failed",
            transaction_id=receipt,
            result_code=code,
            result_desc=result.result_desc,
        ):
            _disagree(payment, refund, record, f"Late success (receipt {receipt}) does not fit the payment")
    elif refund.status == R.SUCCEEDED and success and receipt and not refund.transaction_id:
        # Settled on R000001 or by staff without a receipt: the original Result brings it now.
        refund.transaction_id = receipt
        refund.save(update_fields=["transaction_id", "updated_at"])
        refund_event_record(kind=K.RESULT_APPLIED, message=f"Receipt {receipt} filled in", **record)
    elif (refund.status == R.SUCCEEDED and success) or (refund.status == R.FAILED and not success):
        refund_event_record(kind=K.DUPLICATE_RESULT, message=f"Repeat result {code}", **record)
    else:
        _disagree(payment, refund, record, f"Result {code} for a {refund.status} refund")
    _inbox_processed(inbox, payment.pk)
    return refund


def _disagree(payment: Payment, refund: Refund, record: dict, message: str) -> None:
    logger.error("Refund #%s: %s", refund.pk, message)
    refund_event_record(kind=K.DISAGREEMENT, message=message, **record)
    payment_event_record(
        payment=payment,
        kind=EventKind.DISAGREEMENT,
        source=record["source"],
        inbox=record.get("inbox"),
        message=f"Refund #{refund.pk}: {message}",
        data={"refund": refund.pk},
    )


def _overflow_message(payment: Payment, refund: Refund, evidence: str) -> str:
    return (
        f"Success ({evidence}) for KES {refund.amount}, but KES {payment.refunded_amount} of KES "
        f"{payment.amount} is already refunded: the payout may have been made twice; check the M-Pesa statement"
    )


def _refund_succeed(
    payment: Payment, refund: Refund, *, source: str, inbox, data, message, actor=None, **fields
) -> bool:
    """Mark a locked refund succeeded and the locked payment (partially) refunded; False if it cannot fit."""
    new_total = payment.refunded_amount + refund.amount
    if new_total > payment.amount:
        return False
    _refund_transition(
        refund,
        R.SUCCEEDED,
        kind=K.RESULT_APPLIED,
        source=source,
        actor=actor,
        inbox=inbox,
        data=data,
        message=message,
        **fields,
    )
    target = PaymentStatus.REFUNDED if new_total >= payment.amount else PaymentStatus.PARTIALLY_REFUNDED
    event_message = f"Refund #{refund.pk}: KES {refund.amount} returned" + (
        f", receipt {refund.transaction_id}" if refund.transaction_id else ""
    )
    event_data = {
        "refund": refund.pk,
        "TransactionID": refund.transaction_id,
        "refunded_amount": str(new_total),
    }
    if payment.status in REFUNDABLE_PAYMENT_STATUSES:
        _transition(
            payment,
            target,
            kind=EventKind.REFUNDED,
            source=source,
            actor=actor,
            inbox=inbox,
            message=event_message,
            data=event_data,
            refunded_amount=new_total,
        )
    else:
        # The payment moved on (e.g. into review) meanwhile: keep the money right, leave its status alone.
        Payment.objects.filter(pk=payment.pk).update(refunded_amount=new_total)
        payment.refunded_amount = new_total
        payment_event_record(
            payment=payment,
            kind=EventKind.REFUNDED,
            source=source,
            actor=actor,
            inbox=inbox,
            message=event_message,
            data=event_data,
        )
    return True


@transaction.atomic
def refund_apply_queue_timeout(
    *, refund_id: int, timeout: QueueTimeout, inbox: CallbackInbox | None = None
) -> Refund:
    """The request timed out in Daraja's queue: unknown, not failed (it may still run, or may have run)."""
    payment, refund = _locked_pair(refund_id)
    data = {
        "OriginatorConversationID": timeout.originator_conversation_id,
        "ConversationID": timeout.conversation_id,
        "CommandID": timeout.command_id,
    }
    if refund.status in (R.SUBMITTING, R.SUBMITTED):
        fields = {}
        if not refund.originator_conversation_id and timeout.originator_conversation_id:
            fields["originator_conversation_id"] = timeout.originator_conversation_id
        _refund_transition(
            refund,
            R.UNKNOWN,
            kind=K.QUEUE_TIMEOUT,
            source=EventSource.RESULT,
            inbox=inbox,
            data=data,
            message="Timed out in Daraja's queue; the money may or may not have moved. Transaction Status will tell.",
            next_check_at=timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL),
            **fields,
        )
    else:
        refund_event_record(
            refund=refund,
            kind=K.QUEUE_TIMEOUT,
            source=EventSource.RESULT,
            inbox=inbox,
            data=data,
            message=f"Queue timeout for a {refund.status} refund; nothing changed.",
        )
    _inbox_processed(inbox, payment.pk)
    return refund


# --- Transaction Status ---------------------------------------------------------------------------
def refund_check_status(*, refund_id: int, actor=None, source: str = EventSource.SYSTEM) -> Refund:
    """Ask Transaction Status about an unknown refund; the answer comes to ResultURL."""
    now = timezone.now()
    with transaction.atomic():
        refund = _locked_refund(refund_id)
        if refund.status != R.UNKNOWN:
            return refund
        # Claimed before the call (next check pushed back) so overlapping sweeps ask once.
        refund.next_check_at = now + _backoff(
            settings.REFUND_STATUS_INTERVAL, settings.REFUND_STATUS_INTERVAL_MAX, refund.status_query_count
        )
        refund.status_query_count += 1
        refund.save(update_fields=["next_check_at", "status_query_count", "updated_at"])
    by_request_id = refund.originator_conversation_id or refund.conversation_id
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
            refund = _locked_refund(refund_id)
            refund_event_record(
                refund=refund,
                kind=K.STATUS_QUERY_FAILED,
                source=source,
                actor=actor,
                message=getattr(exc, "message", str(exc)),
                data={"query": query, "errorCode": getattr(exc, "error_code", "")},
            )
        return refund
    with transaction.atomic():
        refund = _locked_refund(refund_id)
        refund.status_query_originator_id = accepted.originator_conversation_id
        refund.status_query_conversation_id = accepted.conversation_id
        refund.save(
            update_fields=["status_query_originator_id", "status_query_conversation_id", "updated_at"]
        )
        refund_event_record(
            refund=refund,
            kind=K.STATUS_QUERY_SENT,
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
    _reprocess_unmatched(accepted.originator_conversation_id, accepted.conversation_id)
    return Refund.objects.get(pk=refund_id)


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
    payment, refund = _locked_pair(refund_id)
    verdict, receipt, message = _status_verdict(refund, result)
    data = {**_summary(result), "verdict": verdict}
    source = EventSource.STATUS_QUERY
    if refund.status not in (R.SUBMITTING, R.SUBMITTED, R.UNKNOWN) or verdict == "inconclusive":
        if refund.status not in (R.SUBMITTING, R.SUBMITTED, R.UNKNOWN):
            message = f"{message} (the refund is already {refund.status})"
        refund_event_record(
            refund=refund, kind=K.STATUS_RESULT, source=source, inbox=inbox, data=data, message=message
        )
    elif verdict == "succeeded":
        if not _refund_succeed(
            payment,
            refund,
            source=source,
            inbox=inbox,
            data=data,
            message=message,
            transaction_id=receipt or refund.transaction_id,
            result_code="0",
            result_desc=result.result_desc,
        ):
            record = dict(refund=refund, source=source, inbox=inbox, data=data)
            _disagree(payment, refund, record, _overflow_message(payment, refund, receipt or "completed"))
    elif refund.status != R.UNKNOWN:
        # Transaction Status is only asked about unknown refunds: a "not paid" answer reaching a refund that
        # was sent again since is about the earlier request and must not fail the one now in flight.
        refund_event_record(
            refund=refund,
            kind=K.STATUS_RESULT,
            source=source,
            inbox=inbox,
            data=data,
            message=f"{message} (about an earlier request; the refund was sent again and is {refund.status})",
        )
    else:
        _refund_transition(
            refund,
            R.FAILED,
            kind=K.STATUS_RESULT,
            source=source,
            inbox=inbox,
            data=data,
            message=message,
            result_code=result.result_code,
            result_desc=message,
        )
    _inbox_processed(inbox, payment.pk)
    return refund


# --- staff resolution -----------------------------------------------------------------------------
@transaction.atomic
def refund_resolve(*, refund_id: int, actor, succeeded: bool, note: str, transaction_id: str = "") -> Refund:
    """Staff settle an unknown refund from the M-Pesa org portal statement."""
    if actor is None or not actor.has_perm("payments.approve_refund"):
        raise RefundPermissionDenied("You are not allowed to resolve refunds.")
    note = " ".join((note or "").split())
    if not note:
        raise RefundInvalid("Say how you know (e.g. the M-Pesa statement line).", field="note")
    payment, refund = _locked_pair(refund_id)
    if refund.status != R.UNKNOWN:
        raise IllegalTransition("Only refunds whose outcome is unknown can be resolved by hand.")
    data = {"note": note, "TransactionID": transaction_id}
    if succeeded:
        if not _refund_succeed(
            payment,
            refund,
            source=EventSource.ADMIN,
            actor=actor,
            inbox=None,
            data=data,
            message=f"Resolved by staff as paid out: {note}",
            transaction_id=transaction_id[:32] or refund.transaction_id,
        ):
            raise RefundInvalid("This refund no longer fits the payment's refundable amount.")
    else:
        _refund_transition(
            refund,
            R.FAILED,
            kind=K.RESOLVED,
            source=EventSource.ADMIN,
            actor=actor,
            data=data,
            message=f"Resolved by staff as not paid out: {note}",
            result_desc=note[:512],
        )
    return refund


# --- sweeper --------------------------------------------------------------------------------------
@transaction.atomic
def _mark_unknown(refund_id: int, *, expected: str, message: str, now: dt.datetime) -> bool:
    refund = _locked_refund(refund_id)
    if refund.status != expected:
        return False
    # Due at once: the same sweep asks Transaction Status next.
    _refund_transition(
        refund,
        R.UNKNOWN,
        kind=K.OUTCOME_UNKNOWN,
        source=EventSource.SYSTEM,
        message=message,
        next_check_at=now,
    )
    return True


def refunds_sweep(*, now: dt.datetime | None = None) -> dict:
    """Send approved refunds that were never sent, and settle the ones that went quiet. Never re-sends money."""
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
        Refund.objects.filter(pk=refund_id, status=R.APPROVED).update(next_check_at=None)
        refund_submit(refund_id=refund_id)
        return True

    each(
        Refund.objects.filter(status=R.APPROVED)
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
            status=R.SUBMITTING,
            submitted_at__lte=now - dt.timedelta(seconds=settings.REFUND_SUBMITTING_TIMEOUT),
        ).order_by("submitted_at"),
        lambda refund_id: _mark_unknown(
            refund_id,
            expected=R.SUBMITTING,
            message="No answer recorded since it was sent (the worker stopped mid-call?). Not re-sent.",
            now=now,
        ),
        "unknown",
    )
    each(
        Refund.objects.filter(status=R.SUBMITTED, next_check_at__lte=now).order_by("next_check_at"),
        lambda refund_id: _mark_unknown(
            refund_id,
            expected=R.SUBMITTED,
            message="No Result from Daraja in time; asking Transaction Status.",
            now=now,
        ),
        "unknown",
    )
    each(
        Refund.objects.filter(status=R.UNKNOWN)
        .filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True))
        .order_by("next_check_at"),
        lambda refund_id: refund_check_status(refund_id=refund_id) and True,
        "status_queries",
    )
    return counts
