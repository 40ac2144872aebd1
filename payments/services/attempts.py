"""Payment attempts: creating them, sending the STK push, retrying, and cash on delivery."""

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments import inbox
from payments.callback_urls import stk_callback_url
from payments.daraja.client import get_client, mpesa_amount
from payments.daraja.errors import (
    DarajaAuthError,
    DarajaBusy,
    DarajaError,
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaUnavailable,
)
from payments.exceptions import (
    AttemptInProgress,
    IllegalTransition,
    PaymentInvalid,
    PaymentNotFound,
    RetryTooSoon,
)
from payments.models import (
    EventKind,
    EventSource,
    FailureClass,
    InboxKind,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ReviewReason,
)
from payments.permissions import require_perm, require_perm_or_owner
from payments.selectors import payment_retry_blocker
from payments.services.results import PAYMENT_AUDIT_FIELDS
from payments.state import (
    event_record,
    lock_order,
    lock_order_payments,
    lock_payment,
    payment_created,
    payment_transition,
)

# Daraja refuses the same amount to the same phone within 2 minutes (ResultCode 17, daraja.md §5).
RULE_17_WINDOW = dt.timedelta(minutes=2)


@transaction.atomic
def payment_create(
    *, order, method: str, amount: Decimal, phone: str = "", source: str, actor=None
) -> Payment:
    """A new attempt for an order. M-Pesa amounts are whole shillings (rounded up); COD waits for delivery."""
    status = PaymentStatus.PENDING_DELIVERY if method == PaymentMethod.COD else PaymentStatus.PENDING
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
    payment_created(
        payment,
        kind=EventKind.CREATED,
        source=source,
        actor=actor,
        message=f"{payment.get_method_display()} attempt for KES {charged}",
        data={"order_total": str(amount)} if charged != amount else {},
    )
    return payment


def payment_initiate_stk(*, payment_id: int, source: str = EventSource.API, actor=None) -> Payment:
    """Send the STK push for a committed pending attempt and record what Daraja said.

    Must be called outside a transaction: the attempt is already on disk, so a crash during the call leaves a
    pending row that reconciliation sees, never a lost push.
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != PaymentStatus.PENDING or payment.method != PaymentMethod.MPESA:
        return payment
    try:
        accepted = get_client().stk_push(
            phone=payment.phone,
            amount=payment.amount,
            account_reference=payment.account_reference,
            description=f"Order {payment.account_reference}",
            callback_url=stk_callback_url(),
        )
    except DarajaOutcomeUnknown as exc:
        return _push_outcome(
            payment_id,
            PaymentStatus.NEEDS_REVIEW,
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
        return _push_outcome(
            payment_id,
            PaymentStatus.FAILED,
            kind=EventKind.PUSH_REJECTED,
            source=source,
            actor=actor,
            message=message,
            result_code=getattr(exc, "error_code", ""),
            result_desc=message[:512],
            failure_class=_push_failure_class(exc, message),
        )
    _push_outcome(
        payment_id,
        PaymentStatus.INITIATED,
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
    inbox.inbox_reprocess_unmatched(
        kinds=(InboxKind.STK_CALLBACK, InboxKind.STK_CALLBACK_LEGACY),
        correlation_ids=[accepted.checkout_request_id],
    )
    return Payment.objects.get(pk=payment_id)


def _push_failure_class(exc: Exception, message: str) -> str:
    if isinstance(exc, DarajaBusy | DarajaUnavailable):
        return FailureClass.SYSTEM
    if isinstance(exc, DarajaAuthError):
        return FailureClass.CONFIG
    if isinstance(exc, DarajaRejected) and exc.error_code == "500.001.1001":
        # One code, several meanings (daraja.md §2): a locked subscriber is the customer's, the rest ours.
        return FailureClass.CUSTOMER if "subscriber" in message.lower() else FailureClass.CONFIG
    return FailureClass.REQUEST


@transaction.atomic
def _push_outcome(
    payment_id: int, to_status: str, *, kind: str, source: str, actor, message: str, data=None, **fields
) -> Payment:
    payment = lock_payment(payment_id)
    if payment.status != PaymentStatus.PENDING:
        checkout_request_id = fields.get("checkout_request_id")
        if checkout_request_id and not payment.checkout_request_id:
            # The status sweeper gave up on this push while it was in flight: keep the id so the callback
            # still finds the attempt (a success then goes to review as a late payment).
            payment.checkout_request_id = checkout_request_id
            payment.merchant_request_id = fields.get("merchant_request_id", "")
            payment.save(update_fields=["checkout_request_id", "merchant_request_id", "updated_at"])
            event_record(payment, kind=EventKind.NOTE, source=source, actor=actor, message=message, data=data)
        return payment
    payment_transition(
        payment, to_status, kind=kind, source=source, actor=actor, message=message, data=data, **fields
    )
    return payment


@transaction.atomic
def _retry_attempt_create(*, payment_id: int, phone: str | None, source: str, actor) -> Payment:
    order_id = Payment.objects.filter(pk=payment_id).values_list("order_id", flat=True).first()
    siblings = lock_order_payments(order_id) if order_id else []
    failed = next((p for p in siblings if p.pk == payment_id), None)
    if failed is None:
        raise PaymentNotFound("No such payment.")
    require_perm_or_owner(actor, "payments.retry_payment", failed, "You may not retry this payment.")
    # The order after its attempts (the lock order everywhere), so a cancellation cannot slip in.
    failed.order = lock_order(order_id)
    blocker = payment_retry_blocker(failed, siblings=siblings)
    if blocker is not None:
        raise blocker
    phone = phone or failed.phone
    latest = max(
        (
            p.initiated_at or p.created_at
            for p in siblings
            if p.phone == phone and p.amount == failed.amount and _push_may_have_started(p)
        ),
        default=None,
    )
    if latest and timezone.now() - latest < RULE_17_WINDOW:
        wait = int((RULE_17_WINDOW - (timezone.now() - latest)).total_seconds()) + 1
        raise RetryTooSoon(
            f"M-Pesa refuses the same amount to the same phone within 2 minutes. Try again in {wait} s.",
            retry_after=wait,
        )
    new = payment_create(
        order=failed.order,
        method=PaymentMethod.MPESA,
        amount=failed.amount,
        phone=phone,
        source=source,
        actor=actor,
    )
    event_record(
        failed, kind=EventKind.NOTE, source=source, actor=actor, message=f"Retried as payment #{new.pk}"
    )
    if actor is not None:  # staff, or the storefront's token for its own order; not the system
        audit_record(
            action=AuditAction.PAYMENT_RETRIED,
            actor=actor,
            obj=new,
            changes=changes_between({}, field_values(new, ("method", "amount", "status"))),
            data={"retry_of": failed.pk, "order": failed.order_id, "phone": new.masked_phone},
        )
    return new


def _push_may_have_started(payment: Payment) -> bool:
    """M-Pesa's 2-minute rule counts pushes it initiated (daraja.md, code 17): an attempt Daraja accepted,
    or one whose push may have reached it. A push Daraja refused, or never received (connection refused),
    started nothing and does not hold the customer back."""
    return (
        payment.initiated_at is not None
        or payment.status == PaymentStatus.PENDING
        or payment.failure_class == FailureClass.UNKNOWN
    )


def payment_retry(
    *, payment_id: int, phone: str | None = None, source: str = EventSource.API, actor=None
) -> Payment:
    """A new attempt (a new row) for a failed M-Pesa payment, then its STK push."""
    new = _retry_attempt_create(payment_id=payment_id, phone=phone, source=source, actor=actor)
    return payment_initiate_stk(payment_id=new.pk, source=source, actor=actor)


@transaction.atomic
def payment_mark_collected(*, payment_id: int, actor, note: str = "") -> Payment:
    """Cash on delivery: staff record the cash as collected."""
    require_perm(actor, "payments.collect_payment", "You are not allowed to record cash collections.")
    payment = lock_payment(payment_id)
    if payment.status != PaymentStatus.PENDING_DELIVERY:
        raise IllegalTransition("Only payments pending delivery can be marked as collected.")
    before = field_values(payment, PAYMENT_AUDIT_FIELDS)
    payment_transition(
        payment,
        PaymentStatus.COMPLETED,
        kind=EventKind.COLLECTED,
        source=EventSource.ADMIN,
        actor=actor,
        message=note or "Cash collected on delivery",
        paid_amount=payment.amount,
    )
    audit_record(
        action=AuditAction.CASH_COLLECTED,
        actor=actor,
        obj=payment,
        changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
        reason=note,
    )
    return payment


@transaction.atomic
def payment_mark_not_collected(*, payment_id: int, actor, reason: str) -> Payment:
    """Cash on delivery that was not collected (refused, nobody home): the attempt fails with the reason.

    The order stops counting as accepted: it is payable again within a new payment window, after which it
    is cancelled like any unpaid order, or staff cancel it at once.
    """
    require_perm(actor, "payments.collect_payment", "You are not allowed to record cash collections.")
    reason = " ".join((reason or "").split())
    if not reason:
        raise PaymentInvalid("Say why the cash was not collected.", field="reason")
    payment = lock_payment(payment_id)
    if payment.status != PaymentStatus.PENDING_DELIVERY:
        raise IllegalTransition("Only payments pending delivery can be marked as not collected.")
    before = field_values(payment, PAYMENT_AUDIT_FIELDS)
    payment_transition(
        payment,
        PaymentStatus.FAILED,
        kind=EventKind.NOT_COLLECTED,
        source=EventSource.ADMIN,
        actor=actor,
        message=f"Cash not collected: {reason}",
        result_desc=f"Cash not collected: {reason}"[:512],
    )
    audit_record(
        action=AuditAction.CASH_NOT_COLLECTED,
        actor=actor,
        obj=payment,
        changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
        reason=reason,
    )
    return payment
