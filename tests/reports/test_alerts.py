"""Alert rules and alerts: each rule fires on its condition and not below its minimum volume; one alert per
rule and scope; reminders, auto-resolve, staff acknowledging and resolving; messages once per event."""

import datetime as dt
import json
import threading

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule
from django_q.tasks import async_task

from notifications.models import Notification, NotificationEvent, NotificationStatus
from payments.callback_urls import callback_token
from payments.models import CallbackInbox, InboxStatus
from reports.alerts import checks
from reports.alerts.defaults import default_rules
from reports.alerts.schedules import ensure_alert_schedules
from reports.alerts.services import AlertError, alert_acknowledge, alert_evaluate_all, alert_resolve
from reports.models import Alert, AlertKind, AlertRule, AlertStatus
from tests.admin.test_no_change_on_get import action_urls, snapshot
from tests.admin_support import dialog_post, post_action
from tests.conftest import stk_callback, wait_for
from tests.reports import dataset

pytestmark = pytest.mark.django_db

NEVER_CALLS_BACK = "254700000404"  # the simulator's number whose callback is never sent


@pytest.fixture(autouse=True)
def rules(db, settings):
    """The rules the migration seeds (created again after a transactional test flushed them)."""
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_SMS_NUMBERS = []
    for rule in default_rules():
        AlertRule.objects.update_or_create(name=rule["name"], defaults=rule)
    return {rule.kind: rule for rule in AlertRule.objects.all()}


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def order(api_user):
    return dataset.order(api_user)


def only(*kinds) -> None:
    """Evaluate these rules only: the others read the same rows and would open alerts of their own."""
    AlertRule.objects.exclude(kind__in=kinds).update(enabled=False)


def alerts_of(kind: str):
    return Alert.objects.filter(rule__kind=kind)


def attempts(order, now, count: int, *, status: str = "failed", minutes_ago: float = 5, **fields):
    """`count` attempts created `minutes_ago` before `now`, answered 20 s after their push."""
    defaults = {"settled_by": "callback"}
    if status == "failed":
        defaults.update(result_code="1032", failure_class="customer")
    created = now - dt.timedelta(minutes=minutes_ago)
    in_flight = status in ("pending", "initiated")  # one attempt in flight per order
    for _ in range(count):
        dataset.attempt(
            dataset.order(order.owner) if in_flight else order,
            created=created,
            status=status,
            took=None if in_flight else 20,
            **{**defaults, **fields},
        )


def messages(event: str, channel: str | None = None):
    found = Notification.objects.filter(event=event)
    return found.filter(channel=channel) if channel else found


# --- success rate -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("finished", "fires"), [(19, False), (20, True)])
def test_success_rate_is_judged_from_twenty_finished_attempts(order, now, finished, fires):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, finished)  # every customer cancelled: attempt success 0%
    attempts(order, now, 3, status="initiated")  # in flight: not finished, not counted

    alert_evaluate_all(now=now)

    assert alerts_of(AlertKind.SUCCESS_RATE).exists() is fires
    if fires:
        alert = alerts_of(AlertKind.SUCCESS_RATE).get()
        assert alert.status == AlertStatus.OPEN
        assert alert.title.startswith("M-Pesa attempt success 0.0% (below the 50.0% floor)")
        assert (alert.figures["finished"], alert.figures["attempt_success"]) == (20, 0.0)


def test_success_rate_fires_on_technical_success_below_its_floor(order, now):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 12, status="completed")
    attempts(order, now, 8, result_code="26", failure_class="system")  # attempt 60%, technical 60%

    alert_evaluate_all(now=now)

    alert = alerts_of(AlertKind.SUCCESS_RATE).get()
    assert "technical success 60.0% (below the 80.0% floor)" in alert.title
    assert "attempt success" not in alert.title  # 60% is above its 50% floor


def test_success_rate_fires_when_far_below_the_same_hours_of_the_previous_days(order, now, rules):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now - dt.timedelta(days=1), 20, status="completed")  # usually: 100%
    attempts(order, now, 14, status="completed")
    attempts(order, now, 6)  # now 70%: above the floor, 30 points below the usual

    alert_evaluate_all(now=now)

    alert = alerts_of(AlertKind.SUCCESS_RATE).get()
    assert "attempt success 70.0% (30.0 points below the usual 100.0%)" in alert.title
    assert alert.figures["baseline"]["finished"] == 20

    Alert.objects.all().delete()
    rules[AlertKind.SUCCESS_RATE].baseline_points = None
    rules[AlertKind.SUCCESS_RATE].save()
    alert_evaluate_all(now=now)
    assert not Alert.objects.exists()


def test_a_success_rate_at_the_floor_does_not_fire(order, now):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 10, status="completed")
    attempts(order, now, 10)  # 50%: at the floor, not below it

    alert_evaluate_all(now=now)

    assert not Alert.objects.exists()


# --- callback silence -------------------------------------------------------------------------------
@pytest.mark.parametrize(("pushes", "fires"), [(4, False), (5, True)])
def test_callback_silence_fires_when_pushes_get_no_callback(fake_daraja, place_order, pushes, fires):
    only(AlertKind.CALLBACK_SILENCE)
    for _ in range(pushes):
        place_order()  # Daraja accepts the push; the fake never calls back

    alert_evaluate_all(now=timezone.now())
    assert not Alert.objects.exists()  # the pushes are younger than the grace: M-Pesa may still answer

    alert_evaluate_all(now=timezone.now() + dt.timedelta(minutes=2))
    assert alerts_of(AlertKind.CALLBACK_SILENCE).exists() is fires
    if fires:
        alert = alerts_of(AlertKind.CALLBACK_SILENCE).get()
        assert "No M-Pesa callback in the last 10 min although Daraja accepted 5 pushes" in alert.title
        assert (alert.figures["pushes_accepted"], alert.figures["callbacks_received"]) == (5, 0)


def test_callback_silence_stays_quiet_when_callbacks_arrive(
    fake_daraja, place_order, client, django_capture_on_commit_callbacks
):
    only(AlertKind.CALLBACK_SILENCE)
    hook = reverse("payments:stk-callback", kwargs={"token": callback_token()})
    with django_capture_on_commit_callbacks(execute=True):
        for index in range(6):
            _order, payment = place_order()
            if index == 0:  # one callback is enough to show the URL works
                body = stk_callback(payment.checkout_request_id, result_code=1032)
                client.post(hook, json.dumps(body), content_type="application/json")
    assert CallbackInbox.objects.filter(kind="stk_callback").count() == 1

    alert_evaluate_all(now=timezone.now() + dt.timedelta(minutes=2))

    assert not Alert.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_callback_silence_fires_when_the_simulator_drops_callbacks(daraja, place_order):
    only(AlertKind.CALLBACK_SILENCE)
    payments = [place_order(phone=NEVER_CALLS_BACK)[1] for _ in range(5)]
    assert all(payment.status == "initiated" for payment in payments)

    alert_evaluate_all(now=timezone.now() + dt.timedelta(minutes=2))

    alert = alerts_of(AlertKind.CALLBACK_SILENCE).get()
    assert alert.figures["pushes_accepted"] == 5
    assert not CallbackInbox.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_callback_silence_stays_quiet_when_the_simulator_calls_back(daraja, place_order):
    only(AlertKind.CALLBACK_SILENCE)
    for _ in range(5):
        place_order()
    wait_for(lambda: CallbackInbox.objects.filter(kind="stk_callback").count() == 5)

    alert_evaluate_all(now=timezone.now() + dt.timedelta(minutes=2))

    assert not Alert.objects.exists()


# --- settled by query instead of callback ------------------------------------------------------------
@pytest.mark.parametrize(
    ("by_query", "by_callback", "fires"),
    [(19, 0, False), (20, 0, True), (10, 10, False), (11, 9, True)],
)
def test_query_share_fires_above_its_ceiling_from_twenty_settled_attempts(
    order, now, by_query, by_callback, fires
):
    only(AlertKind.QUERY_SHARE)
    attempts(order, now, by_query, status="completed", settled_by="query")
    attempts(order, now, by_callback, status="completed", settled_by="callback")

    alert_evaluate_all(now=now)

    assert alerts_of(AlertKind.QUERY_SHARE).exists() is fires
    if fires:
        assert "settled by STK Query instead of the callback" in alerts_of(AlertKind.QUERY_SHARE).get().title


def test_query_share_fires_when_it_rises_far_above_the_usual(order, now):
    only(AlertKind.QUERY_SHARE)
    attempts(order, now - dt.timedelta(days=2), 20, status="completed", settled_by="callback")  # usually 0%
    attempts(order, now, 7, status="completed", settled_by="query")
    attempts(order, now, 13, status="completed", settled_by="callback")  # now 35%: under the 50% ceiling

    alert_evaluate_all(now=now)

    assert "35.0 points above the usual 0.0%" in alerts_of(AlertKind.QUERY_SHARE).get().title


# --- failure spike ------------------------------------------------------------------------------------
def test_a_spike_of_system_failures_opens_one_alert_for_the_class(order, now):
    only(AlertKind.FAILURE_SPIKE)
    attempts(order, now, 15, status="completed")
    attempts(order, now, 3, result_code="1025", failure_class="system")
    attempts(order, now, 2, result_code="26", failure_class="system")  # system: 5 of 20 = 25%

    alert_evaluate_all(now=now)

    alert = Alert.objects.get()
    assert alert.scope == "class:system"  # not a second alert for 1025 (15%, and told as its class)
    assert alert.figures["top_codes"] == {"1025": 3, "26": 2}
    assert alert.title.startswith("25.0% of finished attempts failed for system / network reasons")


def test_a_spike_of_one_result_code_outside_the_watched_classes(order, now):
    only(AlertKind.FAILURE_SPIKE)
    attempts(order, now, 15, status="completed")
    attempts(order, now, 5, result_code="3", failure_class="request")  # above the maximum amount

    alert_evaluate_all(now=now)

    assert Alert.objects.get().scope == "code:3"


@pytest.mark.parametrize("finished", [19, 20])
def test_customer_outcomes_never_make_a_spike_and_few_attempts_are_not_judged(order, now, finished):
    only(AlertKind.FAILURE_SPIKE)
    attempts(order, now, finished)  # all cancelled by the customer
    alert_evaluate_all(now=now)
    assert not Alert.objects.exists()

    attempts(order, now, 6, result_code="26", failure_class="system")
    alert_evaluate_all(now=now)
    assert Alert.objects.get().scope == "class:system"  # 6 of 25 or 26: above 20%


def test_a_spike_is_not_judged_below_the_minimum_volume(order, now):
    only(AlertKind.FAILURE_SPIKE)
    attempts(order, now, 19, result_code="26", failure_class="system")

    alert_evaluate_all(now=now)

    assert not Alert.objects.exists()


# --- stuck items, tasks, queue ------------------------------------------------------------------------
@pytest.mark.parametrize(("waiting_minutes", "fires"), [(59, False), (61, True)])
def test_items_waiting_longer_than_the_threshold_are_stuck(order, now, waiting_minutes, fires):
    only(AlertKind.STUCK_ITEMS)
    payment = dataset.attempt(order, created=now - dt.timedelta(hours=3), status="needs_review")
    payment.__class__.objects.filter(pk=payment.pk).update(
        updated_at=now - dt.timedelta(minutes=waiting_minutes)
    )
    inbox = CallbackInbox.objects.create(kind="stk_callback", status=InboxStatus.UNMATCHED, body="{}")
    CallbackInbox.objects.filter(pk=inbox.pk).update(received_at=now - dt.timedelta(minutes=waiting_minutes))

    alert_evaluate_all(now=now)

    scopes = set(Alert.objects.values_list("scope", flat=True))
    assert scopes == ({"payments_under_review", "unmatched_callbacks"} if fires else set())
    if fires:
        alert = Alert.objects.get(scope="payments_under_review")
        assert alert.title == "Payments under review: 1 waiting more than 60 min"
        assert alert.figures["list"] == "/admin/payments/payment/?status__exact=needs_review"


@pytest.mark.parametrize(("stopped_minutes_ago", "fires"), [(61, False), (5, True)])
def test_a_background_task_failure_in_the_window_fires(now, stopped_minutes_ago, fires):
    only(AlertKind.TASK_FAILURES)
    stopped = now - dt.timedelta(minutes=stopped_minutes_ago)
    Failure.objects.create(
        id="a" * 32,
        name="alpha-bravo",
        func="payments.tasks.reconcile_payments",
        started=stopped - dt.timedelta(seconds=3),
        stopped=stopped,
        success=False,
        result="Traceback ...",
    )

    alert_evaluate_all(now=now)

    assert alerts_of(AlertKind.TASK_FAILURES).exists() is fires
    if fires:
        assert (
            alerts_of(AlertKind.TASK_FAILURES)
            .get()
            .title.endswith("most often payments.tasks.reconcile_payments")
        )


@pytest.mark.parametrize(("waiting_minutes", "fires"), [(9, False), (11, True)])
def test_tasks_no_worker_takes_mean_the_queue_is_not_draining(now, waiting_minutes, fires):
    only(AlertKind.QUEUE_BACKLOG)
    OrmQ.objects.create(key="backoffice", payload="signed", lock=now - dt.timedelta(minutes=waiting_minutes))

    alert_evaluate_all(now=now)

    assert alerts_of(AlertKind.QUEUE_BACKLOG).exists() is fires


# --- notifications -----------------------------------------------------------------------------------
def _sent(
    count: int, *, status: str, channel: str = "sms", event: str = "payment_completed", error: str = ""
):
    for _ in range(count):
        number = Notification.objects.count() + 1
        Notification.objects.create(
            dedupe_key=f"test:{number}:{channel}",
            event=event,
            channel=channel,
            recipient="254708374149" if channel == "sms" else "amina@example.com",
            body="Paid",
            status=status,
            attempts=1,
            last_error=error,
        )


@pytest.mark.parametrize(("delivered", "fires"), [(6, False), (7, True)])
def test_sms_failures_above_a_quarter_of_ten_messages_fire(delivered, fires):
    only(AlertKind.NOTIFICATION_FAILURES)
    _sent(delivered, status=NotificationStatus.DELIVERED)
    _sent(2, status=NotificationStatus.FAILED, error="gave up")
    _sent(1, status=NotificationStatus.QUEUED, error="HTTP 503, retrying")  # failing right now
    _sent(5, status=NotificationStatus.FAILED, channel="sms", event="alert_opened")  # not counted
    _sent(4, status=NotificationStatus.QUEUED)  # not tried yet: attempts are counted from 1
    Notification.objects.filter(status=NotificationStatus.QUEUED, last_error="").update(attempts=0)

    alert_evaluate_all()

    # 6 delivered: 9 tried, too few to judge; 7 delivered: 3 of 10 failing, 30% > 25%.
    assert list(Alert.objects.values_list("scope", flat=True)) == (["sms"] if fires else [])


# --- one alert, its lifecycle and its messages ----------------------------------------------------------
def test_evaluating_twice_keeps_one_alert_and_tells_people_once(order, now, settings):
    settings.ALERT_EMAILS = ["ops@example.com", "Finance@Example.com"]
    settings.ALERT_SMS_NUMBERS = ["0712345678"]
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 25)

    first = alert_evaluate_all(now=now)
    second = alert_evaluate_all(now=now + dt.timedelta(seconds=60))

    assert (first, second) == ({"rules": 1, "opened": 1}, {"rules": 1, "still_open": 1})
    alert = Alert.objects.get()
    assert alert.last_seen_at == now + dt.timedelta(seconds=60)
    opened = messages(NotificationEvent.ALERT_OPENED)
    assert sorted(opened.values_list("channel", "recipient")) == [
        ("email", "Finance@Example.com"),
        ("email", "ops@example.com"),
        ("sms", "254712345678"),
    ]
    email = opened.filter(channel="email").first()
    assert email.subject == f"[Alert #{alert.pk}] {alert.title}"
    assert "Finished attempts: 25" in email.body and "Attempt success: 0.0%" in email.body
    assert f"/admin/reports/alert/{alert.pk}/change/" in email.body
    assert f"ALERT #{alert.pk}: M-Pesa attempt success 0.0%" in opened.get(channel="sms").body


def test_a_rule_without_sms_emails_only(order, now, settings, rules):
    settings.ALERT_SMS_NUMBERS = ["0712345678"]
    only(AlertKind.SUCCESS_RATE)
    AlertRule.objects.filter(kind=AlertKind.SUCCESS_RATE).update(sms=False)
    attempts(order, now, 20)

    alert_evaluate_all(now=now)

    assert list(messages(NotificationEvent.ALERT_OPENED).values_list("channel", flat=True)) == ["email"]


def test_an_unacknowledged_alert_is_reminded_about_once_per_interval(order, now, rules):
    only(AlertKind.SUCCESS_RATE)
    AlertRule.objects.filter(kind=AlertKind.SUCCESS_RATE).update(remind_after_minutes=5)
    attempts(order, now, 20, minutes_ago=1)

    alert_evaluate_all(now=now)
    alert_evaluate_all(now=now + dt.timedelta(minutes=4))
    assert not messages(NotificationEvent.ALERT_REMINDER).exists()
    assert alert_evaluate_all(now=now + dt.timedelta(minutes=5))["reminded"] == 1
    alert_evaluate_all(now=now + dt.timedelta(minutes=6))
    assert messages(NotificationEvent.ALERT_REMINDER).count() == 1
    alert = Alert.objects.get()
    assert (alert.reminders_sent, alert.last_reminded_at) == (1, now + dt.timedelta(minutes=5))

    alert_acknowledge(alert_id=alert.pk, actor=_staff("acknowledge_alert"))
    alert_evaluate_all(now=now + dt.timedelta(minutes=20))
    assert messages(NotificationEvent.ALERT_REMINDER).count() == 1  # someone is on it


def test_an_alert_resolves_by_itself_once_clear_for_a_while_and_says_so(order, now):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 20)
    alert_evaluate_all(now=now)
    alert = Alert.objects.get()

    attempts(order, now + dt.timedelta(minutes=1), 20, status="completed", minutes_ago=0)  # 50%: clear
    assert alert_evaluate_all(now=now + dt.timedelta(minutes=2))["clearing"] == 1
    alert.refresh_from_db()
    assert (alert.status, alert.clear_since) == (AlertStatus.OPEN, now + dt.timedelta(minutes=2))
    assert alert_evaluate_all(now=now + dt.timedelta(minutes=11))["clearing"] == 1
    assert alert_evaluate_all(now=now + dt.timedelta(minutes=12))["resolved"] == 1

    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by is None
    assert alert.resolution_note.startswith("Resolved by itself: the condition has been clear since")
    assert alert.latest_figures["attempt_success"] == 0.5
    resolved = messages(NotificationEvent.ALERT_RESOLVED).get()
    assert resolved.subject == f"[Alert #{alert.pk} resolved] {alert.title}"
    assert "Resolved by itself" in resolved.body


def test_a_condition_back_before_the_while_keeps_the_alert_open(order, now):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 20, minutes_ago=1)
    alert_evaluate_all(now=now)
    attempts(order, now + dt.timedelta(minutes=1), 20, status="completed", minutes_ago=0)
    alert_evaluate_all(now=now + dt.timedelta(minutes=2))  # clear for now
    attempts(order, now + dt.timedelta(minutes=3), 30, minutes_ago=0)  # failing again

    alert_evaluate_all(now=now + dt.timedelta(minutes=4))

    alert = Alert.objects.get()
    assert (alert.status, alert.clear_since) == (AlertStatus.OPEN, None)
    assert not messages(NotificationEvent.ALERT_RESOLVED).exists()


def test_switching_a_rule_off_resolves_its_alerts(order, now):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 20)
    alert_evaluate_all(now=now)
    AlertRule.objects.filter(kind=AlertKind.SUCCESS_RATE).update(enabled=False)

    alert_evaluate_all(now=now)

    alert = Alert.objects.get()
    assert alert.status == AlertStatus.RESOLVED
    assert alert.resolution_note == "Resolved by itself: its rule was switched off."


def test_a_resolved_alert_is_followed_by_a_new_one_if_the_condition_still_holds(order, now):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 20)
    alert_evaluate_all(now=now)
    first = Alert.objects.get()
    alert_resolve(alert_id=first.pk, actor=_staff("resolve_alert"), note="Restarted the callback proxy")

    alert_evaluate_all(now=now + dt.timedelta(minutes=1))

    assert Alert.objects.filter(status=AlertStatus.OPEN).exclude(pk=first.pk).count() == 1
    assert messages(NotificationEvent.ALERT_OPENED).count() == 2  # one per alert


def test_a_broken_rule_does_not_stop_the_others(order, now, rules, monkeypatch):
    only(AlertKind.SUCCESS_RATE, AlertKind.QUEUE_BACKLOG)
    attempts(order, now, 20)

    def broken(rule, evaluation):
        raise RuntimeError("the broker is down")

    monkeypatch.setitem(checks.CHECKS, AlertKind.QUEUE_BACKLOG, broken)
    done = alert_evaluate_all(now=now)

    assert done == {"rules": 1, "opened": 1, "errors": 1}


# --- staff -------------------------------------------------------------------------------------------
def _staff(*codenames, username="duty"):
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_alert", *codenames]))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def open_alert(order, now):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, now, 20)
    alert_evaluate_all(now=now)
    return Alert.objects.get()


def test_acknowledging_needs_the_permission_and_records_who_and_when(open_alert):
    with pytest.raises(PermissionDenied):
        alert_acknowledge(alert_id=open_alert.pk, actor=_staff(username="viewer"))
    duty = _staff("acknowledge_alert")

    alert = alert_acknowledge(alert_id=open_alert.pk, actor=duty)

    assert (alert.status, alert.acknowledged_by) == (AlertStatus.ACKNOWLEDGED, duty)
    assert alert.acknowledged_at is not None
    with pytest.raises(AlertError, match="already acknowledged by duty"):
        alert_acknowledge(alert_id=open_alert.pk, actor=duty)


def test_resolving_needs_the_permission_and_a_note(open_alert):
    with pytest.raises(PermissionDenied):
        alert_resolve(alert_id=open_alert.pk, actor=_staff("acknowledge_alert"), note="Fixed")
    duty = _staff("resolve_alert", username="lead")
    with pytest.raises(AlertError, match="Say what was done"):
        alert_resolve(alert_id=open_alert.pk, actor=duty, note="  ")

    alert = alert_resolve(alert_id=open_alert.pk, actor=duty, note="Safaricom confirmed an outage")

    assert (alert.status, alert.resolved_by) == (AlertStatus.RESOLVED, duty)
    assert alert.resolution_note == "Resolved by lead: Safaricom confirmed an outage"
    assert messages(NotificationEvent.ALERT_RESOLVED).count() == 1
    with pytest.raises(AlertError, match="already resolved"):
        alert_resolve(alert_id=open_alert.pk, actor=duty, note="again")
    with pytest.raises(AlertError):
        alert_acknowledge(alert_id=open_alert.pk, actor=_staff("acknowledge_alert"))


def test_admin_actions_change_nothing_on_get_and_act_on_post(open_alert, admin_client):
    urls = [url for url in action_urls() if "/reports/alert/" in url]
    assert {url.rstrip("/").rsplit("/", 1)[-1] for url in urls} == {"acknowledge", "resolve"}
    before = snapshot()
    for url in urls:
        for params in ({}, {"_form_submitted": "on", "note": "crafted"}):
            assert admin_client.get(url, params).status_code in (200, 403, 404)
            assert snapshot() == before, url

    acknowledge = reverse("admin:reports_alert_acknowledge", args=[open_alert.pk])
    response, said = post_action(admin_client, acknowledge)
    assert response["HX-Redirect"] == reverse("admin:reports_alert_change", args=[open_alert.pk])
    assert said == [f"Alert #{open_alert.pk} acknowledged."]
    resolve = reverse("admin:reports_alert_resolve", args=[open_alert.pk])
    refused = dialog_post(admin_client, resolve, note="")
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    post_action(admin_client, resolve, note="Callback URL fixed")
    open_alert.refresh_from_db()
    assert open_alert.status == AlertStatus.RESOLVED


def test_the_alert_list_and_rules_pages_open(open_alert, admin_client):
    listed = admin_client.get(reverse("admin:reports_alert_changelist"), {"active": "yes"})
    assert listed.status_code == 200 and open_alert.title in listed.content.decode()
    page = admin_client.get(reverse("admin:reports_alert_change", args=[open_alert.pk]))
    assert page.status_code == 200 and "Finished attempts: 20" in page.content.decode()
    rules = admin_client.get(reverse("admin:reports_alertrule_change", args=[open_alert.rule_id]))
    assert rules.status_code == 200 and "Attempt success below" in rules.content.decode()
    sidebar = admin_client.get(reverse("admin:index")).content.decode()
    assert "?active=yes" in sidebar


def test_the_dashboard_shows_open_alerts_to_those_who_may_see_them(open_alert, admin_client, client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert 'data-testid="open-alerts"' in html and "1 open alert" in html
    assert f'data-alert="{open_alert.pk}"' in html and "border-red-600" in html  # red: nobody is on it

    clerk = _staff(username="clerk")
    clerk.user_permissions.remove(Permission.objects.get(codename="view_alert"))
    client.force_login(clerk)
    assert 'data-testid="open-alerts"' not in client.get(reverse("admin:index")).content.decode()

    alert_acknowledge(alert_id=open_alert.pk, actor=_staff("acknowledge_alert"))
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "1 open alert, acknowledged" in html and "acknowledged by duty" in html
    assert "border-red-600" not in html and "border-orange-700" in html


def test_the_dashboard_says_when_no_alert_is_open(admin_client):
    assert "No open alerts." in admin_client.get(reverse("admin:index")).content.decode()


# --- schedule and command ------------------------------------------------------------------------------
def test_the_evaluation_runs_every_minute_from_one_schedule(order):
    ensure_alert_schedules()
    ensure_alert_schedules()

    schedule = Schedule.objects.get(name="reports-alerts")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "reports.alerts.tasks.evaluate_alerts",
        Schedule.MINUTES,
        1,
    )
    only(AlertKind.SUCCESS_RATE)
    attempts(order, timezone.now(), 20)
    async_task(schedule.func, sync=True)
    assert Alert.objects.filter(status=AlertStatus.OPEN).count() == 1


def test_evaluate_alerts_runs_now_and_lists_open_alerts(order, capsys):
    only(AlertKind.SUCCESS_RATE)
    attempts(order, timezone.now(), 20)

    call_command("evaluate_alerts")

    out = capsys.readouterr().out
    assert "Alert rules evaluated: opened 1, rules 1." in out
    assert "[Open] M-Pesa success rate: M-Pesa attempt success 0.0%" in out


def test_the_seeded_rules_take_their_thresholds_from_the_settings(settings):
    settings.ALERT_WINDOW_MINUTES, settings.ALERT_MIN_ATTEMPTS = 15, 40
    settings.ALERT_SUCCESS_FLOOR, settings.ALERT_TECHNICAL_FLOOR = 0.6, 0.9
    settings.ALERT_CALLBACK_SILENCE_MINUTES = 8

    seeded = {rule["kind"]: rule for rule in default_rules()}

    success = seeded[AlertKind.SUCCESS_RATE]
    assert (success["window_minutes"], success["min_volume"]) == (15, 40)
    assert (success["threshold"], success["technical_threshold"]) == (0.6, 0.9)
    silence = seeded[AlertKind.CALLBACK_SILENCE]
    assert (silence["window_minutes"], silence["min_volume"]) == (8, 5)
    assert set(seeded) == set(AlertKind.values)
    for rule in default_rules():
        AlertRule(**rule).full_clean(exclude=["name"])


# --- the whole story, through the services ---------------------------------------------------------------
def test_customers_cancelling_open_an_alert_that_resolves_when_payments_succeed_again(
    fake_daraja, place_order, client, django_capture_on_commit_callbacks
):
    only(AlertKind.SUCCESS_RATE)
    hook = reverse("payments:stk-callback", kwargs={"token": callback_token()})

    def customers(count: int, result_code: int) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            for index in range(count):
                _order, payment = place_order()
                receipt = f"SGR{index + 1:07d}"
                body = stk_callback(payment.checkout_request_id, result_code=result_code, receipt=receipt)
                client.post(hook, json.dumps(body), content_type="application/json")

    customers(25, 1032)
    with django_capture_on_commit_callbacks(execute=True):
        alert_evaluate_all()
    alert = alerts_of(AlertKind.SUCCESS_RATE).get()
    email = messages(NotificationEvent.ALERT_OPENED).get()
    assert email.recipient == "ops@example.com" and email.status == NotificationStatus.SENT

    customers(30, 0)  # 30 of 55 paid: 54.5%, above the floor
    later = timezone.now()
    alert_evaluate_all(now=later)
    alert_evaluate_all(now=later + dt.timedelta(minutes=10))

    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert alert.latest_figures["completed"] == 30


# --- races -------------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_open_one_alert_and_tell_people_once(api_user):
    only(AlertKind.SUCCESS_RATE)
    now = timezone.now()
    attempts(dataset.order(api_user), now, 20)
    threads = 6
    barrier = threading.Barrier(threads)
    results: list = [None] * threads

    def evaluate(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = alert_evaluate_all(now=now)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    running = [threading.Thread(target=evaluate, args=(i,)) for i in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=60)

    assert not any(isinstance(result, Exception) for result in results), results
    assert sum(result.get("opened", 0) for result in results) == 1
    # The others found it open, or lost the insert to the constraint and left the winner's alert alone.
    assert all(result.get("opened", 0) + result.get("still_open", 0) + result.get("already_open", 0) == 1
               for result in results), results  # fmt: skip
    assert Alert.objects.count() == 1
    assert messages(NotificationEvent.ALERT_OPENED).count() == 1
