"""The only code that changes payment state.

Every transition locks the payment row, checks the edge is legal, writes a PaymentEvent and sends
`payment_status_changed` inside the transaction. HTTP calls to Daraja never run inside a transaction: the
attempt is committed before the push, and the answer is applied in a new transaction.
"""

import datetime as dt
import hashlib
import json
import logging
import traceback
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from payments.callback_urls import stk_callback_url
from payments.daraja.client import get_client, mpesa_amount
from payments.daraja.codes import meaning_of
from payments.daraja.errors import (
    DarajaAuthError,
    DarajaBusy,
    DarajaError,
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaUnavailable,
)
from payments.daraja.results import CallbackFormatError, StkResult, parse_stk_callback
from payments.exceptions import (
    AttemptInProgress,
    IllegalTransition,
    PaymentNotFound,
    PaymentNotRetryable,
    RetryTooSoon,
)
from payments.models import (
    PAID_STATUSES,
    CallbackInbox,
    EventKind,
    EventSource,
    FailureClass,
    InboxKind,
    InboxStatus,
    Payment,
    PaymentEvent,
    PaymentMethod,
    PaymentStatus,
    ReviewReason,
)
from payments.signals import payment_status_changed

logger = logging.getLogger(__name__)

S = PaymentStatus
LEGAL_EDGES: dict[str, set[str]] = {
    S.PENDING: {S.INITIATED, S.FAILED, S.NEEDS_REVIEW},
    S.INITIATED: {S.COMPLETED, S.FAILED, S.NEEDS_REVIEW},
    S.PENDING_DELIVERY: {S.COMPLETED, S.FAILED},
    S.FAILED: {S.NEEDS_REVIEW},
    S.NEEDS_REVIEW: {S.COMPLETED, S.FAILED},
    S.COMPLETED: {S.PARTIALLY_REFUNDED, S.REFUNDED, S.NEEDS_REVIEW},
    S.PARTIALLY_REFUNDED: {S.PARTIALLY_REFUNDED, S.REFUNDED},
    S.REFUNDED: set(),
}
RULE_17_WINDOW = dt.timedelta(minutes=2)


# --- events and transitions ---------------------------------------------------------------------
def payment_event_record(
    *,
    payment: Payment,
    kind: str,
    source: str,
    actor=None,
    message: str = "",
    data: dict | None = None,
    inbox: CallbackInbox | None = None,
    from_status: str = "",
    to_status: str = "",
) -> PaymentEvent:
    return PaymentEvent.objects.create(
        payment=payment,
        kind=kind,
        source=source,
        actor=actor,
        message=message[:512],
        data=data or {},
        inbox=inbox,
        from_status=from_status,
        to_status=to_status,
    )


def _transition(
    payment: Payment,
    to_status: str,
    *,
    kind: str,
    source: str,
    actor=None,
    message: str = "",
    data: dict | None = None,
    inbox: CallbackInbox | None = None,
    **fields,
) -> PaymentEvent:
    """Move a locked payment along a legal edge. Callers hold the row lock inside transaction.atomic."""
    from_status = payment.status
    if to_status not in LEGAL_EDGES.get(from_status, set()):
        raise IllegalTransition(f"A {from_status} payment cannot become {to_status}.")
    now = timezone.now()
    payment.status = to_status
    for name, value in fields.items():
        setattr(payment, name, value)
    if to_status == S.INITIATED:
        payment.initiated_at = now
    elif to_status == S.COMPLETED:
        payment.completed_at = now
    elif to_status == S.FAILED:
        payment.failed_at = now
    if to_status not in (S.PENDING, S.INITIATED):
        payment.next_query_at = None
    payment.save()
    event = payment_event_record(
        payment=payment,
        kind=kind,
        source=source,
        actor=actor,
        message=message,
        data=data,
        inbox=inbox,
        from_status=from_status,
        to_status=to_status,
    )
    payment_status_changed.send(
        sender=Payment,
        payment=payment,
        from_status=from_status,
        to_status=to_status,
        source=source,
        event=event,
    )
    return event


def _locked(payment_id: int) -> Payment:
    try:
        return Payment.objects.select_for_update().get(pk=payment_id)
    except Payment.DoesNotExist as exc:
        raise PaymentNotFound("No such payment.") from exc


# --- creating and starting attempts -------------------------------------------------------------
@transaction.atomic
def payment_create(
    *, order, method: str, amount: Decimal, phone: str = "", source: str, actor=None
) -> Payment:
    """A new attempt for an order. M-Pesa amounts are whole shillings (rounded up); COD waits for delivery."""
    status = S.PENDING_DELIVERY if method == PaymentMethod.COD else S.PENDING
    charged = Decimal(mpesa_amount(amount)) if method == PaymentMethod.MPESA else amount
    reference = (settings.MPESA_ACCOUNT_REFERENCE_PREFIX + str(getattr(order, "reference", order.pk)))[:12]
    try:
        with transaction.atomic():
            payment = Payment.objects.create(
                order=order,
                method=method,
                amount=charged,
                phone=phone,
                status=status,
                account_reference=reference,
            )
    except IntegrityError as exc:
        raise AttemptInProgress("A payment attempt for this order is already in progress.") from exc
    event = payment_event_record(
        payment=payment,
        kind=EventKind.CREATED,
        source=source,
        actor=actor,
        to_status=status,
        message=f"{payment.get_method_display()} attempt for KES {charged}",
        data={"order_total": str(amount)} if charged != amount else {},
    )
    payment_status_changed.send(
        sender=Payment, payment=payment, from_status="", to_status=status, source=source, event=event
    )
    return payment


def payment_initiate_stk(*, payment_id: int, source: str = EventSource.API, actor=None) -> Payment:
    """Send the STK push for a committed pending attempt and record what Daraja said.

    Must be called outside a transaction: the attempt is already on disk, so a crash during the call leaves a
    pending row that reconciliation sees, never a lost push.
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != S.PENDING or payment.method != PaymentMethod.MPESA:
        return payment
    client = get_client()
    try:
        accepted = client.stk_push(
            phone=payment.phone,
            amount=payment.amount,
            account_reference=payment.account_reference,
            description=f"Order {payment.account_reference}",
            callback_url=stk_callback_url(),
        )
    except DarajaOutcomeUnknown as exc:
        return _push_outcome(
            payment_id,
            S.NEEDS_REVIEW,
            kind=EventKind.PUSH_UNKNOWN,
            source=source,
            actor=actor,
            message=f"{exc.message}. The prompt may have reached the phone; do not push again before "
            "checking the M-Pesa statement.",
            review_reason=ReviewReason.PUSH_OUTCOME_UNKNOWN,
            result_code=exc.error_code,
            result_desc=exc.message,
            failure_class=FailureClass.UNKNOWN,
        )
    except (DarajaRejected, DarajaUnavailable, DarajaError, ValueError) as exc:
        message = exc.message if isinstance(exc, DarajaError) else str(exc)
        failure_class = FailureClass.REQUEST
        if isinstance(exc, DarajaBusy | DarajaUnavailable):
            failure_class = FailureClass.SYSTEM
        elif isinstance(exc, DarajaAuthError):
            failure_class = FailureClass.CONFIG
        elif isinstance(exc, DarajaRejected) and exc.error_code == "500.001.1001":
            failure_class = FailureClass.CUSTOMER if "subscriber" in message.lower() else FailureClass.CONFIG
        return _push_outcome(
            payment_id,
            S.FAILED,
            kind=EventKind.PUSH_REJECTED,
            source=source,
            actor=actor,
            message=message,
            result_code=getattr(exc, "error_code", ""),
            result_desc=message[:512],
            failure_class=failure_class,
        )
    payment = _push_outcome(
        payment_id,
        S.INITIATED,
        kind=EventKind.PUSH_ACCEPTED,
        source=source,
        actor=actor,
        message=accepted.customer_message or accepted.response_description,
        data={
            "MerchantRequestID": accepted.merchant_request_id,
            "CheckoutRequestID": accepted.checkout_request_id,
        },
        merchant_request_id=accepted.merchant_request_id,
        checkout_request_id=accepted.checkout_request_id,
        next_query_at=timezone.now() + dt.timedelta(seconds=settings.MPESA_FIRST_QUERY_DELAY),
    )
    # A callback can outrun our commit of the CheckoutRequestID: it waits in the inbox as unmatched.
    for inbox_id in CallbackInbox.objects.filter(
        correlation_id=accepted.checkout_request_id, status=InboxStatus.UNMATCHED
    ).values_list("pk", flat=True):
        callback_inbox_process(inbox_id=inbox_id)
    return Payment.objects.get(pk=payment_id)


@transaction.atomic
def _push_outcome(
    payment_id: int, to_status: str, *, kind: str, source: str, actor, message: str, data=None, **fields
):
    payment = _locked(payment_id)
    if payment.status != S.PENDING:
        checkout_request_id = fields.get("checkout_request_id")
        if checkout_request_id and not payment.checkout_request_id:
            # The status sweeper gave up on this push while it was in flight: keep the id so the callback
            # still finds the attempt (a success then goes to review as a late payment).
            payment.checkout_request_id = checkout_request_id
            payment.merchant_request_id = fields.get("merchant_request_id", "")
            payment.save(update_fields=["checkout_request_id", "merchant_request_id", "updated_at"])
            payment_event_record(
                payment=payment, kind=EventKind.NOTE, source=source, actor=actor, message=message, data=data
            )
        return payment
    _transition(
        payment, to_status, kind=kind, source=source, actor=actor, message=message, data=data, **fields
    )
    return payment


@transaction.atomic
def _retry_attempt_create(*, payment_id: int, phone: str | None, source: str, actor) -> Payment:
    failed = _locked(payment_id)
    if failed.method != PaymentMethod.MPESA or failed.status != S.FAILED:
        raise PaymentNotRetryable(f"Only failed M-Pesa payments can be retried; this one is {failed.status}.")
    siblings = Payment.objects.select_for_update().filter(order_id=failed.order_id)
    if any(p.status in PAID_STATUSES or p.status == S.NEEDS_REVIEW for p in siblings):
        raise PaymentNotRetryable("This order already has a payment that is paid or under review.")
    if any(p.is_open for p in siblings):
        raise AttemptInProgress("A payment attempt for this order is already in progress.")
    # Lock the order after its attempts (the lock order everywhere), so a cancellation cannot slip in.
    order_model = Payment._meta.get_field("order").related_model
    order = order_model.objects.select_for_update().get(pk=failed.order_id)
    if getattr(order, "status", "PENDING") == "CANCELLED":
        raise PaymentNotRetryable("The order is cancelled.")
    phone = phone or failed.phone
    # Daraja refuses the same amount to the same phone within 2 minutes (ResultCode 17).
    latest = max(
        (p.initiated_at or p.created_at for p in siblings if p.phone == phone and p.amount == failed.amount),
        default=None,
    )
    if latest and timezone.now() - latest < RULE_17_WINDOW:
        wait = int((RULE_17_WINDOW - (timezone.now() - latest)).total_seconds()) + 1
        raise RetryTooSoon(
            f"M-Pesa refuses the same amount to the same phone within 2 minutes. Try again in {wait} s.",
            retry_after=wait,
        )
    new = payment_create(
        order=order, method=PaymentMethod.MPESA, amount=failed.amount, phone=phone, source=source, actor=actor
    )
    payment_event_record(
        payment=failed,
        kind=EventKind.NOTE,
        source=source,
        actor=actor,
        message=f"Retried as payment #{new.pk}",
    )
    return new


def payment_retry(
    *, payment_id: int, phone: str | None = None, source: str = EventSource.API, actor=None
) -> Payment:
    new = _retry_attempt_create(payment_id=payment_id, phone=phone, source=source, actor=actor)
    return payment_initiate_stk(payment_id=new.pk, source=source, actor=actor)


@transaction.atomic
def payment_mark_collected(*, payment_id: int, actor, note: str = "") -> Payment:
    """Cash on delivery: staff record the cash as collected."""
    payment = _locked(payment_id)
    if payment.status != S.PENDING_DELIVERY:
        raise IllegalTransition("Only payments pending delivery can be marked as collected.")
    _transition(
        payment,
        S.COMPLETED,
        kind=EventKind.COLLECTED,
        source=EventSource.ADMIN,
        actor=actor,
        message=note or "Cash collected on delivery",
        paid_amount=payment.amount,
    )
    return payment


# --- results from Daraja (callbacks and queries) -------------------------------------------------
@transaction.atomic
def payment_apply_result(
    *,
    checkout_request_id: str,
    result: StkResult,
    source: str,
    inbox: CallbackInbox | None = None,
    actor=None,
) -> Payment:
    """Apply a final STK result, from a callback or a query. Idempotent; terminal states absorb repeats."""
    try:
        payment = Payment.objects.select_for_update().get(checkout_request_id=checkout_request_id)
    except Payment.DoesNotExist as exc:
        raise PaymentNotFound("Unknown CheckoutRequestID.") from exc
    if inbox is not None:
        # Two processes may pick up the same stored callback (request and re-match, or a sweeper): the one
        # that gets the payment lock second sees it processed and leaves it alone.
        inbox = CallbackInbox.objects.select_for_update().get(pk=inbox.pk)
        if inbox.status == InboxStatus.PROCESSED:
            return payment
    summary = {
        "ResultCode": result.result_code,
        "ResultDesc": result.result_desc,
        "MpesaReceiptNumber": result.receipt_number,
        "Amount": None if result.amount is None else str(result.amount),
    }
    record = dict(payment=payment, source=source, actor=actor, inbox=inbox, data=summary)

    if payment.status in (S.PENDING, S.INITIATED):
        if not result.is_success:
            meaning = meaning_of(result.result_code)
            _transition(
                payment,
                S.FAILED,
                kind=EventKind.RESULT_APPLIED,
                message=result.result_desc or meaning.customer_text,
                result_code=result.result_code,
                result_desc=result.result_desc,
                failure_class=meaning.failure_class,
                **{k: v for k, v in record.items() if k != "payment"},
            )
        else:
            _apply_success(payment, result, record)
    elif payment.status in PAID_STATUSES:
        if result.is_success:
            if payment.receipt_pending and result.receipt_number:
                _fill_receipt(payment, result, record)
            elif (
                result.receipt_number
                and (payment.mpesa_receipt_number or result.receipt_number) != result.receipt_number
            ):
                # Another receipt for the same CheckoutRequestID: never overwrite, keep it as evidence.
                payment_event_record(
                    kind=EventKind.DISAGREEMENT,
                    message=f"Success with receipt {result.receipt_number}; the payment keeps "
                    f"{payment.mpesa_receipt_number}.",
                    **record,
                )
            else:
                payment_event_record(kind=EventKind.DUPLICATE_RESULT, message="Repeat of a success", **record)
        else:
            # A failure after a success never undoes a payment (faults 3, 4, 26).
            payment_event_record(
                kind=EventKind.IGNORED_LATE_EVENT,
                message=f"Failure {result.result_code} reported after the payment completed; ignored.",
                **record,
            )
    elif payment.status == S.FAILED:
        if result.is_success:
            # Money moved after we called it failed: a person decides (refund or honour the order).
            _transition(
                payment,
                S.NEEDS_REVIEW,
                kind=EventKind.DISAGREEMENT,
                message="Success reported after the payment was marked failed.",
                review_reason=ReviewReason.LATE_PAYMENT,
                paid_amount=result.amount,
                transaction_date=result.transaction_date,
                **{k: v for k, v in record.items() if k != "payment"},
            )
            _set_receipt_if_free(payment, result.receipt_number)
        else:
            payment_event_record(kind=EventKind.DUPLICATE_RESULT, message="Repeat of a failure", **record)
    else:
        payment_event_record(
            kind=EventKind.DUPLICATE_RESULT, message=f"Result while {payment.status}", **record
        )

    if inbox is not None:
        inbox.payment = payment
        inbox.status = InboxStatus.PROCESSED
        inbox.processed_at = timezone.now()
        inbox.error = ""
        inbox.save(update_fields=["payment", "status", "processed_at", "error"])
    return payment


def _apply_success(payment: Payment, result: StkResult, record: dict) -> None:
    fields = {k: v for k, v in record.items() if k != "payment"}
    base = dict(result_code=result.result_code, result_desc=result.result_desc)
    if result.from_query:
        # STK Query says paid but carries no receipt: completed, receipt to be filled in later.
        _transition(
            payment,
            S.COMPLETED,
            kind=EventKind.RESULT_APPLIED,
            message="Completed on STK Query; receipt number to follow.",
            receipt_pending=True,
            paid_amount=payment.amount,
            **base,
            **fields,
        )
        return
    review = None
    if result.problems:
        review = (ReviewReason.MISSING_METADATA, "; ".join(result.problems))
    elif result.amount != payment.amount:
        review = (ReviewReason.AMOUNT_MISMATCH, f"Paid KES {result.amount}, expected KES {payment.amount}.")
    elif Payment.objects.filter(mpesa_receipt_number=result.receipt_number).exclude(pk=payment.pk).exists():
        review = (ReviewReason.RECEIPT_REUSE, f"Receipt {result.receipt_number} belongs to another payment.")
    if review:
        _transition(
            payment,
            S.NEEDS_REVIEW,
            kind=EventKind.NEEDS_REVIEW,
            message=review[1],
            review_reason=review[0],
            paid_amount=result.amount,
            transaction_date=result.transaction_date,
            **base,
            **fields,
        )
        if review[0] != ReviewReason.RECEIPT_REUSE:
            _set_receipt_if_free(payment, result.receipt_number)
        return
    try:
        with transaction.atomic():
            _transition(
                payment,
                S.COMPLETED,
                kind=EventKind.RESULT_APPLIED,
                message=f"Paid, receipt {result.receipt_number}",
                mpesa_receipt_number=result.receipt_number,
                paid_amount=result.amount,
                transaction_date=result.transaction_date,
                **base,
                **fields,
            )
    except IntegrityError:
        # Another payment took the receipt between our check and our write.
        payment.refresh_from_db()
        _transition(
            payment,
            S.NEEDS_REVIEW,
            kind=EventKind.NEEDS_REVIEW,
            message=f"Receipt {result.receipt_number} belongs to another payment.",
            review_reason=ReviewReason.RECEIPT_REUSE,
            paid_amount=result.amount,
            **base,
            **fields,
        )


def _set_receipt_if_free(payment: Payment, receipt: str) -> None:
    if not receipt or payment.mpesa_receipt_number:
        return
    if Payment.objects.filter(mpesa_receipt_number=receipt).exists():
        return
    try:
        with transaction.atomic():
            Payment.objects.filter(pk=payment.pk).update(mpesa_receipt_number=receipt)
            payment.mpesa_receipt_number = receipt
    except IntegrityError:
        pass


def _fill_receipt(payment: Payment, result: StkResult, record: dict) -> None:
    if result.amount is not None and result.amount != payment.amount:
        payment_event_record(
            kind=EventKind.DISAGREEMENT,
            message=f"Late callback reports KES {result.amount}, expected KES {payment.amount}.",
            **record,
        )
        return
    _set_receipt_if_free(payment, result.receipt_number)
    if payment.mpesa_receipt_number == result.receipt_number:
        Payment.objects.filter(pk=payment.pk).update(
            receipt_pending=False, transaction_date=result.transaction_date or payment.transaction_date
        )
        payment.receipt_pending = False
        message = f"Receipt {result.receipt_number} filled in"
    else:
        message = f"Receipt {result.receipt_number} already used by another payment"
    payment_event_record(kind=EventKind.RESULT_APPLIED, message=message, **record)


def payment_query_status(*, payment_id: int, source: str = EventSource.QUERY, actor=None) -> Payment:
    """Ask Daraja (STK Query) now and apply a final answer; 'being processed' leaves the attempt as it is."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.method != PaymentMethod.MPESA or not payment.checkout_request_id:
        return payment
    try:
        answer = get_client().stk_query(checkout_request_id=payment.checkout_request_id)
    except DarajaError as exc:
        with transaction.atomic():
            payment = _locked(payment_id)
            payment.query_count += 1
            payment.save(update_fields=["query_count", "updated_at"])
            payment_event_record(
                payment=payment,
                kind=EventKind.QUERY_FAILED,
                source=source,
                actor=actor,
                message=exc.message,
                data={"errorCode": exc.error_code},
            )
        return payment
    if answer.pending:
        with transaction.atomic():
            payment = _locked(payment_id)
            payment.query_count += 1
            payment.save(update_fields=["query_count", "updated_at"])
            payment_event_record(
                payment=payment,
                kind=EventKind.QUERY_PENDING,
                source=source,
                actor=actor,
                message="The transaction is being processed",
            )
        return payment
    return payment_apply_result(
        checkout_request_id=payment.checkout_request_id,
        result=answer.as_result(payment.checkout_request_id),
        source=source,
        actor=actor,
    )


# --- inbound callbacks --------------------------------------------------------------------------
def callback_inbox_store(
    *,
    kind: str,
    body: bytes,
    headers: dict,
    source_ip: str | None,
    path: str,
    status: str = InboxStatus.RECEIVED,
    error: str = "",
    body_size: int | None = None,
) -> CallbackInbox:
    # NUL is replaced: PostgreSQL text columns refuse it, and a refused insert would lose the request.
    text = body[: settings.MPESA_CALLBACK_MAX_BYTES].decode("utf-8", errors="replace")
    text = text.replace("\x00", "\ufffd")
    return CallbackInbox.objects.create(
        kind=kind,
        status=status,
        body=text,
        body_size=len(body) if body_size is None else body_size,
        body_sha256=hashlib.sha256(body).hexdigest() if body else "",
        headers=headers,
        source_ip=source_ip,
        path=path[:255],
        error=error,
    )


@transaction.atomic
def callback_inbox_collapse_duplicate(*, kind: str, body: bytes) -> CallbackInbox | None:
    """Count a byte-identical repeat of an already processed STK callback on the original row.

    A duplicate storm must not grow the inbox without bound (faults.md row 39), and the payment's history
    still shows each repeat as a duplicate_result event (row 1). Returns the original row, or None when
    the body is new (or its first copy is not processed yet) and must be stored and processed.
    """
    if kind not in (InboxKind.STK_CALLBACK, InboxKind.STK_CALLBACK_LEGACY):
        return None
    original = (
        CallbackInbox.objects.select_for_update()
        .filter(kind=kind, body_sha256=hashlib.sha256(body).hexdigest(), status=InboxStatus.PROCESSED)
        .order_by("pk")
        .first()
    )
    if original is None:
        return None
    original.duplicates += 1
    original.last_received_at = timezone.now()
    original.save(update_fields=["duplicates", "last_received_at"])
    if original.payment_id is not None:
        payment = _locked(original.payment_id)
        payment_event_record(
            payment=payment,
            kind=EventKind.DUPLICATE_RESULT,
            source=EventSource.CALLBACK,
            inbox=original,
            message=f"Byte-identical repeat #{original.duplicates} of callback inbox #{original.pk}",
        )
    return original


def callback_inbox_process(*, inbox_id: int) -> CallbackInbox:
    """Parse and apply one stored STK callback. Safe to run again: a processed row is left alone."""
    inbox = CallbackInbox.objects.get(pk=inbox_id)
    if inbox.status in (InboxStatus.PROCESSED, InboxStatus.DUPLICATE, InboxStatus.REJECTED):
        return inbox
    try:
        result = parse_stk_callback(json.loads(inbox.body))
    except (ValueError, CallbackFormatError) as exc:
        CallbackInbox.objects.filter(pk=inbox.pk).update(
            status=InboxStatus.REJECTED, error=f"Malformed: {exc}"[:2000], processed_at=timezone.now()
        )
        inbox.refresh_from_db()
        return inbox
    CallbackInbox.objects.filter(pk=inbox.pk).update(
        correlation_id=result.checkout_request_id, attempts=inbox.attempts + 1
    )
    inbox.refresh_from_db()
    if inbox.kind == InboxKind.STK_CALLBACK_LEGACY and result.is_success:
        return _legacy_success_confirm(inbox, result)
    try:
        payment_apply_result(
            checkout_request_id=result.checkout_request_id,
            result=result,
            source=EventSource.CALLBACK,
            inbox=inbox,
        )
    except PaymentNotFound:
        CallbackInbox.objects.filter(pk=inbox.pk).update(
            status=InboxStatus.UNMATCHED, error="No payment has this CheckoutRequestID (yet)."
        )
        # The attempt may have committed its CheckoutRequestID, and looked for unmatched rows, between our
        # lookup and this update: look once more, so that one side always sees the other.
        if Payment.objects.filter(checkout_request_id=result.checkout_request_id).exists():
            return callback_inbox_process(inbox_id=inbox.pk)
        logger.warning("Callback for unknown CheckoutRequestID kept as unmatched (inbox #%s)", inbox.pk)
    except Exception:
        CallbackInbox.objects.filter(pk=inbox.pk).update(
            status=InboxStatus.FAILED, error=traceback.format_exc()[-8000:]
        )
        logger.exception("Callback processing failed (inbox #%s)", inbox.pk)
    inbox.refresh_from_db()
    return inbox


def _legacy_success_confirm(inbox: CallbackInbox, result: StkResult) -> CallbackInbox:
    """The legacy path has no secret: a success there counts only once STK Query confirms it."""
    payment = Payment.objects.filter(checkout_request_id=result.checkout_request_id).first()
    if payment is None:
        CallbackInbox.objects.filter(pk=inbox.pk).update(
            status=InboxStatus.UNMATCHED, error="Unknown CheckoutRequestID."
        )
    elif payment.is_paid and payment.mpesa_receipt_number == result.receipt_number:
        # A repeat of what we already know: recorded as a duplicate, nothing to confirm.
        payment_apply_result(
            checkout_request_id=result.checkout_request_id,
            result=result,
            source=EventSource.CALLBACK,
            inbox=inbox,
        )
    else:
        try:
            answer = get_client().stk_query(checkout_request_id=result.checkout_request_id)
        except DarajaError as exc:
            CallbackInbox.objects.filter(pk=inbox.pk).update(error=f"Awaiting confirmation: {exc.message}")
            return CallbackInbox.objects.get(pk=inbox.pk)
        if answer.pending:
            CallbackInbox.objects.filter(pk=inbox.pk).update(error="Awaiting confirmation: still processing.")
        elif answer.result_code == result.result_code:
            payment_apply_result(
                checkout_request_id=result.checkout_request_id,
                result=result,
                source=EventSource.CALLBACK,
                inbox=inbox,
            )
        else:
            with transaction.atomic():
                locked = _locked(payment.pk)
                payment_event_record(
                    payment=locked,
                    kind=EventKind.DISAGREEMENT,
                    source=EventSource.QUERY,
                    inbox=inbox,
                    message=f"Unconfirmed success callback; STK Query says {answer.result_code}.",
                    data={"callback": result.result_code, "query": answer.result_code},
                )
            payment_apply_result(
                checkout_request_id=result.checkout_request_id,
                result=answer.as_result(result.checkout_request_id),
                source=EventSource.QUERY,
                inbox=inbox,
            )
    return CallbackInbox.objects.get(pk=inbox.pk)
