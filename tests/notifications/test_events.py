"""Which status changes notify whom: one message per event and channel, in the transaction of the change."""

import datetime as dt
import logging
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import transaction

from notifications.models import (
    MessageTemplate,
    Notification,
    NotificationEvent,
    NotificationRule,
    NotificationStatus,
)
from notifications.segments import count_segments
from orders.models import Customer, Order, OrderStatus
from orders.services import order_cancel_if_unpaid
from payments.models import PaymentStatus
from payments.signals import refund_status_changed
from tests.conftest import SUCCESS_PHONE, order_body
from tests.notifications.conftest import messages_for, sends


def test_accepted_push_tells_the_customer_to_enter_the_pin(initiated):
    sms = messages_for(NotificationEvent.PAYMENT_INITIATED, "sms").get()
    email = messages_for(NotificationEvent.PAYMENT_INITIATED, "email").get()

    assert sms.recipient == SUCCESS_PHONE
    assert "Check your phone and enter your M-Pesa PIN" in sms.body
    assert "KES 10" in sms.body and initiated.order.reference in sms.body
    assert sms.status == NotificationStatus.SENT and sms.provider == "local"
    assert sms.provider_message_id.startswith("local-")
    assert email.recipient == "amina@example.com"
    assert email.subject == f"Complete your payment for order {initiated.order.reference}"
    assert email.payment == initiated and email.order == initiated.order


def test_completed_payment_sends_receipt_amount_and_reference_once_per_channel(initiated, callback):
    callback(amount=10.0, receipt="NLJ7RT61SV")

    sms = messages_for(NotificationEvent.PAYMENT_COMPLETED, "sms").get()
    email = messages_for(NotificationEvent.PAYMENT_COMPLETED, "email").get()
    assert sms.body == (
        f"Duka Bora: Payment of KES 10 received for order {initiated.order.reference}. "
        "M-Pesa receipt NLJ7RT61SV. Thank you!"
    )
    assert "M-Pesa receipt: NLJ7RT61SV" in email.body
    assert "NLJ7RT61SV" in email.html_body and "<html" in email.html_body
    assert sms.dedupe_key == f"payment_completed:payment-{initiated.pk}:sms"
    assert sends(sms) == 1 and sends(email) == 1


def test_duplicate_callback_sends_no_second_sms(initiated, callback):
    callback(amount=10.0, receipt="NLJ7RT61SV")
    callback(amount=10.0, receipt="NLJ7RT61SV")
    callback(amount=10.0, receipt="NLJ7RT61SV")

    sms = messages_for(NotificationEvent.PAYMENT_COMPLETED, "sms").get()
    assert sends(sms) == 1
    assert Notification.objects.filter(event=NotificationEvent.PAYMENT_COMPLETED).count() == 2


def test_failed_payment_explains_why_in_plain_words_and_how_to_retry(initiated, callback):
    callback(result_code=1032)

    sms = messages_for(NotificationEvent.PAYMENT_FAILED, "sms").get()
    assert "did not go through" in sms.body
    assert "The payment was cancelled on the phone." in sms.body
    assert "You can try again: open your order and choose Pay with M-Pesa." in sms.body
    assert sms.status == NotificationStatus.SENT


def test_failure_that_cannot_be_retried_says_whom_to_contact(initiated, callback):
    callback(result_code=8006)

    sms = messages_for(NotificationEvent.PAYMENT_FAILED, "sms").get()
    assert "PIN is locked" in sms.body and "Please contact us" in sms.body


def test_rolled_back_status_change_sends_nothing(initiated, callback):
    with pytest.raises(RuntimeError), transaction.atomic():
        callback(amount=10.0, receipt="NLJ7RT61SV")
        raise RuntimeError("the callback transaction failed after the change")

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.INITIATED
    assert not messages_for(NotificationEvent.PAYMENT_COMPLETED).exists()


def test_cash_on_delivery_confirmation(contact, place_order, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        order, _payment = place_order(method="cod", **contact)

    assert order.status == OrderStatus.CONFIRMED
    sms = messages_for(NotificationEvent.ORDER_CONFIRMED, "sms").get()
    assert sms.body == (
        f"Duka Bora: Order {order.reference} is confirmed. Please pay KES 10 in cash on delivery."
    )
    assert sms.recipient == SUCCESS_PHONE and sms.order == order
    assert messages_for(NotificationEvent.ORDER_CONFIRMED, "email").get().status == NotificationStatus.SENT
    assert not messages_for(NotificationEvent.PAYMENT_INITIATED).exists()


def test_order_cancelled_when_the_payment_window_closes(
    initiated, callback, django_capture_on_commit_callbacks
):
    callback(result_code=1032)
    order = initiated.order
    later = order.payment_due_at + dt.timedelta(minutes=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert order_cancel_if_unpaid(order_id=order.pk, now=later)
        assert not order_cancel_if_unpaid(order_id=order.pk, now=later)

    sms = messages_for(NotificationEvent.ORDER_CANCELLED, "sms").get()
    assert sms.body == (
        f"Duka Bora: Order {order.reference} has been cancelled. The time to pay ran out before a "
        "payment was completed. If you still want it, please place a new order."
    )
    assert messages_for(NotificationEvent.ORDER_CANCELLED).count() == 2


def _refund(payment, *, status: str, **extra):
    """A stand-in with the attributes the receivers rely on (refund.payment, .amount, .status, .pk)."""
    return SimpleNamespace(pk=77, payment=payment, amount=Decimal("10.00"), status=status, **extra)


def test_refund_succeeded_tells_the_customer(initiated, callback, django_capture_on_commit_callbacks):
    callback(amount=10.0, receipt="NLJ7RT61SV")
    refund = _refund(initiated, status="succeeded", reason="Item out of stock")

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        refund_status_changed.send(
            sender=object, refund=refund, from_status="submitted", to_status="succeeded", source="callback"
        )
        refund_status_changed.send(
            sender=object, refund=refund, from_status="submitted", to_status="succeeded", source="query"
        )

    sms = messages_for(NotificationEvent.REFUND_SUCCEEDED, "sms").get()
    assert sms.body == (
        f"Duka Bora: We have refunded KES 10 for order {initiated.order.reference} to your M-Pesa."
    )
    assert sms.refund_id == 77 and sends(sms) == 1
    assert messages_for(NotificationEvent.REFUND_SUCCEEDED, "email").count() == 1


def test_refund_failed_emails_staff_and_not_the_customer(
    initiated, callback, django_capture_on_commit_callbacks, mailoutbox
):
    callback(amount=10.0, receipt="NLJ7RT61SV")
    mailoutbox.clear()
    refund = _refund(initiated, status="failed", result_code="R000002", result_desc="Insufficient float")

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        refund_status_changed.send(
            sender=object, refund=refund, from_status="submitted", to_status="failed", source="callback"
        )

    staff = messages_for(NotificationEvent.REFUND_FAILED).get()
    assert staff.channel == "email" and staff.recipient == "finance@duka.example"
    assert staff.subject == f"Refund #77 failed (order {initiated.order.reference})"
    assert "M-Pesa said: Insufficient float" in staff.body
    assert f"/admin/payments/payment/{initiated.pk}/change/" in staff.body
    assert [m.to for m in mailoutbox] == [["finance@duka.example"]]


@pytest.mark.parametrize("contact", [{"email": "amina@example.com", "sms_opt_out": True}])
def test_sms_opt_out_keeps_the_email(initiated, callback):
    callback(amount=10.0, receipt="NLJ7RT61SV")

    assert not messages_for(NotificationEvent.PAYMENT_COMPLETED, "sms").exists()
    assert messages_for(NotificationEvent.PAYMENT_COMPLETED, "email").exists()


@pytest.mark.parametrize("contact", [{"email": ""}])
def test_no_email_address_means_sms_only(initiated, callback):
    callback(amount=10.0, receipt="NLJ7RT61SV")

    assert list(messages_for(NotificationEvent.PAYMENT_COMPLETED).values_list("channel", flat=True)) == [
        "sms"
    ]


def test_a_channel_switched_off_in_the_rules_sends_nothing(initiated, callback):
    NotificationRule.objects.filter(event=NotificationEvent.PAYMENT_COMPLETED, channel="email").update(
        enabled=False
    )
    callback(amount=10.0, receipt="NLJ7RT61SV")

    assert list(messages_for(NotificationEvent.PAYMENT_COMPLETED).values_list("channel", flat=True)) == [
        "sms"
    ]


@pytest.mark.parametrize("contact", [{"email": "amina@example.com", "language": "sw"}])
def test_swahili_customer_gets_swahili_messages(initiated, callback):
    callback(result_code=1032)

    sms = messages_for(NotificationEvent.PAYMENT_FAILED, "sms").get()
    assert sms.language == "sw"
    assert sms.body == (
        f"Duka Bora: Malipo yako ya KES 10 kwa oda {initiated.order.reference} hayakufanikiwa. "
        "Malipo yalighairiwa kwenye simu. Unaweza kujaribu tena: fungua oda yako na uchague Lipa kwa M-Pesa."
    )
    assert messages_for(NotificationEvent.PAYMENT_FAILED, "email").get().subject.startswith("Malipo ya oda")


def test_a_notification_problem_never_blocks_the_payment(initiated, callback, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("template store unavailable")

    monkeypatch.setattr("notifications.services.template_for", broken)
    payment = callback(amount=10.0, receipt="NLJ7RT61SV")

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.order.status == OrderStatus.CONFIRMED
    assert not messages_for(NotificationEvent.PAYMENT_COMPLETED).exists()
    assert "Could not queue notifications for payment" in caplog.text


def test_order_api_takes_sms_opt_out_and_language(
    fake_daraja, products, api_client, django_capture_on_commit_callbacks
):
    body = {
        **order_body(product_id=products[0].pk),
        "email": "amina@example.com",
        "smsOptOut": True,
        "language": "sw",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post_json("/api/v1/orders", body)

    assert response.status_code == 201, response.content
    order = Order.objects.get(reference=response.json()["order"]["reference"])
    assert (order.contact_email, order.contact_language, order.contact_sms_opt_out) == (
        "amina@example.com",
        "sw",
        True,
    )
    assert list(messages_for(NotificationEvent.PAYMENT_INITIATED).values_list("channel", "language")) == [
        ("email", "sw")
    ]


def test_two_orders_from_one_token_each_message_their_own_contact(
    fake_daraja, products, api_client, django_capture_on_commit_callbacks
):
    """One storefront token places every customer's orders: each order's messages go to its own contact."""
    amina = {**order_body(product_id=products[0].pk), "email": "amina@example.com", "language": "sw"}
    brian = {
        **order_body(product_id=products[0].pk),
        "email": "brian@example.com",
        "language": "en",
        "smsOptOut": True,
    }
    brian["shipping"] = {**brian["shipping"], "fullName": "Brian Otieno"}
    with django_capture_on_commit_callbacks(execute=True):
        first = api_client.post_json("/api/v1/orders", amina).json()["order"]["reference"]
        second = api_client.post_json("/api/v1/orders", brian).json()["order"]["reference"]

    sent = {
        (n.order.reference, n.channel): (n.recipient, n.language)
        for n in Notification.objects.filter(event=NotificationEvent.PAYMENT_INITIATED).select_related(
            "order"
        )
    }
    assert sent == {
        (first, "sms"): (SUCCESS_PHONE, "sw"),
        (first, "email"): ("amina@example.com", "sw"),
        (second, "email"): ("brian@example.com", "en"),
    }
    # The same phone paid both: one customer row, still as the first order created it.
    customer = Customer.objects.get(phone=SUCCESS_PHONE)
    assert (customer.email, customer.language, customer.sms_opt_out) == ("amina@example.com", "sw", False)
    assert Order.objects.filter(customer=customer).count() == 2


def test_a_later_order_never_rewrites_the_customer_row(fake_daraja, products, api_client):
    Customer.objects.create(
        full_name="Amina Wanjiru", phone=SUCCESS_PHONE, email="amina@example.com", language="sw"
    )

    body = {**order_body(product_id=products[0].pk), "email": "someone.else@example.com", "smsOptOut": True}
    response = api_client.post_json("/api/v1/orders", body)

    assert response.status_code == 201, response.content
    customer = Customer.objects.get(phone=SUCCESS_PHONE)
    assert (customer.full_name, customer.email, customer.language, customer.sms_opt_out) == (
        "Amina Wanjiru",
        "amina@example.com",
        "sw",
        False,
    )
    order = Order.objects.get(reference=response.json()["order"]["reference"])
    assert order.customer == customer and order.contact_email == "someone.else@example.com"


def test_local_backend_logs_the_sms_without_its_text_and_with_the_phone_masked(initiated, callback, caplog):
    MessageTemplate.objects.filter(event=NotificationEvent.PAYMENT_COMPLETED, channel="sms").update(
        body="Asante {{ customer_name }}: {{ amount }} received, M-Pesa receipt {{ receipt }}."
    )
    caplog.set_level(logging.DEBUG)
    callback(amount=10.0, receipt="NLJ7RT61SV")

    sms = messages_for(NotificationEvent.PAYMENT_COMPLETED, "sms").get()
    assert "Asante Amina Wanjiru" in sms.body  # the text stays on the message, for the admin
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("notifications"))
    assert f"SMS (local backend, not sent) to 2547*****149 [{sms.provider_message_id}]" in ours
    assert count_segments(sms.body).describe() in ours
    assert "Asante" not in ours and "NLJ7RT61SV" not in ours
    assert "Amina" not in caplog.text and SUCCESS_PHONE not in caplog.text
    assert "amina@example.com" not in caplog.text


def _submitted_refund(payment):
    from payments.models import Refund

    return Refund.objects.create(
        payment=payment,
        method="reversal",
        amount=Decimal("10.00"),
        reason="Item out of stock",
        status="submitted",
        idempotency_key="notif-test-refund-1",
        original_receipt="NLJ7RT61SV",
        originator_conversation_id="AG_20261127_0001",
        conversation_id="AG_20261127_0001",
    )


def _reversal_result(code: int, desc: str) -> dict:
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": desc,
            "OriginatorConversationID": "AG_20261127_0001",
            "ConversationID": "AG_20261127_0001",
            "TransactionID": "SKR1A2B3C4",
        }
    }


@pytest.mark.parametrize(
    ("code", "desc", "event", "recipient"),
    [
        (
            0,
            "The service request is processed successfully.",
            NotificationEvent.REFUND_SUCCEEDED,
            SUCCESS_PHONE,
        ),
        (
            2001,
            "The initiator information is invalid.",
            NotificationEvent.REFUND_FAILED,
            "finance@duka.example",
        ),
    ],
)
def test_real_refund_results_notify_through_the_refund_signal(
    initiated, callback, django_capture_on_commit_callbacks, code, desc, event, recipient
):
    from payments.daraja.async_results import parse_result
    from payments.refunds import refund_apply_result

    callback(amount=10.0, receipt="NLJ7RT61SV")
    refund = _submitted_refund(initiated)

    with django_capture_on_commit_callbacks(execute=True):
        refund_apply_result(refund_id=refund.pk, result=parse_result(_reversal_result(code, desc)))
        refund_apply_result(refund_id=refund.pk, result=parse_result(_reversal_result(code, desc)))

    first = messages_for(event).order_by("id").first()
    assert first.recipient == recipient and first.refund_id == refund.pk
    assert sends(first) == 1
    assert messages_for(event).count() == (2 if event == NotificationEvent.REFUND_SUCCEEDED else 1)
    if event == NotificationEvent.REFUND_FAILED:
        assert "M-Pesa said: The initiator information is invalid." in first.body
