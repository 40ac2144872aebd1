"""Africa's Talking delivery reports: form-encoded POSTs to a secret URL; repeats and unknown ids are harmless."""

import logging

import pytest
from django.urls import reverse

from notifications import services
from notifications.context import SAMPLE_CONTEXT
from notifications.hooks import sms_delivery_report_url, webhook_token
from notifications.models import NotificationStatus
from tests.conftest import SUCCESS_PHONE

NS = NotificationStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_sms():
    notification = services.notification_queue(
        event="payment_completed",
        channel="sms",
        recipient=SUCCESS_PHONE,
        language="en",
        context=dict(SAMPLE_CONTEXT),
        dedupe_key="dlr:payment-1:sms",
    )
    notification = services.notification_send(notification_id=notification.pk)
    assert notification.status == NS.SENT
    return notification


def report_url(token: str | None = None) -> str:
    return reverse("notifications:sms-delivery-report", kwargs={"token": token or webhook_token()})


def post_report(client, message_id, status, **extra):
    form = {"id": message_id, "status": status, "phoneNumber": f"+{SUCCESS_PHONE}", "networkCode": "63902"}
    return client.post(report_url(), {**form, **extra})


def test_success_report_marks_the_message_delivered(client, sent_sms):
    response = post_report(client, sent_sms.provider_message_id, "Success")

    assert response.status_code == 200
    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.DELIVERED
    assert sent_sms.provider_status == "Success" and sent_sms.delivered_at is not None


def test_repeated_reports_change_nothing(client, sent_sms):
    post_report(client, sent_sms.provider_message_id, "Success")
    sent_sms.refresh_from_db()
    first = (sent_sms.status, sent_sms.delivered_at, sent_sms.updated_at)

    for _ in range(3):
        assert post_report(client, sent_sms.provider_message_id, "Success").status_code == 200

    sent_sms.refresh_from_db()
    assert (sent_sms.status, sent_sms.delivered_at, sent_sms.updated_at) == first


def test_failed_report_keeps_the_reason(client, sent_sms):
    post_report(client, sent_sms.provider_message_id, "Failed", failureReason="UserIsInactive")

    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.FAILED and sent_sms.last_error == "UserIsInactive"


def test_rejected_report(client, sent_sms):
    post_report(client, sent_sms.provider_message_id, "Rejected", failureReason="UserInBlackList")

    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.REJECTED


def test_intermediate_report_only_records_the_provider_status(client, sent_sms):
    post_report(client, sent_sms.provider_message_id, "Buffered")

    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.SENT and sent_sms.provider_status == "Buffered"


def test_late_intermediate_report_does_not_undo_delivery(client, sent_sms):
    post_report(client, sent_sms.provider_message_id, "Success")
    post_report(client, sent_sms.provider_message_id, "Sent")

    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.DELIVERED


def test_out_of_order_failure_report_does_not_undo_delivery(client, sent_sms):
    post_report(client, sent_sms.provider_message_id, "Success")
    post_report(client, sent_sms.provider_message_id, "Failed", failureReason="DeliveryFailure")

    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.DELIVERED


def test_late_failure_report_of_the_first_send_does_not_cancel_a_resend(client, sent_sms, admin_user):
    old_message_id = sent_sms.provider_message_id
    post_report(client, old_message_id, "Failed", failureReason="AbsentSubscriber")
    services.notification_resend(notification_id=sent_sms.pk, actor=admin_user)

    post_report(client, old_message_id, "Expired")  # about the first send, arriving late

    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.QUEUED
    resent = services.notification_send(notification_id=sent_sms.pk)
    assert resent.status == NS.SENT
    assert resent.provider_message_id != old_message_id


def test_unknown_message_id_is_answered_200_and_logged_with_the_phone_masked(client, caplog):
    caplog.set_level(logging.INFO)

    response = post_report(client, "ATXid_never_sent", "Success")

    assert response.status_code == 200
    assert "unknown message ATXid_never_sent" in caplog.text
    assert "2547*****149" in caplog.text and SUCCESS_PHONE not in caplog.text


def test_wrong_token_is_not_found(client, sent_sms):
    response = client.post(
        report_url("not-the-token"), {"id": sent_sms.provider_message_id, "status": "Success"}
    )

    assert response.status_code == 404
    sent_sms.refresh_from_db()
    assert sent_sms.status == NS.SENT


def test_missing_fields_are_a_bad_request(client):
    assert client.post(report_url(), {"status": "Success"}).status_code == 400
    assert client.post(report_url(), {"id": "ATXid_1"}).status_code == 400


def test_only_post_is_accepted(client):
    assert client.get(report_url()).status_code == 405


def test_the_url_to_register_uses_the_configured_token(settings):
    settings.NOTIFICATIONS_WEBHOOK_TOKEN = "s3cr3t-path-token"
    settings.SITE_BASE_URL = "https://shop.example"

    assert sms_delivery_report_url() == "https://shop.example/hooks/sms/delivery/s3cr3t-path-token/"


def test_command_prints_the_urls_to_register(settings):
    from io import StringIO

    from django.core.management import call_command

    settings.NOTIFICATIONS_WEBHOOK_TOKEN = "tok3n"
    settings.SITE_BASE_URL = "https://shop.example"
    settings.MAILERS = {"default": {"BACKEND": "anymail.backends.postmark.EmailBackend"}}
    settings.ANYMAIL = {"WEBHOOK_SECRET": "u:p"}
    out = StringIO()

    call_command("notification_webhook_urls", stdout=out)

    assert "https://shop.example/hooks/sms/delivery/tok3n/" in out.getvalue()
    assert "https://USER:PASSWORD@shop.example/anymail/postmark/tracking/" in out.getvalue()
