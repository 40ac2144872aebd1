"""The public core of every payment and refund state change.

- The legal edges of both state machines.
- Lock helpers, always taken in one order so that no two paths can deadlock: the payment (all attempts of
  an order in primary-key order when several are needed), then its refund, then the inbox row, then the
  order.
- `payment_transition` and `refund_transition`: move a locked row along a legal edge, write its event and
  send its signal, inside the caller's transaction (receivers run in it).
- `event_record`: the one way to append to a payment's or a refund's history.

Only the services in `payments.services` and `payments.refunds` call these; no other code writes a status.
"""

from django.db import models
from django.utils import timezone

from payments.exceptions import IllegalTransition, PaymentNotFound, RefundNotFound
from payments.models import (
    CallbackInbox,
    EventKind,
    EventSource,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Refund,
    RefundEvent,
    RefundStatus,
    SettledBy,
)
from payments.signals import payment_status_changed, refund_status_changed

PAYMENT_EDGES: dict[str, frozenset[str]] = {
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.INITIATED, PaymentStatus.FAILED, PaymentStatus.NEEDS_REVIEW}
    ),
    PaymentStatus.INITIATED: frozenset(
        {PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.NEEDS_REVIEW}
    ),
    PaymentStatus.PENDING_DELIVERY: frozenset({PaymentStatus.COMPLETED, PaymentStatus.FAILED}),
    # money moved after we called it failed: a person decides
    PaymentStatus.FAILED: frozenset({PaymentStatus.NEEDS_REVIEW}),
    # needs_review -> needs_review: a push whose outcome was unknown gets a success with an anomaly (another
    # amount, a used receipt): still a person's call, now with the reason and the evidence of that result
    PaymentStatus.NEEDS_REVIEW: frozenset(
        {PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.NEEDS_REVIEW}
    ),
    PaymentStatus.COMPLETED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.REFUNDED: frozenset(),
}

REFUND_EDGES: dict[str, frozenset[str]] = {
    RefundStatus.REQUESTED: frozenset({RefundStatus.APPROVED, RefundStatus.REJECTED}),
    # failed: it no longer fits the payment when it is about to be sent (nothing is sent)
    RefundStatus.APPROVED: frozenset({RefundStatus.SUBMITTING, RefundStatus.FAILED}),
    # back to approved only when Daraja said nothing was processed (busy) or nothing was sent
    RefundStatus.SUBMITTING: frozenset(
        {
            RefundStatus.SUBMITTED,
            RefundStatus.SUCCEEDED,
            RefundStatus.OVER_REFUNDED,
            RefundStatus.FAILED,
            RefundStatus.UNKNOWN,
            RefundStatus.APPROVED,
        }
    ),
    RefundStatus.SUBMITTED: frozenset(
        {RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED, RefundStatus.FAILED, RefundStatus.UNKNOWN}
    ),
    # unknown -> submitting: staff re-send a reversal, which Safaricom answers R000001 if it already ran
    RefundStatus.UNKNOWN: frozenset(
        {RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED, RefundStatus.FAILED, RefundStatus.SUBMITTING}
    ),
    # a Result with a receipt after we gave up: the money did move
    RefundStatus.FAILED: frozenset({RefundStatus.SUCCEEDED, RefundStatus.OVER_REFUNDED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.OVER_REFUNDED: frozenset(),
    RefundStatus.REJECTED: frozenset(),
}


# Where a refund's story ends (failed may still turn into a success if a Result with a receipt comes).
REFUND_SETTLED_STATUSES = (
    RefundStatus.SUCCEEDED,
    RefundStatus.OVER_REFUNDED,
    RefundStatus.FAILED,
    RefundStatus.REJECTED,
)


# --- locks (payment, then refund, then inbox row, then order) ---------------------------------------
def lock_payment(payment_id: int) -> Payment:
    try:
        return Payment.objects.select_for_update().get(pk=payment_id)
    except Payment.DoesNotExist as exc:
        raise PaymentNotFound("No such payment.") from exc


def lock_order_payments(order_id: int) -> list[Payment]:
    """Every attempt of an order, locked in primary-key order (the one order all multi-row lockers use).

    Asked twice: under READ COMMITTED a locking read returns the rows its statement's snapshot saw, so an
    attempt another transaction committed while we waited for the first lock (a concurrent retry) is
    missing from it. A new attempt is only created under these locks, so the second read sees (and locks)
    every attempt there is; without it a second retry would insert beside an open attempt it never saw.
    """
    list(Payment.objects.select_for_update().filter(order_id=order_id).order_by("pk").values_list("pk"))
    return list(Payment.objects.select_for_update().filter(order_id=order_id).order_by("pk"))


def lock_refund(refund_id: int) -> Refund:
    try:
        return Refund.objects.select_for_update().get(pk=refund_id)
    except Refund.DoesNotExist as exc:
        raise RefundNotFound("No such refund.") from exc


def lock_payment_and_refund(refund_id: int) -> tuple[Payment, Refund]:
    try:
        payment_id = Refund.objects.values_list("payment_id", flat=True).get(pk=refund_id)
    except Refund.DoesNotExist as exc:
        raise RefundNotFound("No such refund.") from exc
    payment = lock_payment(payment_id)
    return payment, lock_refund(refund_id)


def lock_inbox(inbox_id: int) -> CallbackInbox:
    return CallbackInbox.objects.select_for_update().get(pk=inbox_id)


def order_model() -> type[models.Model]:
    """The model payments belong to (settings.PAYMENTS_ORDER_MODEL); payments never imports its app."""
    return Payment._meta.get_field("order").related_model


def lock_order(order_id: int) -> models.Model:
    return order_model().objects.select_for_update().get(pk=order_id)


# --- history ----------------------------------------------------------------------------------------
def event_record(
    subject: Payment | Refund,
    *,
    kind: str,
    source: str,
    actor=None,
    message: str = "",
    data: dict | None = None,
    inbox: CallbackInbox | None = None,
    from_status: str = "",
    to_status: str = "",
) -> PaymentEvent | RefundEvent:
    """Append one event to a payment's or a refund's history."""
    fields = {
        "kind": kind,
        "source": source,
        "actor": actor,
        "message": message[:512],
        "data": data or {},
        "inbox": inbox,
        "from_status": from_status,
        "to_status": to_status,
    }
    if isinstance(subject, Refund):
        return RefundEvent.objects.create(refund=subject, **fields)
    return PaymentEvent.objects.create(payment=subject, **fields)


# --- transitions ------------------------------------------------------------------------------------
def _check_edge(edges: dict, what: str, from_status: str, to_status: str) -> None:
    if to_status not in edges.get(from_status, frozenset()):
        raise IllegalTransition(f"A {from_status} {what} cannot become {to_status}.")


def payment_transition(
    payment: Payment,
    to_status: str,
    *,
    kind: str,
    source: str,
    actor=None,
    message: str = "",
    data: dict | None = None,
    inbox: CallbackInbox | None = None,
    **fields,
) -> PaymentEvent:
    """Move a locked payment along a legal edge, record it and signal it."""
    from_status = payment.status
    _check_edge(PAYMENT_EDGES, "payment", from_status, to_status)
    now = timezone.now()
    payment.status = to_status
    for name, value in fields.items():
        setattr(payment, name, value)
    if to_status == PaymentStatus.INITIATED:
        payment.initiated_at = now
    elif to_status == PaymentStatus.COMPLETED:
        payment.completed_at = now
    elif to_status == PaymentStatus.FAILED:
        payment.failed_at = now
    if to_status not in (PaymentStatus.PENDING, PaymentStatus.INITIATED):
        payment.next_query_at = None
        payment.query_failing = False
    if to_status in (PaymentStatus.COMPLETED, PaymentStatus.FAILED) and not payment.settled_by:
        payment.settled_by = settled_by_of(kind=kind, source=source)
    payment.save()
    event = event_record(
        payment,
        kind=kind,
        source=source,
        actor=actor,
        message=message,
        data=data,
        inbox=inbox,
        from_status=from_status,
        to_status=to_status,
    )
    payment_status_changed.send(
        sender=Payment,
        payment=payment,
        from_status=from_status,
        to_status=to_status,
        source=source,
        event=event,
    )
    return event


def settled_by_of(*, kind: str, source: str) -> str:
    """What settled an attempt, from the transition that first made it completed or failed."""
    if kind == EventKind.PUSH_REJECTED:
        return SettledBy.PUSH
    return {
        EventSource.CALLBACK: SettledBy.CALLBACK,
        EventSource.QUERY: SettledBy.QUERY,
        EventSource.ADMIN: SettledBy.STAFF,
    }.get(source, SettledBy.SYSTEM)


def payment_created(payment: Payment, *, kind: str, source: str, actor=None, message: str = "", data=None):
    """Record and signal a new attempt (its first status)."""
    event = event_record(
        payment, kind=kind, source=source, actor=actor, message=message, data=data, to_status=payment.status
    )
    payment_status_changed.send(
        sender=Payment, payment=payment, from_status="", to_status=payment.status, source=source, event=event
    )
    return event


def refund_transition(
    refund: Refund,
    to_status: str,
    *,
    kind: str,
    source: str,
    actor=None,
    message: str = "",
    data: dict | None = None,
    inbox: CallbackInbox | None = None,
    **fields,
) -> RefundEvent:
    """Move a locked refund along a legal edge, record it and signal it."""
    from_status = refund.status
    _check_edge(REFUND_EDGES, "refund", from_status, to_status)
    now = timezone.now()
    refund.status = to_status
    if to_status not in (RefundStatus.APPROVED, RefundStatus.SUBMITTED, RefundStatus.UNKNOWN):
        refund.next_check_at = None
    for name, value in fields.items():
        setattr(refund, name, value)
    if to_status == RefundStatus.APPROVED and refund.approved_at is None:
        refund.approved_at = now
    elif to_status == RefundStatus.SUBMITTING:
        refund.submitted_at = now
    elif to_status in REFUND_SETTLED_STATUSES:
        refund.completed_at = now
    refund.save()
    event = event_record(
        refund,
        kind=kind,
        source=source,
        actor=actor,
        message=message,
        data=data,
        inbox=inbox,
        from_status=from_status,
        to_status=to_status,
    )
    refund_status_changed.send(
        sender=Refund, refund=refund, from_status=from_status, to_status=to_status, source=source
    )
    return event


def refund_created(refund: Refund, *, kind: str, source: str, actor=None, message: str = "") -> RefundEvent:
    event = event_record(
        refund, kind=kind, source=source, actor=actor, message=message, to_status=refund.status
    )
    refund_status_changed.send(
        sender=Refund, refund=refund, from_status="", to_status=refund.status, source=source
    )
    return event
