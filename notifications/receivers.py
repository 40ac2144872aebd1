"""Status-change signals -> outbox rows, inside the sender's transaction.

A notification problem must never undo a payment: each receiver works in a savepoint and logs what went
wrong, so the payment or order change commits even if no message could be queued.
"""

import logging

from django.db import transaction
from django.dispatch import receiver

from notifications import services
from orders.signals import order_status_changed
from payments.signals import payment_status_changed, refund_status_changed

logger = logging.getLogger(__name__)


def _in_savepoint(queue, what: str, **kwargs) -> None:
    try:
        with transaction.atomic():
            queue(**kwargs)
    except Exception:
        logger.exception("Could not queue notifications for %s", what)


@receiver(payment_status_changed, dispatch_uid="notifications.payment_status_changed")
def on_payment_status_changed(sender, payment, from_status, to_status, **kwargs):
    _in_savepoint(
        services.notification_queue_for_payment,
        f"payment #{payment.pk}",
        payment=payment,
        to_status=to_status,
    )


@receiver(order_status_changed, dispatch_uid="notifications.order_status_changed")
def on_order_status_changed(sender, order, from_status, to_status, reason="", **kwargs):
    _in_savepoint(
        services.notification_queue_for_order,
        f"order #{order.pk}",
        order=order,
        to_status=to_status,
        reason=str(reason or ""),
    )


@receiver(refund_status_changed, dispatch_uid="notifications.refund_status_changed")
def on_refund_status_changed(sender, refund, from_status, to_status, **kwargs):
    _in_savepoint(
        services.notification_queue_for_refund,
        f"refund #{getattr(refund, 'pk', '?')}",
        refund=refund,
        to_status=str(to_status),
    )
