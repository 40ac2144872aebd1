"""Email through django-anymail (the ESP comes from MAILERS only) and tracking events back onto the rows."""

import base64
import json
import logging

import pytest
from anymail.signals import AnymailTrackingEvent, tracking

from notifications import services
from notifications.context import SAMPLE_CONTEXT
from notifications.models import NotificationStatus

NS = NotificationStatus
pytestmark = pytest.mark.django_db


def queue_email(key="mail:payment-1:email", recipient="amina@example.com"):
    return services.notification_queue(
        event="payment_completed",
        channel="email",
        recipient=recipient,
        language="en",
        context=dict(SAMPLE_CONTEXT) | {"customer_name": "Amina <b>Wanjiru</b> & Co"},
        dedupe_key=key,
    )


@pytest.fixture
def anymail_test_backend(settings):
    settings.MAILERS = {"default": {"BACKEND": "anymail.backends.test.EmailBackend"}}


def test_email_goes_through_anymail_with_text_and_html(anymail_test_backend, mailoutbox):
    notification = services.notification_send(notification_id=queue_email().pk)

    [message] = mailoutbox
    assert message.to == ["amina@example.com"]
    assert message.from_email == "Duka Bora <noreply@duka.example>"
    assert message.subject == "Payment received for order K7QX2M9A"
    assert "Hello Amina <b>Wanjiru</b> & Co," in message.body  # plain text is not HTML-escaped
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "Amina &lt;b&gt;Wanjiru&lt;/b&gt; &amp; Co" in html  # the HTML part is
    assert message.anymail_test_params["tags"] == ["payment_completed"]
    assert message.anymail_test_params["metadata"] == {
        "notification_id": str(notification.pk),
        "event": "payment_completed",
    }
    assert notification.status == NS.SENT
    assert notification.provider == "test"
    assert notification.provider_message_id == "0"  # the test ESP's message id


def test_esp_over_http_stores_its_message_id(settings, httpserver):
    settings.MAILERS = {
        "default": {
            "BACKEND": "anymail.backends.postmark.EmailBackend",
            "OPTIONS": {"server_token": "pm-token", "api_url": httpserver.url_for("/")},
        }
    }
    httpserver.expect_oneshot_request("/email", method="POST").respond_with_json(
        {
            "To": "amina@example.com",
            "SubmittedAt": "2026-11-27T09:00:00Z",
            "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
            "ErrorCode": 0,
            "Message": "OK",
        }
    )

    notification = services.notification_send(notification_id=queue_email().pk)

    request, _ = httpserver.log[0]
    assert request.headers["X-Postmark-Server-Token"] == "pm-token"
    assert json.loads(request.data)["HtmlBody"].startswith("<!doctype html>")
    assert notification.status == NS.SENT and notification.provider == "postmark"
    assert notification.provider_message_id == "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"


@pytest.mark.parametrize(("status", "expected"), [(503, NS.QUEUED), (422, NS.REJECTED), (401, NS.FAILED)])
def test_esp_errors_are_retried_only_when_they_can_pass(settings, httpserver, status, expected):
    settings.MAILERS = {
        "default": {
            "BACKEND": "anymail.backends.postmark.EmailBackend",
            "OPTIONS": {"server_token": "pm-token", "api_url": httpserver.url_for("/")},
        }
    }
    httpserver.expect_oneshot_request("/email", method="POST").respond_with_json(
        {"ErrorCode": 300, "Message": "nope"}, status=status
    )

    notification = services.notification_send(notification_id=queue_email().pk)

    assert notification.status == expected
    assert "pm-token" not in notification.last_error


@pytest.fixture
def sent_email(anymail_test_backend):
    notification = services.notification_send(notification_id=queue_email().pk)
    assert notification.status == NS.SENT
    return notification


def track(event_type, message_id, recipient="amina@example.com", **extra):
    event = AnymailTrackingEvent(event_type=event_type, message_id=message_id, recipient=recipient, **extra)
    tracking.send(sender=object(), event=event, esp_name="Test")


def test_delivered_event_marks_the_email_delivered_and_repeats_are_harmless(sent_email):
    track("delivered", sent_email.provider_message_id)
    sent_email.refresh_from_db()
    delivered_at = sent_email.delivered_at
    track("delivered", sent_email.provider_message_id)

    sent_email.refresh_from_db()
    assert sent_email.status == NS.DELIVERED and sent_email.delivered_at == delivered_at


def test_bounce_marks_the_email_failed_with_the_reason(sent_email):
    track("bounced", sent_email.provider_message_id, description="Mailbox does not exist")

    sent_email.refresh_from_db()
    assert sent_email.status == NS.FAILED
    assert sent_email.provider_status == "bounced"
    assert "Mailbox does not exist" in sent_email.last_error


def test_an_open_proves_delivery(sent_email):
    track("opened", sent_email.provider_message_id)

    sent_email.refresh_from_db()
    assert sent_email.status == NS.DELIVERED


def test_event_matched_by_metadata_when_the_esp_sends_no_message_id(sent_email):
    track("rejected", None, metadata={"notification_id": str(sent_email.pk)}, reject_reason="blocked")

    sent_email.refresh_from_db()
    assert sent_email.status == NS.REJECTED


def test_event_for_an_unknown_message_is_logged(db, caplog):
    caplog.set_level(logging.INFO)
    track("delivered", "no-such-id", recipient="someone@example.com")

    assert "tracking event delivered for unknown message no-such-id" in caplog.text
    assert "someone@example.com" not in caplog.text


def test_postmark_tracking_webhook_updates_the_row(sent_email, client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret"}
    auth = "Basic " + base64.b64encode(b"hook:s3cret").decode()
    payload = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": str(sent_email.provider_message_id),
        "Recipient": "amina@example.com",
        "Tag": "payment_completed",
        "DeliveredAt": "2026-11-27T09:00:05Z",
        "Details": "Test delivery webhook details",
        "Metadata": {"notification_id": str(sent_email.pk)},
    }

    response = client.post(
        "/anymail/postmark/tracking/", data=payload, content_type="application/json", HTTP_AUTHORIZATION=auth
    )

    assert response.status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == NS.DELIVERED
