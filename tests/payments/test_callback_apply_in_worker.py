"""MPESA_CALLBACK_APPLY=worker: Daraja is answered once the raw request is stored; a task applies it.

The queue here is the ORM broker of the test database with django-q2's inline mode switched off, so each
test sees what the web request left behind before any worker ran.
"""

import datetime as dt
import json

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from payments import tasks
from payments.models import CallbackInbox, EventKind, InboxStatus, PaymentStatus
from payments.reconciliation import inbox_sweep
from tests.conftest import stk_callback

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}


@pytest.fixture
def worker_mode(settings, monkeypatch):
    settings.MPESA_CALLBACK_APPLY = "worker"
    monkeypatch.setattr(Conf, "SYNC", False)


def post(client, path, body):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json")


def queued() -> list[tuple[str, tuple]]:
    """The tasks waiting in the ORM broker, as (function, arguments)."""
    packages = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]
    return [(package["func"], package["args"]) for package in packages]


def run_queued() -> None:
    for func, args in queued():
        getattr(tasks, func.rsplit(".", 1)[1])(*args)
    OrmQ.objects.all().delete()


def test_a_callback_is_answered_once_stored_and_applied_by_its_task(
    worker_mode, client, callback_path, initiated
):
    response = post(client, callback_path, stk_callback(initiated.checkout_request_id))

    assert response.status_code == 200 and response.json() == ACK
    inbox = CallbackInbox.objects.get()
    assert inbox.status == InboxStatus.RECEIVED
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.INITIATED
    assert queued() == [("payments.tasks.inbox_apply", (inbox.pk,))]

    run_queued()
    run_queued()  # a task delivered twice changes nothing more

    initiated.refresh_from_db()
    inbox.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    assert inbox.status == InboxStatus.PROCESSED
    assert initiated.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1


def test_a_duplicate_costs_one_lookup_before_the_answer_and_is_counted_by_its_task(
    worker_mode, client, callback_path, initiated
):
    body = stk_callback(initiated.checkout_request_id)
    post(client, callback_path, body)
    run_queued()

    with CaptureQueriesContext(connection) as captured:
        response = post(client, callback_path, body)

    assert response.status_code == 200 and response.json() == ACK
    statements = [query["sql"] for query in captured.captured_queries]
    assert [sql.split()[0] for sql in statements] == ["SELECT", "INSERT"]
    assert "payments_callbackinbox" in statements[0] and "django_q_ormq" in statements[1]
    assert CallbackInbox.objects.count() == 1
    assert not initiated.events.filter(kind=EventKind.DUPLICATE_RESULT).exists()

    run_queued()

    original = CallbackInbox.objects.get()
    assert original.duplicates == 1
    assert initiated.events.filter(kind=EventKind.DUPLICATE_RESULT).count() == 1
    assert initiated.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1


def test_a_repeat_of_a_callback_still_waiting_for_its_task_is_not_stored_again(
    worker_mode, client, callback_path, initiated
):
    body = stk_callback(initiated.checkout_request_id)
    post(client, callback_path, body)

    response = post(client, callback_path, body)

    assert response.status_code == 200 and response.json() == ACK
    original = CallbackInbox.objects.get()
    assert original.status == InboxStatus.RECEIVED
    assert [func for func, _args in queued()] == [
        "payments.tasks.inbox_apply",
        "payments.tasks.inbox_count_duplicate",
    ]

    run_queued()

    original.refresh_from_db()
    assert original.status == InboxStatus.PROCESSED and original.duplicates == 1
    assert initiated.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1
    assert initiated.events.filter(kind=EventKind.DUPLICATE_RESULT).count() == 1


def test_a_repeat_counted_before_its_original_was_applied_applies_the_original_first(
    worker_mode, client, callback_path, initiated
):
    body = stk_callback(initiated.checkout_request_id)
    post(client, callback_path, body)
    post(client, callback_path, body)
    [(_apply, (inbox_id,)), (_count, _args)] = queued()

    tasks.inbox_count_duplicate(inbox_id)  # the queue's order is not guaranteed across workers

    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    kinds = list(initiated.events.order_by("pk").values_list("kind", flat=True))
    assert kinds.index(EventKind.RESULT_APPLIED) < kinds.index(EventKind.DUPLICATE_RESULT)
    tasks.inbox_apply(inbox_id)
    assert initiated.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1


def test_a_malformed_body_is_still_refused_before_anything_is_queued(worker_mode, client, callback_path, db):
    response = post(client, callback_path, {"Body": {"somethingElse": {}}})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed"
    assert CallbackInbox.objects.get().status == InboxStatus.REJECTED
    assert queued() == []


def test_with_the_queue_down_the_callback_is_kept_and_the_inbox_sweeper_applies_it(
    worker_mode, client, callback_path, initiated, monkeypatch, settings
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)

    response = post(client, callback_path, stk_callback(initiated.checkout_request_id))

    assert response.status_code == 200 and response.json() == ACK
    inbox = CallbackInbox.objects.get()
    assert inbox.status == InboxStatus.RECEIVED
    assert inbox_sweep()["reprocessed"] == 0  # not yet: a worker may still be on it

    later = timezone.now() + dt.timedelta(seconds=settings.INBOX_RETRY_AFTER + 1)
    with time_machine.travel(later, tick=False):
        counts = inbox_sweep()

    assert counts == {"reprocessed": 1, "processed": 1}
    initiated.refresh_from_db()
    assert initiated.status == PaymentStatus.COMPLETED
    assert initiated.events.filter(kind=EventKind.RESULT_APPLIED).count() == 1


def test_with_the_queue_down_a_duplicate_is_counted_before_answering(
    worker_mode, client, callback_path, initiated, monkeypatch
):
    body = stk_callback(initiated.checkout_request_id)
    post(client, callback_path, body)
    run_queued()

    def broker_down(*args, **kwargs):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    response = post(client, callback_path, body)

    assert response.status_code == 200
    assert CallbackInbox.objects.get().duplicates == 1
    assert initiated.events.filter(kind=EventKind.DUPLICATE_RESULT).count() == 1


def test_the_default_is_the_worker_with_redis_and_the_request_without():
    import subprocess
    import sys

    script = "from django.conf import settings; print(settings.MPESA_CALLBACK_APPLY)"
    answers = {}
    for redis_url in ("", "redis://127.0.0.1:6390/0"):
        env = {
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "backoffice.settings",
            "REDIS_URL": redis_url,
            "MPESA_ENVIRONMENT": "simulator",
        }
        result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-c", f"import django; django.setup(); {script}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        answers[redis_url] = result.stdout.strip()

    assert answers == {"": "request", "redis://127.0.0.1:6390/0": "worker"}
