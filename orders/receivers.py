from django.db.models.signals import post_migrate
from django.dispatch import receiver

from common.schedules import ScheduleSpec, schedule_ensure
from orders.services import order_status_follow_payment
from payments.signals import payment_status_changed


@receiver(payment_status_changed, dispatch_uid="orders.follow_payment")
def follow_payment(sender, payment, from_status, to_status, **kwargs):
    order_status_follow_payment(order_id=payment.order_id, from_status=from_status, to_status=to_status)


ORDER_SCHEDULES = (ScheduleSpec("orders-payment-window", "orders.tasks.cancel_unpaid_orders", 5),)


@receiver(post_migrate, dispatch_uid="orders.schedules")
def ensure_order_schedules(sender, using="default", **kwargs):
    """The payment-window sweeper, created or repaired on every migrate (never by hand)."""
    if getattr(sender, "label", None) != "orders":
        return
    for spec in ORDER_SCHEDULES:
        schedule_ensure(spec, using=using)
