"""Asking for money back: what can be refunded, by which method, and the request itself."""

import secrets
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.daraja.security import SecurityCredentialError, initiator_configured
from payments.exceptions import (
    RefundInProgress,
    RefundInvalid,
    RefundMethodUnavailable,
    RefundNotAllowed,
    RefundPermissionDenied,
    RefundsNotConfigured,
)
from payments.models import (
    REFUND_IN_FLIGHT_STATUSES,
    EventKind,
    EventSource,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundEventKind,
    RefundMethod,
    RefundStatus,
)
from payments.permissions import require_perm
from payments.refunds.approval import REFUND_AUDIT_FIELDS, refund_auto_approve
from payments.state import event_record, lock_payment, refund_created

REFUNDABLE_PAYMENT_STATUSES = (PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED)


def refund_base(payment: Payment) -> Decimal:
    """What a payment can give back in all: the amount asked, or less when less arrived (staff resolved a
    review as paid on a smaller amount than the prompt asked for)."""
    if payment.paid_amount is not None and payment.paid_amount < payment.amount:
        return payment.paid_amount
    return payment.amount


def refundable_amount(payment: Payment, *, excluding: Refund | None = None) -> Decimal:
    """What may still be given back: paid, minus refunded, minus every other refund still in flight, minus
    what over-refunds already paid out beyond it (never below zero)."""
    reserved = payment.refunds.filter(status__in=(*REFUND_IN_FLIGHT_STATUSES, RefundStatus.OVER_REFUNDED))
    if excluding is not None:
        reserved = reserved.exclude(pk=excluding.pk)
    total = reserved.aggregate(total=Sum("amount"))["total"] or Decimal("0")
    return max(refund_base(payment) - payment.refunded_amount - total, Decimal("0"))


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
    require_perm(
        actor, "payments.add_refund", "You are not allowed to request refunds.", error=RefundPermissionDenied
    )
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


def _refund_method(payment: Payment, amount: Decimal) -> str:
    if amount == refund_base(payment) and payment.refunded_amount == 0:
        # Reversal gives back exactly the original transaction (daraja.md §6.3: partial reversal unverified).
        if not payment.mpesa_receipt_number or payment.receipt_pending:
            raise RefundNotAllowed(
                "The M-Pesa receipt of this payment is not known yet; a reversal needs it."
            )
        return RefundMethod.REVERSAL
    if not settings.MPESA_B2C_SHORTCODE:
        raise RefundMethodUnavailable(
            f"A partial refund is paid by B2C and no B2C shortcode is configured (MPESA_B2C_SHORTCODE). "
            f"Only the full amount (KES {refund_base(payment)}) can be reversed.",
            field="amount",
        )
    if not payment.phone:
        raise RefundNotAllowed("The payment has no phone number to pay the refund to.")
    return RefundMethod.B2C


@transaction.atomic
def _refund_create(*, payment_id: int, amount, reason: str, actor, internal_note: str, source: str) -> Refund:
    payment = lock_payment(payment_id)
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
    remaining = refundable_amount(payment)
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
    method = _refund_method(payment, amount)
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                payment=payment,
                status=RefundStatus.REQUESTED,
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
    refund_created(
        refund,
        kind=RefundEventKind.REQUESTED,
        source=source,
        actor=actor,
        message=f"KES {amount} by {refund.get_method_display().lower()}: {reason}",
    )
    event_record(
        payment,
        kind=EventKind.NOTE,
        source=source,
        actor=actor,
        message=f"Refund #{refund.pk} of KES {amount} requested",
        data={"refund": refund.pk},
    )
    # The threshold counts everything refunded on this payment, so splitting a refund cannot dodge approval.
    if payment.refunded_amount + amount <= settings.REFUND_APPROVAL_THRESHOLD:
        refund_auto_approve(refund, actor=actor, source=source)
    # One record for the request, the approval it may have carried included (status and approved_by).
    audit_record(
        action=AuditAction.REFUND_REQUESTED,
        actor=actor,
        obj=refund,
        changes=changes_between({}, field_values(refund, REFUND_AUDIT_FIELDS)),
        reason=reason,
        data={"payment": payment.pk},
    )
    return refund
