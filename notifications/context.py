"""What a message template can use. Every template gets every variable (empty when it does not apply).

Values are plain strings, numbers and booleans only: staff edit the templates, so no model object is ever
put in the context.
"""

from decimal import Decimal

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from common.phone import mask_msisdn
from payments.daraja.codes import meaning_of
from payments.selectors import payment_is_retryable

CONTEXT_DOCS: dict[str, str] = {
    "business_name": "Your business name (NOTIFICATIONS_BUSINESS_NAME).",
    "customer_name": "The customer's name as given with the order (its shipping name).",
    "order_reference": "The order reference, e.g. K7QX2M9A.",
    "order_total": "The order total with currency, e.g. KES 1,250.",
    "amount": "The payment amount with currency (the order total for order events).",
    "currency": "KES.",
    "receipt": "The M-Pesa receipt number (empty until M-Pesa sends it).",
    "phone": "The phone the prompt went to, masked (2547******149).",
    "reason": "Why a payment failed or an order was cancelled, in plain words and in the customer's "
    "language; for a refund, its reason (for a failed refund, M-Pesa's answer).",
    "retry_hint": "How to try again (or whom to contact), in the customer's language.",
    "can_retry": "True when trying again can work (use in {% if can_retry %}).",
    "refund_amount": "The refunded amount with currency.",
    "refund_id": "The refund's number.",
    "payment_id": "The payment attempt's number.",
    "result_code": "The M-Pesa result code (for staff messages).",
    "admin_url": "Link to the payment (or order, or alert) in the back office (for staff messages).",
    "alert_id": "Alerts: the alert's number.",
    "alert_rule": "Alerts: the name of the rule that opened it, e.g. M-Pesa success rate.",
    "alert_title": "Alerts: what is wrong, in one line with its figures.",
    "alert_details": "Alerts: the figures, one per line (at opening; the latest in reminders and when resolved).",
    "alert_opened_at": "Alerts: when it opened, Nairobi time.",
    "alert_resolution": "Alerts: how it was resolved (by itself, or by whom with their note).",
}

# Used to check templates when they are saved and as the preview when no real payment exists.
SAMPLE_CONTEXT: dict[str, object] = {
    "business_name": "Duka Bora",
    "customer_name": "Amina Wanjiru",
    "order_reference": "K7QX2M9A",
    "order_total": "KES 1,250",
    "amount": "KES 1,250",
    "currency": "KES",
    "receipt": "SGR7ABC123",
    "phone": "2547******149",
    "reason": "The payment was cancelled on the phone.",
    "retry_hint": "You can try again: open your order and choose Pay with M-Pesa.",
    "can_retry": True,
    "refund_amount": "KES 1,250",
    "refund_id": 42,
    "payment_id": 1001,
    "result_code": "1032",
    "admin_url": "https://backoffice.example.co.ke/admin/payments/payment/1001/change/",
    "alert_id": 12,
    "alert_rule": "M-Pesa success rate",
    "alert_title": "M-Pesa attempt success 12.0% (below the 50.0% floor) over the last 30 min, 25 finished "
    "attempts",
    "alert_details": "Finished attempts: 25\nCompleted: 3\nFailed: 22\nAttempt success: 12.0%",
    "alert_opened_at": "12 Nov 2026 14:03",
    "alert_resolution": "Resolved by itself: the condition was clear for 10 minutes.",
}
assert set(SAMPLE_CONTEXT) == set(CONTEXT_DOCS)

# M-Pesa failure reasons in Swahili; English comes from payments.daraja.codes.
_REASONS_SW = {
    "1": "Salio lako la M-Pesa halikutosha kwa malipo haya.",
    "2": "Kiasi ni chini ya kiwango cha chini cha M-Pesa.",
    "3": "Kiasi kinazidi kiwango cha juu cha M-Pesa kwa malipo moja.",
    "4": "Malipo haya yangepita kikomo chako cha siku cha M-Pesa.",
    "17": "M-Pesa ilikataa kurudia malipo yale yale ndani ya dakika 2.",
    "26": "Mfumo wa M-Pesa ulikuwa na shughuli nyingi.",
    "1001": "Muamala mwingine wa M-Pesa ulikuwa ukiendelea kwenye simu yako.",
    "1019": "Ombi la malipo liliisha muda kabla ya kujibiwa.",
    "1025": "M-Pesa haikuweza kutuma ombi la malipo.",
    "1032": "Malipo yalighairiwa kwenye simu.",
    "1037": "Simu yako haikupatikana.",
    "2001": "PIN ya M-Pesa uliyoweka si sahihi.",
    "8006": "PIN yako ya M-Pesa imefungwa. Piga Safaricom kwa 100 ili kuifungua.",
    "9999": "M-Pesa haikuweza kutuma ombi la malipo.",
}
_REASON_SW_UNKNOWN = "Malipo hayakufanikiwa."
# Why an order was cancelled, by the reason code of order_status_changed; other codes stay unsaid.
_CANCEL_REASONS = {
    "payment_window_closed": {
        "en": "The time to pay ran out before a payment was completed.",
        "sw": "Muda wa kulipa uliisha kabla malipo hayajakamilika.",
    },
}
_RETRY_HINTS = {
    ("en", True): "You can try again: open your order and choose Pay with M-Pesa.",
    ("en", False): "Please contact us to complete your order.",
    ("sw", True): "Unaweza kujaribu tena: fungua oda yako na uchague Lipa kwa M-Pesa.",
    ("sw", False): "Tafadhali wasiliana nasi ili kukamilisha oda yako.",
}


def format_kes(amount: Decimal | None, currency: str = "KES") -> str:
    if amount is None:
        return ""
    amount = Decimal(amount)
    if amount == amount.to_integral_value():
        return f"{currency} {amount:,.0f}"
    return f"{currency} {amount:,.2f}"


def failure_reason(result_code: str, language: str) -> str:
    meaning = meaning_of(result_code or "")
    if language == "sw":
        return _REASONS_SW.get(str(result_code), _REASON_SW_UNKNOWN)
    return meaning.customer_text


def _admin_url(route: str, pk) -> str:
    try:
        return settings.SITE_BASE_URL + reverse(route, args=[pk])
    except NoReverseMatch:
        return ""


def _blank() -> dict[str, object]:
    return {name: "" for name in CONTEXT_DOCS} | {
        "business_name": settings.NOTIFICATIONS_BUSINESS_NAME,
        "currency": "KES",
        "can_retry": False,
    }


def order_context(order, *, language: str, reason_code: str = "") -> dict[str, object]:
    context = _blank()
    context.update(
        customer_name=order.contact_name,
        order_reference=order.reference,
        order_total=format_kes(order.total, order.currency),
        amount=format_kes(order.total, order.currency),
        currency=order.currency,
        admin_url=_admin_url("admin:orders_order_change", order.pk),
        reason=_CANCEL_REASONS.get(reason_code, {}).get(language, ""),
    )
    return context


def payment_context(payment, *, language: str) -> dict[str, object]:
    context = order_context(payment.order, language=language)
    context.update(
        amount=format_kes(payment.amount, payment.currency),
        currency=payment.currency,
        receipt=payment.mpesa_receipt_number or "",
        phone=mask_msisdn(payment.phone),
        payment_id=payment.pk,
        result_code=payment.result_code,
        admin_url=_admin_url("admin:payments_payment_change", payment.pk),
    )
    if payment.status == "failed":
        can_retry = payment_is_retryable(payment)
        context.update(
            reason=failure_reason(payment.result_code, language),
            can_retry=can_retry,
            retry_hint=_RETRY_HINTS[(language if language == "sw" else "en", can_retry)],
        )
    return context


def refund_context(refund, *, language: str) -> dict[str, object]:
    """Defensive about the Refund model's attributes: payment, amount, and the pk."""
    payment = getattr(refund, "payment", None)
    context = payment_context(payment, language=language) if payment is not None else _blank()
    currency = getattr(payment, "currency", "KES") if payment is not None else "KES"
    failed = str(getattr(refund, "status", "")) == "failed"
    context.update(
        refund_amount=format_kes(getattr(refund, "amount", None), currency),
        refund_id=getattr(refund, "pk", ""),
        reason=str(getattr(refund, "result_desc" if failed else "reason", "") or ""),
        result_code=str(getattr(refund, "result_code", "") or context["result_code"]),
    )
    return context


def alert_context(
    *,
    alert_id: int,
    rule_name: str,
    title: str,
    details: str,
    opened_at: str,
    resolution: str = "",
    admin_url: str = "",
) -> dict[str, object]:
    """Staff messages about an alert (reports.alerts): plain values only, prepared by the caller."""
    context = _blank()
    context.update(
        alert_id=alert_id,
        alert_rule=rule_name,
        alert_title=title,
        alert_details=details,
        alert_opened_at=opened_at,
        alert_resolution=resolution,
        admin_url=admin_url,
    )
    return context
