"""django-q2 entry points of the orders app: module-level, JSON-able arguments and results."""

from orders.services import order_cancel_unpaid


def cancel_unpaid_orders() -> dict:
    return {"cancelled": order_cancel_unpaid()}
