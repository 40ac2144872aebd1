"""Who may do what, checked by the services themselves (never only by hiding a button in the admin).

`actor=None` is the system itself: a sweeper, a task or a Daraja answer we asked for. Any person or API
token passes an actor, and the service refuses what that actor may not do.
"""

from payments.exceptions import PaymentPermissionDenied


def require_perm(
    actor, perm: str, message: str, *, error: type[PaymentPermissionDenied] = PaymentPermissionDenied
) -> None:
    """Staff-only actions: a signed-in person with the permission, never the system on someone's behalf."""
    if actor is None or not actor.is_active or not actor.has_perm(perm):
        raise error(message)


def require_perm_or_owner(actor, perm: str, payment, message: str) -> None:
    """Actions a storefront may take on its own orders' payments, and staff with the permission on any."""
    if actor is None:
        return
    if actor.is_active and (actor.has_perm(perm) or payment.order.owner_id == actor.pk):
        return
    raise PaymentPermissionDenied(message)
