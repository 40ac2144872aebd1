"""The Africa's Talking SDK over real HTTP against a local server (AFRICASTALKING_API_URL)."""

import json
import logging
import time
from decimal import Decimal

import pytest
from werkzeug import Response

from notifications import services
from notifications.channels.sms import parse_cost
from notifications.context import SAMPLE_CONTEXT
from notifications.models import NotificationStatus
from tests.conftest import SUCCESS_PHONE, wait_for

NS = NotificationStatus
API_KEY = "at-live-key-abcdef0123456789"
PATH = "/version1/messaging"


@pytest.fixture
def at_server(httpserver, settings):
    settings.SMS_BACKEND = "africastalking"
    settings.AFRICASTALKING_USERNAME = "duka"
    settings.AFRICASTALKING_API_KEY = API_KEY
    settings.AFRICASTALKING_SENDER_ID = "DUKABORA"
    settings.AFRICASTALKING_API_URL = httpserver.url_for("/")
    return httpserver


def send_one(key="at:payment-1:sms"):
    notification = services.notification_queue(
        event="payment_completed",
        channel="sms",
        recipient=SUCCESS_PHONE,
        language="en",
        context=dict(SAMPLE_CONTEXT),
        dedupe_key=key,
    )
    return services.notification_send(notification_id=notification.pk)


def answer(*recipients, message="Sent to 1/1 Total Cost: KES 0.8000"):
    return {"SMSMessageData": {"Message": message, "Recipients": list(recipients)}}


def recipient(code, status, *, number=f"+{SUCCESS_PHONE}", cost="KES 0.8000", message_id="ATXid_abc"):
    return {"statusCode": code, "number": number, "status": status, "cost": cost, "messageId": message_id}


@pytest.mark.django_db
def test_sms_is_posted_in_the_sdk_form_and_the_answer_stored(at_server, caplog):
    caplog.set_level(logging.DEBUG)
    at_server.expect_oneshot_request(PATH, method="POST").respond_with_json(answer(recipient(101, "Success")))

    notification = send_one()

    request, _response = at_server.log[0]
    assert request.form["username"] == "duka"
    assert request.form["to"] == f"+{SUCCESS_PHONE}"  # AT wants +254..., we store 254...
    assert request.form["from"] == "DUKABORA"
    assert request.form["message"] == notification.body
    assert request.headers["apiKey"] == API_KEY
    assert notification.status == NS.SENT
    assert notification.provider_message_id == "ATXid_abc"
    assert str(notification.cost) == "0.8000" and notification.cost_currency == "KES"
    assert SUCCESS_PHONE not in caplog.text and API_KEY not in caplog.text


@pytest.mark.django_db
def test_a_json_body_the_sdk_returns_as_a_string_is_understood(at_server):
    # The SDK returns a dict only for Content-Type exactly "application/json"; with a charset it is a str.
    at_server.expect_oneshot_request(PATH, method="POST").respond_with_data(
        json.dumps(answer(recipient(102, "Queued", message_id="ATXid_q"))),
        content_type="application/json; charset=utf-8",
    )

    notification = send_one()

    assert notification.status == NS.SENT and notification.provider_message_id == "ATXid_q"


@pytest.mark.django_db
def test_other_recipients_in_the_answer_do_not_confuse_ours(at_server):
    at_server.expect_oneshot_request(PATH, method="POST").respond_with_json(
        answer(
            recipient(403, "InvalidPhoneNumber", number="+254700000001", message_id="None", cost="0"),
            recipient(100, "Processed", message_id="ATXid_ours"),
        )
    )

    assert send_one().provider_message_id == "ATXid_ours"


@pytest.mark.django_db
def test_per_recipient_rejection_is_final(at_server):
    at_server.expect_oneshot_request(PATH, method="POST").respond_with_json(
        answer(recipient(406, "UserInBlacklist", message_id="None", cost="0"), message="Sent to 0/1")
    )

    notification = send_one()

    assert notification.status == NS.REJECTED
    assert notification.last_error.startswith("406 UserInBlacklist")
    assert notification.provider_message_id == "" and notification.next_attempt_at is None


@pytest.mark.django_db
def test_nothing_queued_at_all_is_rejected(at_server):
    at_server.expect_oneshot_request(PATH, method="POST").respond_with_json(answer(message="InvalidSenderId"))

    notification = send_one()

    assert notification.status == NS.REJECTED and "InvalidSenderId" in notification.last_error


@pytest.mark.django_db
def test_http_500_is_retried_later(at_server):
    at_server.expect_oneshot_request(PATH, method="POST").respond_with_data(
        "Internal Server Error", status=500
    )

    notification = send_one()

    assert notification.status == NS.QUEUED and notification.attempts == 1
    assert "refused the request" in notification.last_error


@pytest.mark.django_db
def test_a_2xx_we_cannot_read_counts_as_possibly_sent(at_server):
    at_server.expect_oneshot_request(PATH, method="POST").respond_with_data(
        "<html>Accepted</html>", content_type="text/html"
    )

    notification = send_one()

    assert notification.status == NS.QUEUED and notification.uncertain_attempts == 1


@pytest.mark.django_db
def test_a_slow_provider_that_answers_too_late_is_resent_once_at_most(at_server, settings):
    settings.AFRICASTALKING_READ_TIMEOUT = 0.2

    def slow(request):
        time.sleep(0.4)
        return Response(json.dumps(answer(recipient(101, "Success"))), content_type="application/json")

    at_server.expect_request(PATH, method="POST").respond_with_handler(slow)

    notification = send_one()
    assert notification.status == NS.QUEUED and notification.uncertain_attempts == 1
    notification = services.notification_send(notification_id=notification.pk)
    notification = services.notification_send(notification_id=notification.pk)

    assert notification.status == NS.UNKNOWN
    wait_for(lambda: len(at_server.log) == 2, timeout=3)  # the server logs a request once it answered it
    time.sleep(0.1)
    assert len(at_server.log) == 2


@pytest.mark.django_db
def test_unreachable_provider_is_retried(settings):
    settings.SMS_BACKEND = "africastalking"
    settings.AFRICASTALKING_API_KEY = API_KEY
    settings.AFRICASTALKING_API_URL = "http://127.0.0.1:9"  # discard port: connection refused

    notification = send_one()

    assert notification.status == NS.QUEUED and notification.uncertain_attempts == 0
    assert API_KEY not in notification.last_error


def test_cost_is_parsed_to_decimal():
    assert parse_cost("KES 0.8000") == (Decimal("0.8000"), "KES")
    assert parse_cost("USD 0.0100") == (Decimal("0.0100"), "USD")
    assert parse_cost("0") == (Decimal("0"), "")
    assert parse_cost(None) == (None, "")
    assert parse_cost("free") == (None, "")
