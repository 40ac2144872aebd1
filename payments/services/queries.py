"""STK Query: asking Daraja what became of an attempt. Its answer is an authenticated source."""

import logging
from functools import partial

from django.core.cache import cache
from django.db import transaction

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from payments.daraja.client import get_client
from payments.daraja.errors import DarajaError
from payments.exceptions import PaymentNotFound
from payments.inbox import inbox_mark_processed
from payments.models import (
    CallbackInbox,
    EventKind,
    EventSource,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from payments.permissions import require_perm_or_owner
from payments.services.results import PAYMENT_AUDIT_FIELDS, payment_apply_result
from payments.state import event_record, lock_inbox, lock_payment

logger = logging.getLogger(__name__)

# Spike Arrest protection: at most one query per payment every few seconds, whoever asks.
QUERY_THROTTLE_SECONDS = 5


def query_throttle_acquire(payment_id: int) -> bool:
    """True for the first asker in QUERY_THROTTLE_SECONDS (shared by every process through the cache)."""
    return cache.add(f"stk-query-throttle:{payment_id}", 1, timeout=QUERY_THROTTLE_SECONDS)


def payment_query_status(*, payment_id: int, source: str = EventSource.QUERY, actor=None) -> Payment:
    """Ask Daraja (STK Query) now and apply a final answer.

    "Being processed" leaves the attempt as it is. An unanswered question (5xx, Spike Arrest, timeout) sets
    `query_failing`: the attempt stays open and is never expired on it.
    """
    payment = Payment.objects.select_related("order").filter(pk=payment_id).first()
    if payment is None:
        raise PaymentNotFound("No such payment.")
    require_perm_or_owner(
        actor, "payments.query_payment", payment, "You may not ask M-Pesa about this payment."
    )
    if payment.method != PaymentMethod.MPESA or not payment.checkout_request_id:
        return payment
    try:
        answer = get_client().stk_query(checkout_request_id=payment.checkout_request_id)
    except DarajaError as exc:
        return _query_unanswered(payment_id, source=source, actor=actor, error=exc)
    if answer.pending:
        with transaction.atomic():
            payment = lock_payment(payment_id)
            before = field_values(payment, PAYMENT_AUDIT_FIELDS)
            payment.query_count += 1
            payment.query_failing = False
            payment.save(update_fields=["query_count", "query_failing", "updated_at"])
            event_record(
                payment,
                kind=EventKind.QUERY_PENDING,
                source=source,
                actor=actor,
                message="The transaction is being processed",
            )
            _audit_query(payment, actor=actor, before=before, answer={"pending": True})
        return payment
    with transaction.atomic():
        # Locked first (as payment_apply_result does) only to read what a person's question changed.
        before = field_values(lock_payment(payment_id), PAYMENT_AUDIT_FIELDS) if actor is not None else {}
        payment = payment_apply_result(
            checkout_request_id=payment.checkout_request_id,
            result=answer.as_result(payment.checkout_request_id),
            source=source,
            actor=actor,
        )
        if payment.query_failing:
            Payment.objects.filter(pk=payment.pk).update(query_failing=False)
            payment.query_failing = False
        _audit_query(
            payment,
            actor=actor,
            before=before,
            answer={"ResultCode": answer.result_code, "ResultDesc": answer.result_desc},
        )
    return payment


def _audit_query(payment: Payment, *, actor, before: dict, answer: dict) -> None:
    """A person asked M-Pesa now (staff, or the storefront's token for its own order); the sweeper is not
    recorded here. Asking is the action: it is recorded even when the answer changed nothing."""
    if actor is None:
        return
    audit_record(
        action=AuditAction.PAYMENT_QUERIED,
        actor=actor,
        obj=payment,
        changes=changes_between(before, field_values(payment, PAYMENT_AUDIT_FIELDS)),
        data=answer,
    )


@transaction.atomic
def _query_unanswered(payment_id: int, *, source: str, actor, error: DarajaError) -> Payment:
    payment = lock_payment(payment_id)
    before = field_values(payment, PAYMENT_AUDIT_FIELDS)
    payment.query_count += 1
    payment.query_failing = payment.status in (PaymentStatus.PENDING, PaymentStatus.INITIATED)
    payment.save(update_fields=["query_count", "query_failing", "updated_at"])
    event_record(
        payment,
        kind=EventKind.QUERY_FAILED,
        source=source,
        actor=actor,
        message=error.message,
        data={"errorCode": error.error_code, "httpStatus": error.http_status},
    )
    _audit_query(
        payment,
        actor=actor,
        before=before,
        answer={"unanswered": error.message, "errorCode": error.error_code},
    )
    return payment


def payment_query_enqueue(*, payment_id: int) -> None:
    """Ask Daraja about a payment from a worker (never inside the request that triggered it)."""
    from common.queue import enqueue

    try:
        enqueue("payments.tasks.payment_query", payment_id, task_name=f"stk-query-{payment_id}")
    except Exception:
        logger.exception("Could not enqueue an STK Query for payment #%s; the sweeper will ask", payment_id)


@transaction.atomic
def payment_query_requested(*, payment_id: int, inbox: CallbackInbox, claimed: dict) -> Payment:
    """An unauthenticated callback spoke about this payment: record its claim and ask Daraja.

    Nothing in the body is trusted. An attempt still open is asked at once (and by the sweeper in any case);
    a failed one is asked whether money moved after all. Daraja's answer goes through the STK Query path,
    so a success found this way is completed with its receipt pending an authenticated source.
    """
    payment = lock_payment(payment_id)
    ask = payment.method == PaymentMethod.MPESA and (
        payment.status in (PaymentStatus.PENDING, PaymentStatus.INITIATED)
        or (payment.status == PaymentStatus.FAILED and claimed.get("ResultCode") == "0")
    )
    event_record(
        payment,
        kind=EventKind.QUERY_REQUESTED,
        source=EventSource.CALLBACK,
        inbox=inbox,
        message="Unauthenticated callback (original path): "
        + ("asking M-Pesa" if ask else "nothing to ask; its claim is kept in the inbox"),
        data={"claimed": claimed},
    )
    inbox_mark_processed(lock_inbox(inbox.pk), payment_id=payment.pk)
    if ask and query_throttle_acquire(payment.pk):
        transaction.on_commit(partial(payment_query_enqueue, payment_id=payment.pk), robust=True)
    return payment
