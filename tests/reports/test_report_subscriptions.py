"""Report subscriptions become django-q2 CRON schedules (created, updated, paused and removed with them),
their scheduled runs send the right period, and a failed run is recorded and tried again."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from croniter import croniter
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import Schedule
from django_q.scheduler import scheduler

from reports.models import ReportRun, ReportSubscription, RunStatus, RunTrigger
from reports.periods import NAIROBI
from reports.report_services import (
    cron_for,
    report_runs_abandon_stale,
    report_subscription_delete,
    report_subscription_save,
    schedule_name,
)
from reports.tasks import report_subscription_run
from tests.admin_support import post_action
from tests.reports import dataset

UTC = dt.UTC


def nairobi(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NAIROBI)


@pytest.fixture
def history(api_user):
    return dataset.build(api_user)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def finance(django_user_model):
    user = django_user_model.objects.create_user("finance", "finance@example.com", "x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="view_payment"))
    return user


def subscribe(finance=None, **fields) -> ReportSubscription:
    subscription = ReportSubscription(name="Daily finance", **fields)
    if finance is None:
        subscription.extra_emails = fields.pop("extra_emails", "cfo@example.com")
    report_subscription_save(subscription=subscription)
    if finance is not None:
        subscription.recipients.add(finance)
    return subscription


def report_schedules():
    """Ours only: the other apps' schedules (sweepers) are created by migrate."""
    return Schedule.objects.filter(name__startswith="report-")


def due_now(subscription: ReportSubscription, at: dt.datetime) -> None:
    """Make the subscription's schedule due, as if `at` were its planned time and it is now later."""
    Schedule.objects.filter(pk=subscription.schedule_id).update(next_run=at)


# --- the schedule follows the subscription ----------------------------------------------------------
@pytest.mark.django_db
def test_a_new_subscription_gets_a_cron_schedule_at_its_nairobi_time():
    with time_machine.travel(nairobi(2026, 11, 12, 9, 0), tick=False):
        subscription = subscribe(send_at=dt.time(7, 30))

    schedule = Schedule.objects.get(name=schedule_name(subscription.pk))
    assert subscription.schedule == schedule
    assert (schedule.schedule_type, schedule.cron, schedule.repeats) == (Schedule.CRON, "30 7 * * *", -1)
    assert schedule.func == "reports.tasks.report_subscription_run"
    assert schedule.intended_date_kwarg == "intended_for"
    assert timezone.localtime(schedule.next_run, NAIROBI) == nairobi(2026, 11, 13, 7, 30)


@pytest.mark.django_db
def test_editing_pausing_resuming_and_deleting_keep_one_schedule_in_step():
    subscription = subscribe()
    schedule_id = subscription.schedule_id

    subscription.frequency, subscription.weekday, subscription.send_at = "weekly", 4, dt.time(18, 15)
    report_subscription_save(subscription=subscription)
    schedule = report_schedules().get()
    assert (schedule.pk, schedule.cron, schedule.repeats) == (schedule_id, "15 18 * * 5", -1)  # Friday

    subscription.active = False
    report_subscription_save(subscription=subscription)
    assert report_schedules().get().repeats == 0  # paused: django-q2 skips repeats = 0

    with time_machine.travel(nairobi(2026, 11, 20, 20, 0), tick=False):
        subscription.active = True
        report_subscription_save(subscription=subscription)
    schedule = report_schedules().get()
    assert schedule.repeats == -1
    assert timezone.localtime(schedule.next_run, NAIROBI) == nairobi(2026, 11, 27, 18, 15)  # no catch-up

    report_subscription_delete(subscription=subscription)
    assert not report_schedules().exists() and not ReportSubscription.objects.exists()


@pytest.mark.django_db
def test_the_subscription_and_its_schedule_are_saved_together_or_not_at_all(monkeypatch):
    def broken(self, *args, **kwargs):
        raise IntegrityError("schedule table unavailable")

    monkeypatch.setattr(Schedule, "save", broken)
    with pytest.raises(IntegrityError):
        subscribe()

    assert not ReportSubscription.objects.exists()


@pytest.mark.parametrize(
    ("frequency", "send_at", "weekday", "zone", "cron"),
    [
        ("daily", dt.time(7, 0), 0, "Africa/Nairobi", "0 7 * * *"),
        ("daily", dt.time(7, 0), 0, "UTC", "0 4 * * *"),
        ("daily", dt.time(2, 30), 0, "UTC", "30 23 * * *"),
        ("weekly", dt.time(8, 0), 0, "Africa/Nairobi", "0 8 * * 1"),  # Monday
        ("weekly", dt.time(8, 0), 6, "Africa/Nairobi", "0 8 * * 0"),  # Sunday
        ("weekly", dt.time(1, 0), 0, "UTC", "0 22 * * 0"),  # Monday 01:00 EAT = Sunday 22:00 UTC
        ("weekly", dt.time(23, 0), 6, "Asia/Kolkata", "30 1 * * 1"),  # Sunday 23:00 EAT = Monday 01:30 IST
        ("monthly", dt.time(6, 0), 0, "UTC", "0 3 1 * *"),
        ("monthly", dt.time(2, 0), 0, "UTC", "0 23 L * *"),  # the 1st 02:00 EAT = last day 23:00 UTC
        ("monthly", dt.time(23, 0), 0, "Asia/Tokyo", "0 5 2 * *"),
    ],
)
def test_the_nairobi_time_is_converted_into_the_clusters_time_zone(frequency, send_at, weekday, zone, cron):
    assert cron_for(frequency=frequency, send_at=send_at, weekday=weekday, zone=ZoneInfo(zone)) == cron


@pytest.mark.django_db
def test_a_cluster_in_utc_still_sends_at_the_nairobi_time(monkeypatch):
    monkeypatch.setattr(Conf, "TIME_ZONE", "UTC")
    with time_machine.travel(nairobi(2026, 11, 12, 9, 0), tick=False):
        subscription = subscribe(frequency="monthly", send_at=dt.time(2, 0))
        schedule = Schedule.objects.get(pk=subscription.schedule_id)

        assert schedule.cron == "0 23 L * *"
        first = croniter(schedule.cron, dt.datetime(2026, 11, 12, 6, 0, tzinfo=UTC)).get_next(dt.datetime)
        second = croniter(schedule.cron, first).get_next(dt.datetime)
    assert [t.astimezone(NAIROBI) for t in (first, second)] == [
        nairobi(2026, 12, 1, 2, 0),
        nairobi(2027, 1, 1, 2, 0),
    ]


# --- scheduled runs -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_due_schedule_sends_the_day_before_its_planned_time_through_django_q2(history, media, finance):
    subscription = subscribe(finance)
    due_now(subscription, nairobi(2026, 11, 12, 7, 0))

    scheduler(broker=get_broker())  # Q_SYNC: the task runs here

    (message,) = mail.outbox
    assert message.to == ["finance@example.com"]
    assert "Daily finance · Wed 11 Nov 2026" in message.subject
    run = ReportRun.objects.get()
    assert (run.trigger, run.status, run.attempt) == (RunTrigger.SCHEDULE, RunStatus.SENT, 1)
    assert (run.period_first, run.period_last) == (dt.date(2026, 11, 11), dt.date(2026, 11, 11))
    assert Schedule.objects.get(pk=subscription.schedule_id).next_run > timezone.now()  # next day


@pytest.mark.django_db
def test_the_same_scheduled_run_delivered_twice_sends_once(history, media, finance):
    subscription = subscribe(finance)
    planned = nairobi(2026, 11, 12, 7, 0).isoformat()

    assert report_subscription_run(subscription.pk, intended_for=planned).endswith("sent")
    assert report_subscription_run(subscription.pk, intended_for=planned) == "skipped"

    assert len(mail.outbox) == 1 and ReportRun.objects.count() == 1


@pytest.mark.django_db
def test_a_paused_subscriptions_run_sends_nothing(history, media, finance):
    subscription = subscribe(finance, active=False)

    assert (
        report_subscription_run(subscription.pk, intended_for=nairobi(2026, 11, 12, 7).isoformat())
        == "skipped"
    )
    assert mail.outbox == [] and not ReportRun.objects.exists()


@pytest.mark.django_db
def test_a_failed_run_is_recorded_and_retried_on_the_same_period_until_it_is_sent(
    history, media, finance, monkeypatch, settings
):
    settings.REPORT_RETRY_SECONDS = 600
    subscription = subscribe(finance, frequency="weekly")
    monkeypatch.setattr("django.core.mail.EmailMessage.send", _refuse)

    with time_machine.travel(nairobi(2026, 11, 16, 7, 1), tick=False):
        report_subscription_run(subscription.pk, intended_for=nairobi(2026, 11, 16, 7).isoformat())
    failed = ReportRun.objects.get()
    assert (failed.status, failed.attempt) == (RunStatus.FAILED, 1)
    assert "Connection refused by the mail server" in failed.error
    retry = Schedule.objects.get(schedule_type=Schedule.ONCE)
    assert failed.retry_at == retry.next_run == nairobi(2026, 11, 16, 7, 11)

    monkeypatch.undo()
    Schedule.objects.filter(pk=retry.pk).update(next_run=timezone.now() - dt.timedelta(seconds=1))
    scheduler(broker=get_broker())

    sent = ReportRun.objects.get(attempt=2)
    assert sent.status == RunStatus.SENT
    assert (sent.period_first, sent.period_last) == (dt.date(2026, 11, 9), dt.date(2026, 11, 15))
    assert "compared with 2 – 8 Nov 2026" in mail.outbox[0].alternatives[0].content  # still a week
    assert not Schedule.objects.filter(schedule_type=Schedule.ONCE).exists()  # the retry ran once


@pytest.mark.django_db
def test_retries_stop_after_the_last_attempt(history, media, finance, monkeypatch, settings):
    settings.REPORT_MAX_ATTEMPTS = 2
    subscription = subscribe(finance)
    monkeypatch.setattr("django.core.mail.EmailMessage.send", _refuse)
    planned = nairobi(2026, 11, 12, 7).isoformat()

    report_subscription_run(subscription.pk, intended_for=planned)
    report_subscription_run(subscription.pk, attempt=2, period_first="2026-11-11", period_last="2026-11-11",
                            frequency="daily")  # fmt: skip

    assert list(ReportRun.objects.order_by("attempt").values_list("attempt", "status")) == [
        (1, "failed"),
        (2, "failed"),
    ]
    assert Schedule.objects.filter(schedule_type=Schedule.ONCE).count() == 1  # only the one for attempt 2


@pytest.mark.django_db
def test_a_run_whose_worker_died_does_not_stay_running(settings):
    settings.REPORT_TASK_TIMEOUT = 60
    stale = ReportRun.objects.create(trigger="schedule", frequency="daily", period_first=dt.date(2026, 11, 11),
                                     period_last=dt.date(2026, 11, 11), file_format="csv")  # fmt: skip
    ReportRun.objects.filter(pk=stale.pk).update(started_at=timezone.now() - dt.timedelta(minutes=5))

    assert report_runs_abandon_stale() == 1
    stale.refresh_from_db()
    assert stale.status == RunStatus.FAILED and "worker stopped" in stale.error


def _refuse(self, *args, **kwargs):
    raise ConnectionRefusedError("Connection refused by the mail server")


# --- the admin ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_admin_form_creates_edits_and_deletes_the_schedule_with_the_subscription(admin_client, finance):
    form = {"name": "Weekly finance", "frequency": "weekly", "send_at": "08:00", "weekday": "0",
            "file_format": "both", "recipients": [finance.pk], "extra_emails": "cfo@example.com", "active": "on"}  # fmt: skip
    response = admin_client.post(reverse("admin:reports_reportsubscription_add"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    subscription = ReportSubscription.objects.get()
    assert list(subscription.recipients.all()) == [finance]
    assert report_schedules().get().cron == "0 8 * * 1"

    admin_client.post(reverse("admin:reports_reportsubscription_change", args=[subscription.pk]),
                      {**form, "active": ""})  # fmt: skip
    assert report_schedules().get().repeats == 0

    admin_client.post(
        reverse("admin:reports_reportsubscription_delete", args=[subscription.pk]), {"post": "yes"}
    )
    assert not ReportSubscription.objects.exists() and not report_schedules().exists()


@pytest.mark.django_db
def test_the_admin_form_refuses_a_subscription_without_recipients_or_with_a_bad_address(admin_client):
    form = {"name": "Nobody", "frequency": "daily", "send_at": "07:00", "weekday": "0", "file_format": "csv",
            "extra_emails": "", "active": "on"}  # fmt: skip
    response = admin_client.post(reverse("admin:reports_reportsubscription_add"), form)
    assert response.status_code == 200 and "Choose at least one staff user" in response.content.decode()
    response = admin_client.post(
        reverse("admin:reports_reportsubscription_add"), {**form, "extra_emails": "cfo@"}
    )
    assert response.status_code == 200 and "Not an email address" in response.content.decode()
    assert not ReportSubscription.objects.exists() and not report_schedules().exists()


@pytest.mark.django_db
def test_send_now_shows_a_dialog_on_get_and_sends_on_post(
    history, media, admin_client, finance, django_capture_on_commit_callbacks
):
    subscription = subscribe(finance)
    url = reverse("admin:reports_reportsubscription_send_now", args=[subscription.pk])

    assert admin_client.get(url).status_code == 200
    assert mail.outbox == [] and not ReportRun.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response, notes = post_action(admin_client, url)
    assert response.status_code == 200 and response["HX-Redirect"]
    assert any("is being sent" in note for note in notes)
    run = ReportRun.objects.get()
    assert (run.trigger, run.status, run.requested_by.username) == (RunTrigger.ADMIN, RunStatus.SENT, "admin")
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_failed_runs_are_listed_and_filterable_in_the_admin(admin_client, finance):
    for status in (RunStatus.SENT, RunStatus.FAILED):
        ReportRun.objects.create(trigger="command", frequency="daily", period_first=dt.date(2026, 11, 11),
                                 period_last=dt.date(2026, 11, 11), file_format="csv", status=status,
                                 error="boom" if status == RunStatus.FAILED else "")  # fmt: skip
    changelist = reverse("admin:reports_reportrun_changelist")

    everything = admin_client.get(changelist)
    failed = admin_client.get(changelist, {"status__exact": "failed"})

    assert everything.status_code == failed.status_code == 200
    assert everything.context["cl"].result_count == 2
    assert [run.status for run in failed.context["cl"].result_list] == ["failed"]
    assert admin_client.get(reverse("admin:reports_reportsubscription_changelist")).status_code == 200
    run = ReportRun.objects.filter(status="failed").get()
    page = admin_client.get(reverse("admin:reports_reportrun_change", args=[run.pk]))
    assert page.status_code == 200 and "boom" in page.content.decode()


@pytest.mark.django_db
def test_no_report_admin_action_changes_anything_on_get(history, media, admin_client, finance):
    from tests.admin.test_no_change_on_get import CRAFTED, action_urls, snapshot

    subscription = subscribe(finance)
    report_subscription_run(subscription.pk, intended_for=nairobi(2026, 11, 12, 7).isoformat())
    sent = len(mail.outbox)
    urls = [url for url in action_urls() if "/reports/" in url]
    assert any(url.rstrip("/").endswith("send_now") for url in urls)
    before = snapshot()

    for url in urls:
        for params in ({}, CRAFTED):
            response = admin_client.get(url, params)
            assert response.status_code in (200, 403, 404), (url, response.status_code)
            assert snapshot() == before, f"GET {url} {params} changed the database"
    assert len(mail.outbox) == sent
