"""Payments under review: a person decides, with a note, and the order follows."""

from django.db import IntegrityError, transaction

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.daraja.results import clean_receipt_number
from payments.exceptions import IllegalTransition, PaymentInvalid, ReceiptInUse
from payments.models import EventKind, EventSource, Payment, PaymentStatus
from payments.permissions import require_perm
from payments.services.results import PAYMENT_AUDIT_FIELDS, receipt_assign
from payments.state import lock_payment, payment_transition


class ReviewOutcome:
    PAID = "paid"
    NOT_PAID = "not_paid"
    CHOICES = ((PAID, "The money arrived: the payment is paid"), (NOT_PAID, "No money arrived: it failed"))


@transaction.atomic
def payment_review_resolve(
    *, payment_id: int, actor, outcome: str, note: str, receipt: str | None = None
) -> Payment:
    """Settle a payment under review from the M-Pesa statement.

    Paid needs the receipt (the one the payment already has, or a new one no other payment has): the
    payment is completed and the order confirmed. Not paid fails the attempt: the order is payable again
    (or cancelled when its window has closed).
    """
    require_perm(actor, "payments.review_payment", "You are not allowed to resolve payment reviews.")
    note = " ".join((note or "").split())
    if not note:
        raise PaymentInvalid("Say how you know (e.g. the M-Pesa statement line).", field="note")
    if outcome not in (ReviewOutcome.PAID, ReviewOutcome.NOT_PAID):
        raise PaymentInvalid("The outcome is paid or not_paid.", field="outcome")
    payment = lock_payment(payment_id)
    if payment.status != PaymentStatus.NEEDS_REVIEW:
        raise IllegalTransition("Only payments under review can be resolved.")
    before = field_values(payment, PAYMENT_AUDIT_FIELDS)
    record = {
        "kind": EventKind.REVIEW_RESOLVED,
        "source": EventSource.ADMIN,
        "actor": actor,
        "data": {"outcome": outcome, "note": note, "review_reason": payment.review_reason},
    }
    if outcome == ReviewOutcome.NOT_PAID:
        payment_transition(payment, PaymentStatus.FAILED, message=f"Resolved as not paid: {note}", **record)
        _audit_resolved(payment, actor=actor, before=before, data=record["data"])
        return payment
    receipt_number = clean_receipt_number(receipt or "") if receipt else payment.mpesa_receipt_number or ""
    if not receipt_number:
        raise PaymentInvalid("Enter the M-Pesa receipt of the payment (from the statement).", field="receipt")
    if payment.mpesa_receipt_number and receipt_number != payment.mpesa_receipt_number:
        raise PaymentInvalid(
            f"M-Pesa reported receipt {payment.mpesa_receipt_number} for this payment; leave the receipt "
            "empty or enter that one.",
            field="receipt",
        )
    if not payment.mpesa_receipt_number:
        receipt_assign(payment, receipt_number)
    record["data"]["MpesaReceiptNumber"] = receipt_number
    try:
        with transaction.atomic():
            payment_transition(
                payment,
                PaymentStatus.COMPLETED,
                message=f"Resolved as paid (receipt {receipt_number}): {note}",
                paid_amount=payment.paid_amount or payment.amount,
                receipt_pending=False,
                **record,
            )
    except IntegrityError as exc:
        raise ReceiptInUse(f"Receipt {receipt_number} belongs to another payment.", field="receipt") from exc
    _audit_resolved(payment, actor=actor, before=before, data=record["data"])
    return payment


def _audit_resolved(payment: Payment, *, actor, before: dict, data: dict) -> None:
    audit_record(
        action=AuditAction.REVIEW_RESOLVED,
        actor=actor,
        obj=payment,
        changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
        reason=data["note"],
        data={"outcome": data["outcome"], "review_reason": data["review_reason"]},
    )
