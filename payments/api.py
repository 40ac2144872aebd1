"""Payment endpoints of the storefront API (`/api/v1/payments/...`), in the original service's shapes."""

from django.core.cache import cache
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status

from payments import services
from payments.daraja.codes import meaning_of
from payments.models import EventSource, Payment, PaymentMethod, PaymentStatus
from payments.schemas import PaymentOut

router = Router(tags=["payments"])
QUERY_THROTTLE_SECONDS = 5


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
        "checkoutRequestId": payment.checkout_request_id,
        "mpesaReceiptNumber": payment.mpesa_receipt_number,
        "resultCode": payment.result_code or None,
        "resultDesc": payment.result_desc or None,
        "failureReason": failure_reason or None,
        "retryable": payment.method == PaymentMethod.MPESA and payment.status == PaymentStatus.FAILED,
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
    if payment.is_open and cache.add(f"stk-query-throttle:{payment.pk}", 1, timeout=QUERY_THROTTLE_SECONDS):
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
    from payments.daraja.phone import normalize_msisdn

    payment = get_object_or_404(visible_payments(request.auth), pk=payment_id)
    phone = normalize_msisdn(body.phone) if body and body.phone else None
    new = services.payment_retry(
        payment_id=payment.pk, phone=phone, source=EventSource.API, actor=request.auth
    )
    return Status(201, payment_out(visible_payments(request.auth).get(pk=new.pk)))
