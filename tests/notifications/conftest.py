"""Notifications fixtures: a customer who gets messages, M-Pesa attempts driven through the real services."""

import pytest

from notifications.models import Notification, NotificationAttempt
from payments import services as payment_services
from payments.daraja.results import parse_stk_callback
from payments.models import EventSource, PaymentStatus
from tests.conftest import stk_callback

CHECKOUT = "ws_CO_191220191020363925"


@pytest.fixture(autouse=True)
def _notification_settings(settings):
    settings.SMS_BACKEND = "local"
    settings.NOTIFICATIONS_BUSINESS_NAME = "Duka Bora"
    settings.NOTIFICATIONS_STAFF_EMAILS = ["finance@duka.example"]
    settings.NOTIFICATIONS_FROM_EMAIL = "Duka Bora <noreply@duka.example>"


@pytest.fixture
def contact():
    """Whom the order's messages go to, given with the order (a test overrides it by parametrizing)."""
    return {
        "full_name": "Amina Wanjiru",
        "email": "amina@example.com",
        "language": "en",
        "sms_opt_out": False,
    }


@pytest.fixture
def initiated(contact, fake_daraja, place_order, django_capture_on_commit_callbacks):
    """An M-Pesa order of KES 10 whose STK push was accepted (CheckoutRequestID CHECKOUT); messages sent."""
    fake_daraja.checkout_ids.append(CHECKOUT)
    with django_capture_on_commit_callbacks(execute=True):
        _order, payment = place_order(**contact)
    assert payment.status == PaymentStatus.INITIATED
    return payment


@pytest.fixture
def callback(django_capture_on_commit_callbacks):
    """Apply an STK callback through payments.services.payment_apply_result, running on_commit work."""

    def apply(**kwargs):
        result = parse_stk_callback(stk_callback(CHECKOUT, **kwargs))
        with django_capture_on_commit_callbacks(execute=True):
            return payment_services.payment_apply_result(
                checkout_request_id=CHECKOUT, result=result, source=EventSource.CALLBACK
            )

    return apply


def messages_for(event: str, channel: str | None = None):
    rows = Notification.objects.filter(event=event)
    return rows.filter(channel=channel) if channel else rows


def sends(notification: Notification) -> int:
    """How many times the provider accepted this message."""
    return NotificationAttempt.objects.filter(notification=notification, outcome="sent").count()
