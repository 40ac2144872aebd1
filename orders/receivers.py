from django.dispatch import receiver

from orders.services import order_status_follow_payment
from payments.signals import payment_status_changed


@receiver(payment_status_changed, dispatch_uid="orders.follow_payment")
def follow_payment(sender, payment, from_status, to_status, **kwargs):
    order_status_follow_payment(order_id=payment.order_id, to_status=to_status)
