"""Staff settle a refund whose outcome stayed unknown, from the M-Pesa org portal statement."""

from django.db import transaction

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.daraja.results import clean_receipt_number
from payments.exceptions import IllegalTransition, RefundInvalid, RefundPermissionDenied
from payments.models import EventSource, Refund, RefundEventKind, RefundStatus
from payments.permissions import require_perm
from payments.refunds.approval import REFUND_AUDIT_FIELDS
from payments.refunds.outcome import refund_succeed
from payments.state import lock_payment_and_refund, refund_transition


@transaction.atomic
def refund_resolve(*, refund_id: int, actor, succeeded: bool, note: str, transaction_id: str = "") -> Refund:
    """Paid out (with the statement's receipt when there is one) or not paid out, with a required note."""
    require_perm(
        actor,
        "payments.resolve_refund",
        "You are not allowed to resolve refunds.",
        error=RefundPermissionDenied,
    )
    note = " ".join((note or "").split())
    if not note:
        raise RefundInvalid("Say how you know (e.g. the M-Pesa statement line).", field="note")
    receipt = ""
    if transaction_id.strip():
        receipt = clean_receipt_number(transaction_id)
        if not receipt:
            raise RefundInvalid(
                "An M-Pesa receipt number is 8 to 20 letters and digits.", field="transaction_id"
            )
        other = Refund.objects.filter(transaction_id=receipt).exclude(pk=refund_id).first()
        if other is not None:
            raise RefundInvalid(f"Receipt {receipt} belongs to refund #{other.pk}.", field="transaction_id")
    payment, refund = lock_payment_and_refund(refund_id)
    if refund.status != RefundStatus.UNKNOWN:
        raise IllegalTransition("Only refunds whose outcome is unknown can be resolved by hand.")
    before = field_values(refund, REFUND_AUDIT_FIELDS)
    data = {"note": note, "TransactionID": receipt}
    if succeeded:
        refund_succeed(
            payment,
            refund,
            source=EventSource.ADMIN,
            actor=actor,
            inbox=None,
            data=data,
            message=f"Resolved by staff as paid out: {note}",
            transaction_id=receipt or refund.transaction_id,
        )
    else:
        refund_transition(
            refund,
            RefundStatus.FAILED,
            kind=RefundEventKind.RESOLVED,
            source=EventSource.ADMIN,
            actor=actor,
            data=data,
            message=f"Resolved by staff as not paid out: {note}",
            result_desc=note[:512],
        )
    audit_record(
        action=AuditAction.REFUND_RESOLVED,
        actor=actor,
        obj=refund,
        changes=changes_between(before, field_values(refund, REFUND_AUDIT_FIELDS)),
        reason=note,
        data={"paid_out": succeeded, "payment_refunded_amount": str(payment.refunded_amount)},
    )
    return refund
