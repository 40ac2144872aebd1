"""Final STK results (callbacks and STK Query answers) and receipts.

Only authenticated sources reach `payment_apply_result`: a callback on the secret URL, or a Daraja answer
we asked for. A receipt comes from a callback on the secret URL, from staff, or from the statement.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.daraja.codes import meaning_of
from payments.daraja.results import StkResult, clean_receipt_number
from payments.exceptions import IllegalTransition, PaymentInvalid, PaymentNotFound, ReceiptInUse
from payments.models import (
    OPEN_STATUSES,
    PAID_STATUSES,
    CallbackInbox,
    EventKind,
    EventSource,
    InboxStatus,
    Payment,
    PaymentStatus,
    ReviewReason,
)
from payments.permissions import require_perm
from payments.state import event_record, lock_inbox, payment_transition

# What a person's action on a payment may change; its audit record keeps the before/after of those that did.
PAYMENT_AUDIT_FIELDS = (
    "status",
    "paid_amount",
    "mpesa_receipt_number",
    "receipt_pending",
    "checkout_request_id",
    "merchant_request_id",
    "result_code",
    "result_desc",
    "review_reason",
    "refunded_amount",
    "query_failing",
)


def _awaits_result(payment: Payment) -> bool:
    """Open attempts, and pushes whose outcome we never learnt (their CheckoutRequestID came later)."""
    return payment.status in OPEN_STATUSES or (
        payment.status == PaymentStatus.NEEDS_REVIEW
        and payment.review_reason == ReviewReason.PUSH_OUTCOME_UNKNOWN
    )


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
        inbox = lock_inbox(inbox.pk)
        if inbox.status == InboxStatus.PROCESSED:
            return payment
    summary = {
        "ResultCode": result.result_code,
        "ResultDesc": result.result_desc,
        "MpesaReceiptNumber": result.receipt_number,
        "Amount": None if result.amount is None else str(result.amount),
    }
    record = {"source": source, "actor": actor, "inbox": inbox, "data": summary}

    if _awaits_result(payment):
        if payment.status == PaymentStatus.PENDING:
            # The push's answer never got recorded, but its CheckoutRequestID did (attached by staff).
            payment_transition(
                payment,
                PaymentStatus.INITIATED,
                kind=EventKind.PUSH_ACCEPTED,
                message="Push confirmed by its result",
                **record,
            )
        if result.is_success:
            _apply_success(payment, result, record)
        else:
            meaning = meaning_of(result.result_code)
            payment_transition(
                payment,
                PaymentStatus.FAILED,
                kind=EventKind.RESULT_APPLIED,
                message=result.result_desc or meaning.customer_text,
                result_code=result.result_code,
                result_desc=result.result_desc,
                failure_class=meaning.failure_class,
                **record,
            )
    elif payment.status in PAID_STATUSES:
        _apply_to_paid(payment, result, record)
    elif payment.status == PaymentStatus.FAILED and result.is_success:
        # Money moved after we called it failed: a person decides (refund or honour the order).
        payment_transition(
            payment,
            PaymentStatus.NEEDS_REVIEW,
            kind=EventKind.DISAGREEMENT,
            message="Success reported after the payment was marked failed.",
            review_reason=ReviewReason.LATE_PAYMENT,
            paid_amount=result.amount,
            transaction_date=result.transaction_date,
            **record,
        )
        _set_receipt_if_free(payment, result.receipt_number)
    elif payment.status == PaymentStatus.FAILED:
        event_record(payment, kind=EventKind.DUPLICATE_RESULT, message="Repeat of a failure", **record)
    else:
        event_record(
            payment, kind=EventKind.DUPLICATE_RESULT, message=f"Result while {payment.status}", **record
        )

    if inbox is not None:
        inbox.payment = payment
        inbox.status = InboxStatus.PROCESSED
        inbox.processed_at = timezone.now()
        inbox.error = ""
        inbox.save(update_fields=["payment", "status", "processed_at", "error"])
    return payment


def _apply_to_paid(payment: Payment, result: StkResult, record: dict) -> None:
    if not result.is_success:
        # A failure after a success never undoes a payment (faults 3, 4, 26).
        event_record(
            payment,
            kind=EventKind.IGNORED_LATE_EVENT,
            message=f"Failure {result.result_code} reported after the payment completed; ignored.",
            **record,
        )
    elif payment.receipt_pending and result.receipt_number:
        _fill_receipt(payment, result, record)
    elif (
        result.receipt_number
        and (payment.mpesa_receipt_number or result.receipt_number) != result.receipt_number
    ):
        # Another receipt for the same CheckoutRequestID: never overwrite, keep it as evidence.
        event_record(
            payment,
            kind=EventKind.DISAGREEMENT,
            message=f"Success with receipt {result.receipt_number}; the payment keeps {payment.mpesa_receipt_number}.",
            **record,
        )
    else:
        event_record(payment, kind=EventKind.DUPLICATE_RESULT, message="Repeat of a success", **record)


def _apply_success(payment: Payment, result: StkResult, record: dict) -> None:
    base = {"result_code": result.result_code, "result_desc": result.result_desc}
    if result.from_query:
        # STK Query says paid but carries no receipt: completed, receipt to be filled in by an
        # authenticated source (the secret-URL callback, staff, the statement).
        payment_transition(
            payment,
            PaymentStatus.COMPLETED,
            kind=EventKind.RESULT_APPLIED,
            message="Completed on STK Query; receipt number to follow.",
            receipt_pending=True,
            paid_amount=payment.amount,
            **base,
            **record,
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
        _to_review(payment, result, record, review, base)
        return
    try:
        with transaction.atomic():
            payment_transition(
                payment,
                PaymentStatus.COMPLETED,
                kind=EventKind.RESULT_APPLIED,
                message=f"Paid, receipt {result.receipt_number}",
                mpesa_receipt_number=result.receipt_number,
                paid_amount=result.amount,
                transaction_date=result.transaction_date,
                receipt_pending=False,
                **base,
                **record,
            )
    except IntegrityError:
        # Another payment took the receipt between our check and our write.
        payment.refresh_from_db()
        review = (ReviewReason.RECEIPT_REUSE, f"Receipt {result.receipt_number} belongs to another payment.")
        _to_review(payment, result, record, review, base)


def _to_review(
    payment: Payment, result: StkResult, record: dict, review: tuple[str, str], base: dict
) -> None:
    reason, message = review
    payment_transition(
        payment,
        PaymentStatus.NEEDS_REVIEW,
        kind=EventKind.NEEDS_REVIEW,
        message=message,
        review_reason=reason,
        paid_amount=result.amount,
        transaction_date=result.transaction_date,
        **base,
        **record,
    )
    if reason != ReviewReason.RECEIPT_REUSE:
        _set_receipt_if_free(payment, result.receipt_number)


def _set_receipt_if_free(payment: Payment, receipt: str) -> bool:
    if not receipt or payment.mpesa_receipt_number:
        return False
    if Payment.objects.filter(mpesa_receipt_number=receipt).exists():
        return False
    try:
        with transaction.atomic():
            Payment.objects.filter(pk=payment.pk).update(mpesa_receipt_number=receipt)
    except IntegrityError:
        return False
    payment.mpesa_receipt_number = receipt
    return True


def _fill_receipt(payment: Payment, result: StkResult, record: dict) -> None:
    if result.amount is not None and result.amount != payment.amount:
        event_record(
            payment,
            kind=EventKind.DISAGREEMENT,
            message=f"Late callback reports KES {result.amount}, expected KES {payment.amount}.",
            **record,
        )
        return
    if _set_receipt_if_free(payment, result.receipt_number):
        payment.receipt_pending = False
        payment.transaction_date = result.transaction_date or payment.transaction_date
        payment.save(update_fields=["receipt_pending", "transaction_date", "updated_at"])
        message = f"Receipt {result.receipt_number} filled in"
    else:
        message = f"Receipt {result.receipt_number} already used by another payment"
    event_record(payment, kind=EventKind.RESULT_APPLIED, message=message, **record)


@transaction.atomic
def payment_receipt_enter(*, payment_id: int, actor, receipt: str, note: str = "") -> Payment:
    """Staff give the receipt of a payment that completed without one (on an STK Query answer)."""
    require_perm(actor, "payments.enter_receipt", "You are not allowed to enter receipts.")
    receipt_number = clean_receipt_number(receipt)
    if not receipt_number:
        raise PaymentInvalid("An M-Pesa receipt number is 8 to 20 letters and digits.", field="receipt")
    payment = Payment.objects.select_for_update().filter(pk=payment_id).first()
    if payment is None:
        raise PaymentNotFound("No such payment.")
    if payment.status not in PAID_STATUSES or not payment.receipt_pending:
        raise IllegalTransition("Only completed payments still waiting for their receipt take one.")
    before = field_values(payment, PAYMENT_AUDIT_FIELDS)
    receipt_assign(payment, receipt_number)
    payment.receipt_pending = False
    payment.save(update_fields=["receipt_pending", "updated_at"])
    event_record(
        payment,
        kind=EventKind.RECEIPT_ENTERED,
        source=EventSource.ADMIN,
        actor=actor,
        message=f"Receipt {receipt_number} entered" + (f": {note}" if note else ""),
        data={"MpesaReceiptNumber": receipt_number, "note": note},
    )
    audit_record(
        action=AuditAction.RECEIPT_ENTERED,
        actor=actor,
        obj=payment,
        changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
        reason=note,
    )
    return payment


def receipt_assign(payment: Payment, receipt_number: str) -> None:
    """Give a locked payment its receipt, or refuse one that another payment already has."""
    owner = Payment.objects.filter(mpesa_receipt_number=receipt_number).exclude(pk=payment.pk).first()
    if owner is not None:
        raise ReceiptInUse(f"Receipt {receipt_number} belongs to payment #{owner.pk}.", field="receipt")
    try:
        with transaction.atomic():
            Payment.objects.filter(pk=payment.pk).update(mpesa_receipt_number=receipt_number)
    except IntegrityError as exc:
        raise ReceiptInUse(f"Receipt {receipt_number} belongs to another payment.", field="receipt") from exc
    payment.mpesa_receipt_number = receipt_number
