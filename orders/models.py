"""Catalogue, customers and orders. Prices always come from the catalogue, never from the client."""

import secrets
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

# Unambiguous characters for order references that customers read out over the phone.
_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_order_reference() -> str:
    return "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8))


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    price = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3, default="KES")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(price__gt=0), name="product_price_positive")]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class Language(models.TextChoices):
    ENGLISH = "en", "English"
    SWAHILI = "sw", "Kiswahili"


class Customer(models.Model):
    """A person we have sold to, recognised by phone number (or by email when an order gave no phone).

    Created from the first order with those details and edited by staff afterwards: later orders link to
    it and never change it. Messages about an order use the order's own contact snapshot, not this row.
    """

    full_name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=12, blank=True, help_text="2547XXXXXXXX")
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    sms_opt_out = models.BooleanField(
        default=False,
        help_text="Customer asked not to receive SMS. Messages about an order follow the choice made with "
        "that order.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        # Everywhere else a phone number is shown masked (lists, pages, exports, logs).
        permissions = [("view_full_phone", "Can see customers' full phone numbers")]
        constraints = [
            models.UniqueConstraint(fields=["phone"], condition=~Q(phone=""), name="customer_phone_unique"),
            models.UniqueConstraint(
                Lower("email"),
                condition=Q(phone="") & ~Q(email=""),
                name="customer_email_unique_without_phone",
            ),
        ]

    def __str__(self) -> str:
        return self.full_name


class OrderStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    CONFIRMED = "CONFIRMED", "Confirmed"
    CANCELLED = "CANCELLED", "Cancelled"


class Order(models.Model):
    reference = models.CharField(max_length=12, unique=True, default=new_order_reference, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="orders",
        help_text="The API user that placed the order; it alone (and staff) can see it.",
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING, db_index=True
    )
    payment_method = models.CharField(max_length=16)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="KES")
    shipping_full_name = models.CharField(max_length=200)
    shipping_address = models.CharField(max_length=300)
    shipping_city = models.CharField(max_length=100)
    shipping_postal_code = models.CharField(max_length=20, blank=True)
    shipping_phone = models.CharField(max_length=20, blank=True)
    # Whom this order's messages go to, as given when it was placed. One storefront token places every
    # customer's orders, so neither the API user nor the shared Customer row can stand in for this person.
    contact_name = models.CharField(max_length=200, blank=True)
    contact_phone = models.CharField(
        max_length=12,
        blank=True,
        help_text="2547XXXXXXXX: the M-Pesa number, or the shipping phone for cash on delivery.",
    )
    contact_email = models.EmailField(blank=True)
    contact_language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    contact_sms_opt_out = models.BooleanField(
        default=False, help_text="The customer asked for no SMS about this order."
    )
    payment_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(
        max_length=100, blank=True, help_text="Idempotency-Key header of the request that placed the order."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(total__gt=0), name="order_total_positive"),
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="order_idempotency_key_per_owner",
            ),
        ]
        permissions = [("cancel_order", "Can cancel an order nobody paid for")]

    def __str__(self) -> str:
        return f"Order {self.reference}"


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    product_name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    line_total = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_item_quantity_positive")
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_name}"
