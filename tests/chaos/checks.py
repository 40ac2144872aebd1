"""What the chaos runs assert on the database afterwards (through the `chaos` alias)."""

from __future__ import annotations

import re
from collections import Counter

from django.db.models import Count, Q

from tests.chaos.stack import ALIAS


def payments(ids):
    from payments.models import Payment

    return Payment.objects.using(ALIAS).filter(pk__in=list(ids))


def payment_by_order(order_id: int):
    from payments.models import Payment

    return Payment.objects.using(ALIAS).filter(order_id=order_id).order_by("-pk").first()


def results_applied(payment_ids) -> dict[int, int]:
    """Results that moved each payment (result_applied events with a new status): exactly one for every
    settled attempt, whatever happened. A callback that only brings the receipt of an attempt an STK Query
    already completed is a result_applied event too, without a new status: it is not counted."""
    from payments.models import EventKind

    applied = Q(events__kind=EventKind.RESULT_APPLIED) & ~Q(events__to_status="")
    annotated = payments(payment_ids).annotate(applied=Count("events", filter=applied))
    return {payment.pk: payment.applied for payment in annotated}


def event_kinds(payment_id: int) -> list[str]:
    from payments.models import PaymentEvent

    return list(
        PaymentEvent.objects.using(ALIAS)
        .filter(payment_id=payment_id)
        .order_by("pk")
        .values_list("kind", flat=True)
    )


def history(payment_ids) -> dict[int, list[tuple]]:
    """Each payment's events (kind, source, new status, inbox row, message), for a failure message."""
    from payments.models import PaymentEvent

    events = PaymentEvent.objects.using(ALIAS).filter(payment_id__in=list(payment_ids)).order_by("pk")
    found: dict[int, list[tuple]] = {}
    for event in events:
        found.setdefault(event.payment_id, []).append(
            (event.kind, event.source, event.to_status, event.inbox_id, event.message[:80])
        )
    return found


def applied_more_than_once(payment_ids) -> dict[int, list[tuple]]:
    counts = results_applied(payment_ids)
    return history(pk for pk, applied in counts.items() if applied > 1)


def inbox_statuses(payment_ids=None) -> Counter:
    from payments.models import CallbackInbox

    rows = CallbackInbox.objects.using(ALIAS)
    if payment_ids is not None:
        rows = rows.filter(payment_id__in=list(payment_ids))
    return Counter(rows.values_list("status", flat=True))


def unsettled_inbox_rows(*, since=None) -> list[tuple[int, str, int]]:
    """Rows no one applied (received since `since`): received (a dead worker's), failed, unmatched."""
    from payments.models import CallbackInbox, InboxStatus

    rows = CallbackInbox.objects.using(ALIAS).filter(
        status__in=(InboxStatus.RECEIVED, InboxStatus.FAILED, InboxStatus.UNMATCHED)
    )
    if since is not None:
        rows = rows.filter(received_at__gte=since)
    return list(rows.values_list("pk", "status", "attempts"))


def open_payments() -> list[tuple[int, str]]:
    from payments.models import Payment, PaymentStatus

    return list(
        Payment.objects.using(ALIAS)
        .filter(status__in=(PaymentStatus.PENDING, PaymentStatus.INITIATED))
        .values_list("pk", "status")
    )


def abandoned_pushes() -> list[int]:
    """Attempts the status sweeper failed because their push never got an answer recorded."""
    from payments.models import EventKind, EventSource, PaymentEvent

    return list(
        PaymentEvent.objects.using(ALIAS)
        .filter(kind=EventKind.PUSH_UNKNOWN, source=EventSource.SYSTEM)
        .values_list("payment_id", flat=True)
    )


def half_applied_orders() -> list[tuple[int, str, list[str]]]:
    """Orders whose status does not follow from their payments: confirmed without a paid attempt, or a paid
    attempt on an order that is not confirmed."""
    from orders.models import Order, OrderStatus
    from payments.models import PAID_STATUSES

    wrong = []
    for order in Order.objects.using(ALIAS).prefetch_related("payments"):
        statuses = [payment.status for payment in order.payments.all()]
        paid = any(status in PAID_STATUSES for status in statuses)
        if paid != (order.status == OrderStatus.CONFIRMED):
            wrong.append((order.pk, order.status, statuses))
    return wrong


def notifications_not_sent(*, since=None) -> list[tuple[int, str, str]]:
    """Notifications (created since `since`) not sent (yet)."""
    from notifications.models import Notification, NotificationStatus

    rows = Notification.objects.using(ALIAS).exclude(
        status__in=(NotificationStatus.SENT, NotificationStatus.DELIVERED)
    )
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return list(rows.values_list("pk", "event", "status"))


def notification(pk: int):
    from notifications.models import Notification

    return Notification.objects.using(ALIAS).get(pk=pk)


def inbox_rows_about(correlation_id: str) -> list[tuple[int, str, int]]:
    """Stored requests carrying this CheckoutRequestID (or Daraja request id): pk, status, attempts."""
    from payments.models import CallbackInbox

    return list(
        CallbackInbox.objects.using(ALIAS)
        .filter(correlation_id=correlation_id)
        .values_list("pk", "status", "attempts")
    )


LOCAL_SMS_RECORD = re.compile(r"SMS \(local backend, not sent\) to \S+ \[(local-[0-9a-f]+)\]")


def local_sms_records(log: str) -> Counter:
    """Message ids the local SMS backend recorded, as many times as it recorded each: the provider's view."""
    return Counter(LOCAL_SMS_RECORD.findall(log))


def sms_provider_ids(*, sent_since=None) -> dict[int, str]:
    """Provider message id of every SMS notification (sent at or after `sent_since`)."""
    from notifications.models import Channel, Notification

    rows = Notification.objects.using(ALIAS).filter(channel=Channel.SMS)
    if sent_since is not None:
        rows = rows.filter(sent_at__gte=sent_since)
    return dict(rows.values_list("pk", "provider_message_id"))
