"""Stored STK callbacks, applied by kind (payments.inbox dispatches to these), and attached by staff."""

from django.db import transaction

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.daraja.results import StkResult
from payments.exceptions import IllegalTransition, PaymentInvalid, PaymentNotFound
from payments.inbox import inbox_process, stk_result_of
from payments.models import (
    CallbackInbox,
    EventKind,
    EventSource,
    InboxKind,
    InboxStatus,
    Payment,
    PaymentStatus,
)
from payments.permissions import require_perm
from payments.services.queries import payment_query_requested
from payments.services.results import PAYMENT_AUDIT_FIELDS, payment_apply_result
from payments.state import event_record, lock_inbox, lock_payment

STK_KINDS = (InboxKind.STK_CALLBACK, InboxKind.STK_CALLBACK_LEGACY)


def stk_callback_apply(inbox: CallbackInbox, result: StkResult) -> bool:
    """A callback on the secret URL: Daraja's word. False when no payment has its CheckoutRequestID."""
    try:
        payment_apply_result(
            checkout_request_id=result.checkout_request_id,
            result=result,
            source=EventSource.CALLBACK,
            inbox=inbox,
        )
    except PaymentNotFound:
        return False
    return True


def legacy_callback_apply(inbox: CallbackInbox, result: StkResult) -> bool:
    """A callback on the original, unauthenticated path: only a reason to ask Daraja."""
    payment_id = (
        Payment.objects.filter(checkout_request_id=result.checkout_request_id)
        .values_list("pk", flat=True)
        .first()
    )
    if payment_id is None:
        return False
    payment_query_requested(payment_id=payment_id, inbox=inbox, claimed=inbox.claimed)
    return True


def callback_attach(*, inbox_id: int, payment_id: int, actor, note: str = "") -> Payment:
    """Staff attach an unmatched callback to the attempt it belongs to (e.g. a push that timed out on our
    side but reached the phone): the payment takes its CheckoutRequestID and the callback is then applied
    as if it had matched. One from the original path stays a trigger: Daraja is asked."""
    require_perm(actor, "payments.attach_callback", "You are not allowed to attach callbacks.")
    stored = CallbackInbox.objects.filter(pk=inbox_id, kind__in=STK_KINDS).first()
    if stored is None:
        raise PaymentInvalid("Only STK callbacks can be attached to a payment.")
    result = stk_result_of(stored)
    with transaction.atomic():
        payment = lock_payment(payment_id)
        stored = lock_inbox(inbox_id)
        if stored.status != InboxStatus.UNMATCHED:
            raise IllegalTransition(f"Only unmatched callbacks can be attached; this one is {stored.status}.")
        if payment.checkout_request_id and payment.checkout_request_id != result.checkout_request_id:
            raise IllegalTransition(
                f"Payment #{payment.pk} has its own CheckoutRequestID ({payment.checkout_request_id})."
            )
        if (
            Payment.objects.filter(checkout_request_id=result.checkout_request_id)
            .exclude(pk=payment.pk)
            .exists()
        ):
            raise IllegalTransition("Another payment already has this callback's CheckoutRequestID.")
        if payment.status not in (
            PaymentStatus.PENDING,
            PaymentStatus.INITIATED,
            PaymentStatus.FAILED,
            PaymentStatus.NEEDS_REVIEW,
        ):
            raise IllegalTransition(f"A {payment.get_status_display().lower()} payment takes no callback.")
        before = field_values(payment, PAYMENT_AUDIT_FIELDS)
        payment.checkout_request_id = result.checkout_request_id
        payment.merchant_request_id = payment.merchant_request_id or result.merchant_request_id
        payment.save(update_fields=["checkout_request_id", "merchant_request_id", "updated_at"])
        event_record(
            payment,
            kind=EventKind.CALLBACK_ATTACHED,
            source=EventSource.ADMIN,
            actor=actor,
            inbox=stored,
            message=f"Callback inbox #{stored.pk} attached" + (f": {note}" if note else ""),
            data={"CheckoutRequestID": result.checkout_request_id, "note": note},
        )
        # The callback is applied next, as Daraja's word, in its own transaction (its events say what it did).
        audit_record(
            action=AuditAction.CALLBACK_ATTACHED,
            actor=actor,
            obj=payment,
            changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
            reason=note,
            data={"inbox": stored.pk, "kind": stored.kind},
        )
    inbox_process(inbox_id=inbox_id)
    return Payment.objects.get(pk=payment_id)
