"""A small world for export tests: orders, payments, refunds and notifications built directly, and staff
with exactly the permissions a test names."""

import csv
import io
import itertools
from decimal import Decimal

from django.contrib.auth.models import Permission
from django.urls import reverse

from notifications.models import Notification
from orders.models import Customer, Order, OrderStatus
from payments.models import Payment, Refund, RefundMethod, RefundStatus
from tests.admin_support import dialog_post

PHONE = "254711000001"
OTHER_PHONE = "254722000002"
VIEW_LISTS = ["view_payment", "view_refund", "view_order", "view_notification"]
LISTS = {
    "payments": "admin:payments_payment",
    "refunds": "admin:payments_refund",
    "orders": "admin:orders_order",
    "notifications": "admin:notifications_notification",
}
_numbers = itertools.count(1)


def staff(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, f"{username}@example.com", "x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return django_user_model.objects.get(pk=user.pk)  # no cached permissions


def order(
    owner, *, name="Amina Odhiambo", phone=PHONE, email="amina@example.com", status=OrderStatus.PENDING
):
    customer, _ = Customer.objects.get_or_create(phone=phone, defaults={"full_name": name, "email": email})
    return Order.objects.create(
        owner=owner,
        customer=customer,
        status=status,
        payment_method="mpesa",
        total=Decimal("450.00"),
        contact_name=name,
        contact_phone=phone,
        contact_email=email,
        shipping_full_name=name,
        shipping_address="1 Moi Avenue",
        shipping_city="Nairobi",
    )


def payment(for_order, *, status="failed", phone=PHONE, amount="450.00", result_desc="", refunded="0"):
    number = next(_numbers)
    paid = status in ("completed", "partially_refunded", "refunded")
    return Payment.objects.create(
        order=for_order,
        method="mpesa",
        status=status,
        amount=Decimal(amount),
        phone=phone,
        checkout_request_id=f"ws_CO_EXPORT{number:08d}",
        mpesa_receipt_number=f"SEX{number:07d}" if paid else None,
        paid_amount=Decimal(amount) if paid else None,
        result_code="0" if paid else "1032",
        result_desc=result_desc or ("Processed" if paid else "Request cancelled by user"),
        failure_class="" if paid else "customer",
        refunded_amount=Decimal(refunded),
    )


def refund(for_payment, *, status=RefundStatus.SUCCEEDED, amount="450.00"):
    number = next(_numbers)
    return Refund.objects.create(
        payment=for_payment,
        status=status,
        method=RefundMethod.REVERSAL,
        amount=Decimal(amount),
        reason="Damaged",
        idempotency_key=f"export-refund-{number}",
        original_receipt=for_payment.mpesa_receipt_number or "",
        transaction_id=f"SRX{number:07d}" if status == RefundStatus.SUCCEEDED else "",
    )


def notification(for_order, *, channel="sms", recipient=PHONE, status="sent"):
    number = next(_numbers)
    return Notification.objects.create(
        dedupe_key=f"export-test:{number}",
        event="payment_failed",
        channel=channel,
        recipient=recipient,
        body="Your payment did not go through.",
        status=status,
        order=for_order,
    )


def export_url(list_name: str) -> str:
    return reverse(f"{LISTS[list_name]}_export_list")


def changelist_url(list_name: str) -> str:
    return reverse(f"{LISTS[list_name]}_changelist")


def post_export(client, list_name: str, query: str, fmt: str = "csv"):
    """The dialog's form as the browser posts it (not through HTMX: the answer may be the file)."""
    return client.post(export_url(list_name), {"format": fmt, "query": query})


def htmx_post_export(client, list_name: str, query: str, fmt: str = "csv"):
    return dialog_post(client, export_url(list_name), format=fmt, query=query)


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def csv_rows(response) -> list[list[str]]:
    text = body(response).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))
