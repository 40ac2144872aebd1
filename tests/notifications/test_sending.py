"""Sending: claims, retries with backoff and a cap, permanent errors, and timeouts after the provider accepted."""

import datetime as dt
import threading

import pytest
import requests
import responses
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone

from notifications import services
from notifications.context import SAMPLE_CONTEXT
from notifications.models import Notification, NotificationAttempt, NotificationStatus
from tests.conftest import SUCCESS_PHONE

NS = NotificationStatus
AT_URL = "https://at.fake"
MESSAGING = f"{AT_URL}/version1/messaging"
T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)


def accepted(code=101, cost="KES 0.8000", message_id="ATXid_1"):
    return {
        "SMSMessageData": {
            "Message": "Sent to 1/1 Total Cost: KES 0.8000",
            "Recipients": [
                {
                    "statusCode": code,
                    "number": f"+{SUCCESS_PHONE}",
                    "status": "Success",
                    "cost": cost,
                    "messageId": message_id,
                }
            ],
        }
    }


def recipient_failed(code: int, status: str):
    return {
        "SMSMessageData": {
            "Message": "Sent to 0/1 Total Cost: 0",
            "Recipients": [
                {
                    "statusCode": code,
                    "number": f"+{SUCCESS_PHONE}",
                    "status": status,
                    "cost": "0",
                    "messageId": "None",
                }
            ],
        }
    }


@pytest.fixture
def at_fake(settings):
    """Africa's Talking at a fake host; the SDK's module-level requests.post is intercepted by `responses`."""
    settings.SMS_BACKEND = "africastalking"
    settings.AFRICASTALKING_USERNAME = "sandbox"
    settings.AFRICASTALKING_API_KEY = "at-test-key-0123456789"
    settings.AFRICASTALKING_API_URL = AT_URL
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def queued_sms(key: str = "test:payment-1:sms") -> Notification:
    notification = services.notification_queue(
        event="payment_completed",
        channel="sms",
        recipient=SUCCESS_PHONE,
        language="en",
        context=dict(SAMPLE_CONTEXT),
        dedupe_key=key,
    )
    return notification


def send(notification: Notification) -> Notification:
    return services.notification_send(notification_id=notification.pk)


def test_retry_delay_doubles_from_30_seconds_and_caps_at_an_hour():
    delays = [services.retry_delay(n).total_seconds() for n in range(1, 10)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


@pytest.mark.django_db
def test_accepted_sms_records_message_id_and_cost(at_fake):
    at_fake.post(MESSAGING, json=accepted())

    notification = send(queued_sms())

    assert notification.status == NS.SENT
    assert notification.provider == "africastalking"
    assert notification.provider_message_id == "ATXid_1"
    assert str(notification.cost) == "0.8000" and notification.cost_currency == "KES"
    assert notification.attempts == 1 and notification.sent_at is not None


@pytest.mark.django_db
def test_provider_5xx_is_retried_with_growing_delays_then_failed(at_fake, settings):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 6
    at_fake.post(MESSAGING, status=503, body="Service Unavailable")

    with time_machine.travel(T0, tick=False) as clock:
        notification = send(queued_sms())
        waits = []
        while notification.status == NS.QUEUED:
            wait = notification.next_attempt_at - timezone.now()
            waits.append(wait.total_seconds())
            clock.shift(wait - dt.timedelta(seconds=1))
            assert services.notification_sweep()["due"] == 0  # not due a second early
            clock.shift(dt.timedelta(seconds=1))
            assert services.notification_sweep()["due"] == 1
            notification.refresh_from_db()

    assert waits == [30, 60, 120, 240, 480]
    assert notification.status == NS.FAILED
    assert notification.attempts == 6 and notification.failed_at is not None
    assert "gave up after 6 attempts" in notification.last_error
    assert len(at_fake.calls) == 6
    assert list(notification.attempt_log.values_list("outcome", flat=True)) == ["retry"] * 5 + ["failed"]


@pytest.mark.django_db
def test_a_failed_message_is_not_sent_again_by_the_sweeper(at_fake, settings):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 1
    at_fake.post(MESSAGING, status=500, body="oops")
    notification = send(queued_sms())
    assert notification.status == NS.FAILED

    with time_machine.travel(timezone.now() + dt.timedelta(hours=3)):
        services.notification_sweep()

    assert len(at_fake.calls) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (403, "InvalidPhoneNumber"),
        (406, "UserInBlacklist"),
        (402, "InvalidSenderId"),
        (404, "UnsupportedNumberType"),
    ],
)
def test_errors_that_cannot_succeed_are_rejected_without_retry(at_fake, code, status):
    at_fake.post(MESSAGING, json=recipient_failed(code, status))

    notification = send(queued_sms())
    with time_machine.travel(timezone.now() + dt.timedelta(hours=2)):
        services.notification_sweep()

    notification.refresh_from_db()
    assert notification.status == NS.REJECTED
    assert notification.last_error.startswith(f"{code} {status}")
    assert notification.provider_status == status
    assert notification.next_attempt_at is None
    assert len(at_fake.calls) == 1


@pytest.mark.django_db
def test_insufficient_balance_is_retried(at_fake):
    at_fake.post(MESSAGING, json=recipient_failed(405, "InsufficientBalance"))

    notification = send(queued_sms())

    assert notification.status == NS.QUEUED
    assert "InsufficientBalance" in notification.last_error
    assert notification.next_attempt_at is not None


@pytest.mark.django_db
def test_connection_refused_is_retried_as_nothing_was_sent(at_fake):
    at_fake.post(MESSAGING, body=requests.ConnectTimeout("connect timed out"))

    notification = send(queued_sms())

    assert notification.status == NS.QUEUED
    assert notification.uncertain_attempts == 0


@pytest.mark.django_db
def test_timeout_after_the_provider_may_have_accepted_is_resent_at_most_once(at_fake):
    at_fake.post(MESSAGING, body=requests.ReadTimeout("read timed out"))

    with time_machine.travel(T0, tick=False) as clock:
        notification = send(queued_sms())
        assert notification.status == NS.QUEUED and notification.uncertain_attempts == 1
        clock.shift(dt.timedelta(minutes=5))
        services.notification_sweep()
        notification.refresh_from_db()
        clock.shift(dt.timedelta(hours=5))
        services.notification_sweep()

    notification.refresh_from_db()
    assert notification.status == NS.UNKNOWN
    assert "not resent again" in notification.last_error
    assert len(at_fake.calls) == 2  # the original and one resend, never more


@pytest.mark.django_db
def test_timeout_then_success_is_sent(at_fake):
    at_fake.post(MESSAGING, body=requests.ReadTimeout("read timed out"))
    at_fake.post(MESSAGING, json=accepted(message_id="ATXid_2"))

    notification = send(queued_sms())
    notification = send(notification)

    assert notification.status == NS.SENT and notification.provider_message_id == "ATXid_2"
    assert list(notification.attempt_log.values_list("outcome", flat=True)) == ["uncertain", "sent"]


@pytest.mark.django_db
def test_a_second_sender_does_not_send_a_claimed_or_sent_message(at_fake):
    at_fake.post(MESSAGING, json=accepted())
    notification = queued_sms()
    Notification.objects.filter(pk=notification.pk).update(status=NS.SENDING, claimed_at=timezone.now())

    assert send(notification).status == NS.SENDING  # someone else holds the claim
    Notification.objects.filter(pk=notification.pk).update(status=NS.QUEUED)
    assert send(notification).status == NS.SENT
    assert send(notification).status == NS.SENT
    assert len(at_fake.calls) == 1


@pytest.mark.django_db
def test_a_claim_abandoned_by_a_dead_worker_is_resent_once(settings):
    notification = queued_sms()
    long_ago = timezone.now() - dt.timedelta(seconds=settings.NOTIFICATIONS_SENDING_STALE_SECONDS + 1)
    Notification.objects.filter(pk=notification.pk).update(status=NS.SENDING, attempts=1, claimed_at=long_ago)

    assert services.notification_sweep() == {"due": 1, "recovered": 1}
    notification.refresh_from_db()
    assert notification.status == NS.SENT and notification.uncertain_attempts == 1

    Notification.objects.filter(pk=notification.pk).update(status=NS.SENDING, claimed_at=long_ago)
    services.notification_sweep()
    notification.refresh_from_db()
    assert notification.status == NS.UNKNOWN


@pytest.mark.django_db
def test_the_same_event_twice_is_one_row(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = queued_sms("payment_completed:payment-9:sms")
        second = queued_sms("payment_completed:payment-9:sms")

    assert first.pk == second.pk
    assert NotificationAttempt.objects.filter(outcome="sent").count() == 1


@pytest.mark.django_db
def test_resend_queues_the_same_row_again_and_records_who(
    django_user_model, django_capture_on_commit_callbacks
):
    staff = django_user_model.objects.create_user("ops")
    staff.user_permissions.add(Permission.objects.get(codename="resend_notification"))
    with django_capture_on_commit_callbacks(execute=True):
        notification = queued_sms()
    assert Notification.objects.get(pk=notification.pk).status == NS.SENT

    with django_capture_on_commit_callbacks(execute=True):
        services.notification_resend(notification_id=notification.pk, actor=staff)

    notification.refresh_from_db()
    assert notification.status == NS.SENT
    assert notification.resend_count == 1 and notification.resent_by == staff
    assert notification.dedupe_key == "test:payment-1:sms"
    assert NotificationAttempt.objects.filter(notification=notification, outcome="sent").count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_send_once():
    notification = queued_sms("race:1:sms")
    barrier = threading.Barrier(6)

    def worker():
        barrier.wait()
        try:
            services.notification_send(notification_id=notification.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert NotificationAttempt.objects.filter(notification_id=notification.pk).count() == 1
    assert Notification.objects.get(pk=notification.pk).status == NS.SENT


@pytest.mark.django_db
def test_a_lost_enqueue_is_picked_up_by_the_sweeper_a_minute_later():
    notification = queued_sms()  # committed, but its on_commit enqueue never ran (process died)

    assert services.notification_sweep()["due"] == 0
    with time_machine.travel(timezone.now() + services.ENQUEUE_GRACE + dt.timedelta(seconds=1)):
        assert services.notification_sweep()["due"] == 1

    notification.refresh_from_db()
    assert notification.status == NS.SENT


@pytest.mark.django_db
def test_a_slow_queue_does_not_collect_a_copy_of_the_task_every_minute(monkeypatch):
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if not Conf.ORM:
        pytest.skip("counts the tasks in the ORM broker")
    monkeypatch.setattr(Conf, "SYNC", False)
    notification = queued_sms()
    Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now())

    with time_machine.travel(timezone.now() + dt.timedelta(seconds=1)):
        assert services.notification_sweep()["due"] == 1
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=30)):
        assert services.notification_sweep()["due"] == 0

    assert OrmQ.objects.count() == 1
