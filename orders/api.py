"""Catalogue and order endpoints of the storefront API, accepting the original service's bodies as-is."""

import datetime as dt
from decimal import Decimal
from typing import Literal

from django.shortcuts import get_object_or_404
from ninja import Field, Header, Router, Schema, Status

from orders.models import Order, Product
from orders.services import ItemRequest, Shipping, order_place
from payments.api import NO_NUL_PATTERN, payment_out
from payments.schemas import PaymentOut

router = Router(tags=["orders"])

MAX_ID = 2**63 - 1  # BigAutoField; SQLite raises OverflowError (a 500) looking up a larger one


class ProductOut(Schema):
    id: int
    sku: str
    name: str
    description: str
    price: float
    currency: str


class ItemIn(Schema):
    productId: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(1, ge=1, le=1000)
    price: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)


class ShippingIn(Schema):
    fullName: str = Field(min_length=1, max_length=200, pattern=NO_NUL_PATTERN)
    address: str = Field(min_length=1, max_length=300, pattern=NO_NUL_PATTERN)
    city: str = Field(min_length=1, max_length=100, pattern=NO_NUL_PATTERN)
    postalCode: str = Field("", max_length=20, pattern=NO_NUL_PATTERN)
    phone: str = Field("", max_length=20, pattern=NO_NUL_PATTERN)


class PaymentIn(Schema):
    method: Literal["mpesa", "cod", "card"]
    phone: str | None = Field(None, max_length=30)


class OrderIn(Schema):
    items: list[ItemIn] = Field(min_length=1, max_length=100)
    shipping: ShippingIn
    payment: PaymentIn
    # The customer's contact details for this order (the token is the storefront's, not the customer's).
    # Left out (or null): no email, SMS allowed, English.
    email: str | None = Field(None, max_length=254)
    smsOptOut: bool | None = None
    language: Literal["en", "sw"] | None = None


class OrderItemOut(Schema):
    productId: int
    name: str
    quantity: int
    unitPrice: float
    lineTotal: float


class ShippingOut(Schema):
    fullName: str
    address: str
    city: str
    postalCode: str
    phone: str


class OrderOut(Schema):
    id: int
    reference: str
    status: str
    paymentMethod: str
    total: float
    currency: str
    items: list[OrderItemOut]
    shipping: ShippingOut
    payment: PaymentOut | None
    payments: list[PaymentOut]
    createdAt: dt.datetime
    updatedAt: dt.datetime


class OrderCreatedOut(Schema):
    order: OrderOut
    payment: PaymentOut


def order_out(order: Order) -> dict:
    payments = [payment_out(p) for p in order.payments.select_related("order").order_by("-created_at", "-id")]
    return {
        "id": order.pk,
        "reference": order.reference,
        "status": order.status,
        "paymentMethod": order.payment_method,
        "total": float(order.total),
        "currency": order.currency,
        "items": [
            {
                "productId": item.product_id,
                "name": item.product_name,
                "quantity": item.quantity,
                "unitPrice": float(item.unit_price),
                "lineTotal": float(item.line_total),
            }
            for item in order.items.all()
        ],
        "shipping": {
            "fullName": order.shipping_full_name,
            "address": order.shipping_address,
            "city": order.shipping_city,
            "postalCode": order.shipping_postal_code,
            "phone": order.shipping_phone,
        },
        "payment": payments[0] if payments else None,
        "payments": payments,
        "createdAt": order.created_at,
        "updatedAt": order.updated_at,
    }


@router.get("/products", response=list[ProductOut], auth=None, summary="Public catalogue")
def product_list(request):
    return Product.objects.filter(is_active=True).order_by("id")


@router.post("/orders", response={200: OrderCreatedOut, 201: OrderCreatedOut}, summary="Place an order")
def order_create(
    request,
    body: OrderIn,
    idempotency_key: str = Header("", alias="Idempotency-Key", max_length=100, pattern=NO_NUL_PATTERN),
):
    order, payment, created = order_place(
        owner=request.auth,
        items=[ItemRequest(product_id=i.productId, quantity=i.quantity, price=i.price) for i in body.items],
        shipping=Shipping(
            full_name=body.shipping.fullName,
            address=body.shipping.address,
            city=body.shipping.city,
            postal_code=body.shipping.postalCode,
            phone=body.shipping.phone,
        ),
        payment_method=body.payment.method,
        payment_phone=body.payment.phone or "",
        email=body.email or "",
        idempotency_key=idempotency_key,
        sms_opt_out=bool(body.smsOptOut),
        language=body.language or "en",
    )
    return Status(201 if created else 200, {"order": order_out(order), "payment": payment_out(payment)})


@router.get("/orders/{int:order_id}", response=OrderOut, summary="One order with its payments")
def order_detail(request, order_id: int):
    orders = Order.objects.all() if request.auth.is_staff else Order.objects.filter(owner=request.auth)
    return order_out(get_object_or_404(orders, pk=order_id))
