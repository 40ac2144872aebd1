"""Reads about payments that more than one place needs, defined once."""

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet

from common.phone import InvalidPhoneNumber, normalize_msisdn, visible_digits_match
from payments.daraja.codes import meaning_of
from payments.daraja.results import clean_receipt_number
from payments.exceptions import AttemptInProgress, PaymentError, PaymentNotRetryable
from payments.models import (
    OPEN_STATUSES,
    PAID_STATUSES,
    CallbackInbox,
    InboxKind,
    InboxStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ReviewReason,
)

# How far from an unmatched callback's time a payment may have been started to be offered as its match.
CANDIDATE_WINDOW = dt.timedelta(hours=2)


def payment_retry_blocker(payment: Payment, *, siblings: list[Payment] | None = None) -> PaymentError | None:
    """Why no new attempt may start from this payment, or None when it may.

    The one definition of "retryable": the API's `retryable` field, the retry service and the failure
    message's "you can try again" all ask this. `siblings` are the order's attempts when the caller already
    holds their locks.
    """
    if payment.method != PaymentMethod.MPESA or payment.status != PaymentStatus.FAILED:
        return PaymentNotRetryable(
            f"Only failed M-Pesa payments can be retried; this one is {payment.get_status_display().lower()}."
        )
    if payment.result_code and not meaning_of(payment.result_code).retryable:
        return PaymentNotRetryable(
            f"M-Pesa's answer ({payment.result_code}) means a new prompt would fail the same way."
        )
    if getattr(payment.order, "status", "") == "CANCELLED":
        return PaymentNotRetryable("The order is cancelled.")
    if siblings is None:
        siblings = list(Payment.objects.filter(order_id=payment.order_id))
    if any(p.status in PAID_STATUSES or p.status == PaymentStatus.NEEDS_REVIEW for p in siblings):
        return PaymentNotRetryable("This order already has a payment that is paid or under review.")
    if any(p.status in OPEN_STATUSES for p in siblings):
        return AttemptInProgress("A payment attempt for this order is already in progress.")
    return None


def payment_is_retryable(payment: Payment) -> bool:
    return payment_retry_blocker(payment) is None


def payment_lookup(term: str) -> list[Q]:
    """What a searched term may name exactly, most likely first, when it is an identifier: a phone number
    (any way it is written), an M-Pesa receipt, an order reference or a CheckoutRequestID. Each is one
    indexed equality, so a search stays fast at millions of payments; [] for anything else (searched the
    slow, partial way)."""
    term = (term or "").strip()
    if not term:
        return []
    try:
        return [Q(phone=normalize_msisdn(term))]
    except InvalidPhoneNumber:
        pass
    if term.startswith("ws_CO_"):
        return [Q(checkout_request_id=term)]
    receipt = clean_receipt_number(term)
    if receipt:
        return [Q(mpesa_receipt_number=receipt), Q(order__reference=receipt)]
    return []


def payments_receipt_pending() -> QuerySet[Payment]:
    """Completed (by STK Query) and still waiting for an authenticated source to give the receipt."""
    # Only a completed attempt is ever flagged (and refunds keep it paid): the flag alone selects them, through
    # its partial index.
    return Payment.objects.filter(receipt_pending=True)


def _inbox_exhausted() -> Q:
    return Q(attempts__gte=settings.INBOX_MAX_ATTEMPTS) & Q(
        status__in=(InboxStatus.RECEIVED, InboxStatus.FAILED, InboxStatus.UNMATCHED)
    )


def inbox_needing_attention() -> QuerySet[CallbackInbox]:
    """Inbox rows no automatic step will settle any more: a person has to look at them."""
    unmatched_success = Q(
        status=InboxStatus.UNMATCHED, kind__in=(InboxKind.STK_CALLBACK, InboxKind.STK_CALLBACK_LEGACY)
    ) & Q(claimed__ResultCode="0")
    return CallbackInbox.objects.filter(_inbox_exhausted() | unmatched_success)


def inbox_gave_up() -> QuerySet[CallbackInbox]:
    """Inbox rows the sweeper stopped retrying (INBOX_MAX_ATTEMPTS reached) without settling them."""
    return CallbackInbox.objects.filter(_inbox_exhausted())


def callback_candidates(inbox: CallbackInbox) -> QuerySet[Payment]:
    """Payments an unmatched successful callback may belong to: the same amount, a phone whose visible
    digits agree (Safaricom masks numbers in notifications), started around the callback's time, and not
    settled by another CheckoutRequestID."""
    claimed = inbox.claimed or {}
    try:
        amount = Decimal(str(claimed.get("Amount")))
    except (ArithmeticError, ValueError, TypeError):
        return Payment.objects.none()
    moment = inbox.received_at
    candidates = Payment.objects.filter(
        method=PaymentMethod.MPESA,
        amount=amount,
        created_at__gte=moment - CANDIDATE_WINDOW,
        created_at__lte=moment + dt.timedelta(minutes=5),
    ).filter(
        Q(checkout_request_id__isnull=True)
        | Q(status=PaymentStatus.NEEDS_REVIEW, review_reason=ReviewReason.PUSH_OUTCOME_UNKNOWN)
    )
    candidates = candidates.exclude(status__in=PAID_STATUSES).select_related("order")
    phone = str(claimed.get("PhoneNumber") or "")
    matching = [p.pk for p in candidates if not phone or visible_digits_match(phone, p.phone)]
    return Payment.objects.filter(pk__in=matching).select_related("order").order_by("-created_at")
