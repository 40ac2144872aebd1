"""Placing orders. Prices come from the catalogue; the client's price is checked, never charged."""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record, changes_between, field_values
from common.phone import InvalidPhoneNumber, normalize_msisdn
from orders.exceptions import OrderError
from orders.models import Customer, Language, Order, OrderItem, OrderStatus, Product
from orders.signals import order_status_changed
from payments import services as payment_services
from payments.daraja.client import MAX_MPESA_AMOUNT
from payments.models import OPEN_STATUSES, PAID_STATUSES, EventSource, Payment, PaymentMethod, PaymentStatus
from payments.state import lock_order_payments

MAX_QUANTITY = 1000


@dataclass(frozen=True)
class ItemRequest:
    product_id: int
    quantity: int
    price: Decimal | None = None


@dataclass(frozen=True)
class Shipping:
    full_name: str
    address: str
    city: str
    postal_code: str = ""
    phone: str = ""


@dataclass(frozen=True)
class Contact:
    """Whom an order's messages go to, as given when it was placed."""

    name: str
    phone: str  # 2547XXXXXXXX, or empty
    email: str
    language: str
    sms_opt_out: bool


def _priced_items(items: list[ItemRequest]) -> list[tuple[Product, int, Decimal]]:
    if not items:
        raise OrderError(
            "validation_error", "An order needs at least one item.", fields={"items": "Required."}
        )
    products = Product.objects.in_bulk([item.product_id for item in items])
    priced, problems = [], {}
    for index, item in enumerate(items):
        product = products.get(item.product_id)
        if product is None or not product.is_active:
            problems[f"items[{index}].productId"] = f"No product {item.product_id} in the catalogue."
            continue
        if not 1 <= item.quantity <= MAX_QUANTITY:
            problems[f"items[{index}].quantity"] = f"Quantity must be 1 to {MAX_QUANTITY}."
            continue
        if item.price is not None and Decimal(item.price) != product.price:
            problems[f"items[{index}].price"] = f"The price of {product.name} is {product.price}."
            continue
        priced.append((product, item.quantity, product.price))
    if problems:
        code = "price_mismatch" if all(key.endswith(".price") for key in problems) else "validation_error"
        raise OrderError(code, "Some items cannot be ordered as sent.", fields=problems)
    return priced


def order_place(
    *,
    owner,
    items: list[ItemRequest],
    shipping: Shipping,
    payment_method: str,
    payment_phone: str = "",
    email: str = "",
    idempotency_key: str = "",
    sms_opt_out: bool = False,
    language: str = Language.ENGLISH,
) -> tuple[Order, Payment, bool]:
    """Create the order and its first payment attempt; for M-Pesa, send the STK push after commit.

    `email`, `language` and `sms_opt_out` are the customer's, given with this order: the order keeps them
    (with the shipping name and the phone) as the contact its messages go to. The API user (`owner`) is
    the storefront, never the customer.

    Returns (order, payment, created). With an Idempotency-Key already used by this owner, the original order
    comes back and nothing is charged twice.
    """
    if idempotency_key:
        existing = Order.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, existing.payments.order_by("-created_at", "-id").first(), False
    if payment_method == PaymentMethod.CARD:
        raise OrderError(
            "payment_method_unavailable",
            "Card payments are not available yet. Pay with M-Pesa or cash on delivery.",
            fields={"payment.method": "Card payments are not available yet."},
        )
    if payment_method not in (PaymentMethod.MPESA, PaymentMethod.COD):
        raise OrderError(
            "validation_error", "Unknown payment method.", fields={"payment.method": "Use mpesa or cod."}
        )
    email = (email or "").strip()
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise OrderError(
                "validation_error",
                "The email address is not valid.",
                fields={"email": "Not an email address."},
            ) from exc
    if language not in Language.values:
        raise OrderError("validation_error", "Unknown language.", fields={"language": "Use en or sw."})
    msisdn = ""
    if payment_method == PaymentMethod.MPESA:
        try:
            msisdn = normalize_msisdn(payment_phone or "")
        except InvalidPhoneNumber as exc:
            raise OrderError("invalid_phone", str(exc), fields={"payment.phone": str(exc)}) from exc
    priced = _priced_items(items)
    total = sum((price * quantity for _product, quantity, price in priced), Decimal("0"))
    if payment_method == PaymentMethod.MPESA and total > MAX_MPESA_AMOUNT:
        raise OrderError(
            "amount_out_of_range",
            f"M-Pesa takes at most KES {MAX_MPESA_AMOUNT:,} in one payment.",
            fields={"items": "Order total too large for one M-Pesa payment."},
        )
    contact = Contact(
        name=shipping.full_name,
        phone=msisdn or _msisdn_or_empty(shipping.phone),
        email=email,
        language=language,
        sms_opt_out=bool(sms_opt_out),
    )
    try:
        order, payment = _order_create(
            owner=owner,
            priced=priced,
            total=total,
            shipping=shipping,
            payment_method=payment_method,
            msisdn=msisdn,
            contact=contact,
            idempotency_key=idempotency_key,
        )
    except IntegrityError:
        if not idempotency_key:
            raise
        # The same key raced us: the other request created the order.
        order = Order.objects.get(owner=owner, idempotency_key=idempotency_key)
        return order, order.payments.order_by("-created_at", "-id").first(), False
    if payment.method == PaymentMethod.MPESA:
        payment = payment_services.payment_initiate_stk(
            payment_id=payment.pk, source=EventSource.API, actor=owner
        )
    order.refresh_from_db()
    return order, payment, True


def _msisdn_or_empty(raw: str) -> str:
    """Cash on delivery has no payment phone: the shipping phone is the contact when it is a mobile number."""
    try:
        return normalize_msisdn(raw or "")
    except InvalidPhoneNumber:
        return ""


def _customer_for(*, contact: Contact) -> Customer:
    """The customer with this phone (else this email), created from this order's details when new.

    An existing customer is returned as it is: a shared phone or a typo in one order must not rename,
    re-address or re-language someone else. Two orders creating the same customer at once are settled by
    the unique constraints: get_or_create inserts in a savepoint and, on IntegrityError, reads the winner's row.
    """
    details = {
        "full_name": contact.name,
        "email": contact.email,
        "language": contact.language,
        "sms_opt_out": contact.sms_opt_out,
    }
    if contact.phone:
        customer, _ = Customer.objects.get_or_create(phone=contact.phone, defaults=details)
        return customer
    if contact.email:
        known = Customer.objects.filter(email__iexact=contact.email).order_by("pk").first()
        if known is not None:
            return known
        customer, _ = Customer.objects.get_or_create(phone="", email__iexact=contact.email, defaults=details)
        return customer
    # Nothing to recognise the customer by: a customer of this one order.
    return Customer.objects.create(**details)


@transaction.atomic
def _order_create(
    *,
    owner,
    priced: list[tuple[Product, int, Decimal]],
    total: Decimal,
    shipping: Shipping,
    payment_method: str,
    msisdn: str,
    contact: Contact,
    idempotency_key: str,
) -> tuple[Order, Payment]:
    customer = _customer_for(contact=contact)
    due = None
    if payment_method == PaymentMethod.MPESA:
        due = timezone.now() + dt.timedelta(hours=settings.ORDER_PAYMENT_WINDOW_HOURS)
    order = Order.objects.create(
        owner=owner,
        customer=customer,
        payment_method=payment_method,
        total=total,
        shipping_full_name=shipping.full_name,
        shipping_address=shipping.address,
        shipping_city=shipping.city,
        shipping_postal_code=shipping.postal_code,
        shipping_phone=shipping.phone,
        contact_name=contact.name,
        contact_phone=contact.phone,
        contact_email=contact.email,
        contact_language=contact.language,
        contact_sms_opt_out=contact.sms_opt_out,
        payment_due_at=due,
        idempotency_key=idempotency_key,
    )
    OrderItem.objects.bulk_create(
        OrderItem(
            order=order,
            product=product,
            product_name=product.name,
            quantity=quantity,
            unit_price=price,
            line_total=price * quantity,
        )
        for product, quantity, price in priced
    )
    payment = payment_services.payment_create(
        order=order, method=payment_method, amount=total, phone=msisdn, source=EventSource.API, actor=owner
    )
    return order, payment


def order_status_follow_payment(*, order_id: int, from_status: str, to_status: str) -> None:
    """Runs inside the payment's transaction (the payment is locked first, then the order).

    A paid attempt (or accepted cash on delivery) confirms the order. Cash on delivery that was not
    collected stops counting as accepted: the order is payable again for a new payment window.
    """
    if to_status in ("completed", "pending_delivery"):
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status != OrderStatus.PENDING:
            return
        order.status = OrderStatus.CONFIRMED
        order.confirmed_at = timezone.now()
        order.save(update_fields=["status", "confirmed_at", "updated_at"])
        order_status_changed.send(
            sender=Order,
            order=order,
            from_status=OrderStatus.PENDING,
            to_status=OrderStatus.CONFIRMED,
            reason=to_status,
        )
    elif from_status == "pending_delivery" and to_status == "failed":
        order = Order.objects.select_for_update().get(pk=order_id)
        accepted = Payment.objects.filter(
            order_id=order_id, status__in=(*PAID_STATUSES, PaymentStatus.PENDING_DELIVERY)
        ).exists()
        if order.status != OrderStatus.CONFIRMED or accepted:
            return
        order.status = OrderStatus.PENDING
        order.confirmed_at = None
        order.payment_due_at = timezone.now() + dt.timedelta(hours=settings.ORDER_PAYMENT_WINDOW_HOURS)
        order.save(update_fields=["status", "confirmed_at", "payment_due_at", "updated_at"])
        order_status_changed.send(
            sender=Order,
            order=order,
            from_status=OrderStatus.CONFIRMED,
            to_status=OrderStatus.PENDING,
            reason=COD_NOT_COLLECTED,
        )


COD_NOT_COLLECTED = "cod_not_collected"
CANCELLED_BY_STAFF = "cancelled_by_staff"
ORDER_AUDIT_FIELDS = ("status", "cancelled_at", "cancel_reason")


@transaction.atomic
def order_cancel(*, order_id: int, actor, reason: str) -> Order:
    """Staff cancel an order nobody paid for (nothing paid, nothing in flight, nothing under review)."""
    if actor is None or not actor.is_active or not actor.has_perm("orders.cancel_order"):
        raise OrderError("forbidden", "You are not allowed to cancel orders.", http_status=403)
    reason = " ".join((reason or "").split())
    if not reason:
        raise OrderError(
            "validation_error", "Say why the order is cancelled.", fields={"reason": "Required."}
        )
    # The lock order everywhere: the attempts first, then the order.
    attempts = lock_order_payments(order_id)
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.status == OrderStatus.CANCELLED:
        raise OrderError("illegal_transition", "The order is already cancelled.", http_status=409)
    blocking = [p for p in attempts if p.status in PAYMENT_WINDOW_BLOCKERS]
    if blocking:
        raise OrderError(
            "illegal_transition",
            f"Payment #{blocking[0].pk} is {blocking[0].get_status_display().lower()}: settle it first "
            "(refund, resolve the review, or record cash as not collected).",
            http_status=409,
        )
    from_status = order.status
    before = field_values(order, ORDER_AUDIT_FIELDS)
    order.status = OrderStatus.CANCELLED
    order.cancelled_at = timezone.now()
    order.cancel_reason = f"Cancelled by {actor.get_username()}: {reason}"[:200]
    order.save(update_fields=["status", "cancelled_at", "cancel_reason", "updated_at"])
    audit_record(
        action=AuditAction.ORDER_CANCELLED,
        actor=actor,
        obj=order,
        changes=changes_between(before, field_values(order, ORDER_AUDIT_FIELDS)),
        reason=reason,
    )
    order_status_changed.send(
        sender=Order,
        order=order,
        from_status=from_status,
        to_status=OrderStatus.CANCELLED,
        reason=CANCELLED_BY_STAFF,
    )
    return order


# Attempts that keep an order open past its payment window: money may still arrive, or a person decides.
PAYMENT_WINDOW_BLOCKERS = (
    *OPEN_STATUSES,
    PaymentStatus.NEEDS_REVIEW,
    PaymentStatus.PENDING_DELIVERY,
    *PAID_STATUSES,
)
PAYMENT_WINDOW_CLOSED = "payment_window_closed"


def order_cancel_unpaid(*, now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Cancel pending orders whose payment window (payment_due_at) closed without a completed payment."""
    now = now or timezone.now()
    candidates = (
        Order.objects.filter(status=OrderStatus.PENDING, payment_due_at__lte=now)
        .exclude(payments__status__in=PAYMENT_WINDOW_BLOCKERS)
        .order_by("payment_due_at")
        .values_list("pk", flat=True)[:limit]
    )
    return [order_id for order_id in list(candidates) if order_cancel_if_unpaid(order_id=order_id, now=now)]


@transaction.atomic
def order_cancel_if_unpaid(*, order_id: int, now: dt.datetime | None = None) -> bool:
    now = now or timezone.now()
    # Attempts first, then the order: the same lock order as a callback (payment, then its order) and a
    # retry, so none of them can deadlock with this. A racing retry either commits first (and we see it in
    # flight) or finds the order cancelled once it gets the locks.
    lock_order_payments(order_id)
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.status != OrderStatus.PENDING or order.payment_due_at is None or order.payment_due_at > now:
        return False
    # Read the attempts again now that we hold the order: on PostgreSQL the locking statement above only
    # sees rows committed when it started, not an attempt a retry committed while we waited for it.
    statuses = set(Payment.objects.filter(order_id=order_id).values_list("status", flat=True))
    if statuses & set(PAYMENT_WINDOW_BLOCKERS):
        return False
    order.status = OrderStatus.CANCELLED
    order.cancelled_at = now
    order.cancel_reason = "The payment window closed without a completed payment."
    order.save(update_fields=["status", "cancelled_at", "cancel_reason", "updated_at"])
    order_status_changed.send(
        sender=Order,
        order=order,
        from_status=OrderStatus.PENDING,
        to_status=OrderStatus.CANCELLED,
        reason=PAYMENT_WINDOW_CLOSED,
    )
    return True
