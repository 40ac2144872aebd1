"""Payment endpoints of the storefront API (`/api/v1/payments/...`), in the original service's shapes."""

import datetime as dt
from decimal import Decimal

from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status

from common.phone import normalize_msisdn
from payments import refunds, services
from payments.daraja.codes import meaning_of
from payments.exceptions import RefundPermissionDenied
from payments.models import EventSource, Payment, PaymentMethod, PaymentStatus, Refund, RefundStatus
from payments.schemas import PaymentOut
from payments.selectors import payment_is_retryable

# Mounted with the `orders` token scope, refunds_router with `refunds` (backoffice/api.py): a storefront
# token never reaches the refund endpoints, and a refunds token still needs its user's permissions.
router = Router(tags=["payments"])
refunds_router = Router(tags=["refunds"])

# For free text the API stores: PostgreSQL text cannot hold NUL (saving one is a DataError, a 500), so it is a
# 400 at the edge, as Django's form fields do it (ProhibitNullCharactersValidator).
NO_NUL_PATTERN = r"^[^\x00]*$"


def payment_out(payment: Payment) -> dict:
    failure_reason = ""
    if payment.status == PaymentStatus.FAILED:
        failure_reason = (
            meaning_of(payment.result_code).customer_text if payment.result_code else payment.result_desc
        )
    return {
        "id": payment.pk,
        "status": payment.status,
        "method": payment.method,
        "amount": float(payment.amount),
        "currency": payment.currency,
        "phone": payment.masked_phone,
        "mpesaReceiptNumber": payment.mpesa_receipt_number,
        "resultCode": payment.result_code or None,
        "resultDesc": payment.result_desc or None,
        "failureReason": failure_reason or None,
        "retryable": payment_is_retryable(payment),
        "orderId": payment.order_id,
        "orderStatus": payment.order.status,
        "createdAt": payment.created_at,
        "updatedAt": payment.updated_at,
    }


def visible_payments(user):
    payments = Payment.objects.select_related("order")
    return payments if user.is_staff else payments.filter(order__owner=user)


@router.get("/{int:payment_id}/status", response=PaymentOut, summary="Payment status")
def payment_status(request, payment_id: int):
    return payment_out(get_object_or_404(visible_payments(request.auth), pk=payment_id))


@router.get("/mpesa/{int:payment_id}/status", response=PaymentOut, summary="Ask M-Pesa now (STK Query)")
def payment_mpesa_status(request, payment_id: int):
    payment = get_object_or_404(visible_payments(request.auth), pk=payment_id, method=PaymentMethod.MPESA)
    # Spike Arrest protection: at most one query per payment every few seconds, whoever asks.
    if payment.is_open and services.query_throttle_acquire(payment.pk):
        payment = services.payment_query_status(
            payment_id=payment.pk, source=EventSource.QUERY, actor=request.auth
        )
    return payment_out(visible_payments(request.auth).get(pk=payment.pk))


class RetryIn(Schema):
    phone: str | None = None


@router.post(
    "/{int:payment_id}/retry", response={201: PaymentOut}, summary="New attempt for a failed payment"
)
def payment_retry(request, payment_id: int, body: RetryIn | None = None):
    payment = get_object_or_404(visible_payments(request.auth), pk=payment_id)
    phone = normalize_msisdn(body.phone) if body and body.phone else None
    new = services.payment_retry(
        payment_id=payment.pk, phone=phone, source=EventSource.API, actor=request.auth
    )
    return Status(201, payment_out(visible_payments(request.auth).get(pk=new.pk)))


# --- refunds (`refunds` scope, staff with the refund permissions) ------------------------------------
class RefundIn(Schema):
    amount: Decimal | None = Field(
        None, description="Whole KES; leave out to refund everything not yet refunded."
    )
    reason: str = Field(..., max_length=200, pattern=NO_NUL_PATTERN, description="Shown to the customer.")
    note: str = Field("", max_length=2000, pattern=NO_NUL_PATTERN, description="Internal note, staff only.")


class RefundOut(Schema):
    id: int
    paymentId: int
    status: str
    method: str
    amount: float
    currency: str
    reason: str
    needsApproval: bool
    mpesaTransactionId: str | None
    resultCode: str | None
    resultDesc: str | None
    requestedBy: str | None
    approvedBy: str | None
    createdAt: dt.datetime
    approvedAt: dt.datetime | None
    completedAt: dt.datetime | None


def refund_out(refund: Refund) -> dict:
    return {
        "id": refund.pk,
        "paymentId": refund.payment_id,
        "status": refund.status,
        "method": refund.method,
        "amount": float(refund.amount),
        "currency": refund.currency,
        "reason": refund.reason,
        "needsApproval": refund.status == RefundStatus.REQUESTED,
        "mpesaTransactionId": refund.transaction_id or None,
        "resultCode": refund.result_code or None,
        "resultDesc": refund.result_desc or None,
        "requestedBy": refund.requested_by.get_username() if refund.requested_by else None,
        "approvedBy": refund.approved_by.get_username() if refund.approved_by else None,
        "createdAt": refund.created_at,
        "approvedAt": refund.approved_at,
        "completedAt": refund.completed_at,
    }


def _staff_only(request, *permissions: str) -> None:
    """The token's scope lets it ask; the user must still be staff with one of `permissions`."""
    user = request.auth
    if not user.is_staff:
        raise RefundPermissionDenied("Refunds are for staff tokens only.")
    if not any(user.has_perm(permission) for permission in permissions):
        raise RefundPermissionDenied(f"Your user needs the {' or '.join(permissions)} permission.")


@refunds_router.post(
    "/{int:payment_id}/refunds",
    response={201: RefundOut},
    summary="Refund a payment (staff)",
    tags=["refunds"],
)
def payment_refund_create(request, payment_id: int, body: RefundIn):
    _staff_only(request, "payments.add_refund")
    payment = get_object_or_404(Payment, pk=payment_id)
    refund = refunds.refund_request(
        payment_id=payment.pk,
        amount=body.amount,
        reason=body.reason,
        internal_note=body.note,
        actor=request.auth,
        source=EventSource.API,
    )
    return Status(
        201, refund_out(Refund.objects.select_related("requested_by", "approved_by").get(pk=refund.pk))
    )


@refunds_router.get(
    "/{int:payment_id}/refunds",
    response=list[RefundOut],
    summary="Refunds of a payment (staff)",
    tags=["refunds"],
)
def payment_refund_list(request, payment_id: int):
    _staff_only(request, "payments.view_refund", "payments.add_refund")
    payment = get_object_or_404(Payment, pk=payment_id)
    return [
        refund_out(refund)
        for refund in payment.refunds.select_related("requested_by", "approved_by").order_by(
            "created_at", "pk"
        )
    ]
