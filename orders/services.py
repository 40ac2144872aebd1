"""Placing orders. Prices come from the catalogue; the client's price is checked, never charged."""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.exceptions import OrderError
from orders.models import Customer, Order, OrderItem, OrderStatus, Product
from orders.signals import order_status_changed
from payments import services as payment_services
from payments.daraja.client import MAX_MPESA_AMOUNT
from payments.daraja.phone import InvalidPhoneNumber, normalize_msisdn
from payments.models import OPEN_STATUSES, PAID_STATUSES, EventSource, Payment, PaymentMethod, PaymentStatus

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
    sms_opt_out: bool | None = None,
    language: str | None = None,
) -> tuple[Order, Payment, bool]:
    """Create the order and its first payment attempt; for M-Pesa, send the STK push after commit.

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
    try:
        order, payment = _order_create(
            owner=owner,
            priced=priced,
            total=total,
            shipping=shipping,
            payment_method=payment_method,
            msisdn=msisdn,
            email=email,
            idempotency_key=idempotency_key,
            sms_opt_out=sms_opt_out,
            language=language,
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


@transaction.atomic
def _order_create(
    *,
    owner,
    priced,
    total,
    shipping: Shipping,
    payment_method,
    msisdn,
    email,
    idempotency_key,
    sms_opt_out=None,
    language=None,
):
    customer, _ = Customer.objects.get_or_create(user=owner, defaults={"full_name": shipping.full_name})
    changed = []
    if email and customer.email != email:
        customer.email, changed = email, [*changed, "email"]
    if not customer.email and owner.email:
        customer.email, changed = owner.email, [*changed, "email"]
    if msisdn and customer.phone != msisdn:
        customer.phone, changed = msisdn, [*changed, "phone"]
    if sms_opt_out is not None and customer.sms_opt_out != sms_opt_out:
        customer.sms_opt_out, changed = sms_opt_out, [*changed, "sms_opt_out"]
    if language and customer.language != language:
        customer.language, changed = language, [*changed, "language"]
    if changed:
        customer.save(update_fields=changed)
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


def order_status_follow_payment(*, order_id: int, to_status: str) -> None:
    """Runs inside the payment's transaction: a paid attempt (or accepted COD) confirms the order."""
    if to_status not in ("completed", "pending_delivery"):
        return
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
    list(Payment.objects.select_for_update().filter(order_id=order_id).values_list("pk", flat=True))
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
