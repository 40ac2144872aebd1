"""The delivery-report URL we give Africa's Talking: a secret path token, as AT does not sign callbacks."""

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac


def webhook_token() -> str:
    return (
        settings.NOTIFICATIONS_WEBHOOK_TOKEN
        or salted_hmac("notifications.webhook-url", "africastalking", algorithm="sha256").hexdigest()[:40]
    )


def token_matches(candidate: str) -> bool:
    return constant_time_compare(candidate or "", webhook_token())


def sms_delivery_report_url() -> str:
    path = reverse("notifications:sms-delivery-report", kwargs={"token": webhook_token()})
    return settings.SITE_BASE_URL + path
