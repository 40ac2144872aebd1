from django.dispatch import Signal

# Sent inside the transaction that changed the order. kwargs: order, from_status, to_status, reason
order_status_changed = Signal()
