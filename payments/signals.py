"""How the rest of the system learns about payments without payments importing it.

Sent inside the payment's transaction (receivers run in it, so an order update or an outbox row commits or
rolls back with the status change).
"""

from django.dispatch import Signal

# kwargs: payment, from_status, to_status, source, event
payment_status_changed = Signal()

# kwargs: refund, from_status, to_status, source
refund_status_changed = Signal()
