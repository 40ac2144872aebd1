"""Edits of message templates, notification rules, alert rules, report subscriptions, roles, users and API
tokens are recorded with their before/after, by whoever made them in the admin and from where; a password
is recorded as changed, never with its hash; a save that changes nothing records nothing."""

import json

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from audit.models import AuditAction, AuditEntry
from backoffice.models import ApiToken
from backoffice.services import api_token_issue
from notifications.models import MessageTemplate, NotificationRule
from reports.models import AlertRule, ReportSubscription

pytestmark = pytest.mark.django_db


def records_of(obj, action: str | None = None):
    entries = AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    ).order_by("pk")
    return entries.filter(action=action) if action else entries


def the_record(obj, action: str) -> AuditEntry:
    entries = list(records_of(obj, action))
    assert len(entries) == 1, entries
    return entries[0]


def form_data(instance, names) -> dict:
    """What the admin change form posts for these fields as they are now (an unticked box is left out)."""
    data = {}
    for name in names:
        value = getattr(instance, name)
        if value is True:
            data[name] = "on"
        elif value is not False:
            data[name] = "" if value is None else str(value)
    return data


def change(admin_client, obj, data: dict):
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    return response


# --- what customers are told ------------------------------------------------------------------------------
TEMPLATE_FIELDS = ["event", "channel", "language", "subject", "body", "html_body"]


def test_a_template_edited_in_the_admin_records_the_text_before_and_after(admin_client, admin_user):
    template = MessageTemplate.objects.get(event="payment_completed", channel="sms", language="en")
    before = template.body

    change(admin_client, template, {**form_data(template, TEMPLATE_FIELDS), "body": before + " Asante!"})

    entry = the_record(template, AuditAction.CHANGED)
    assert (entry.actor, entry.ip) == (admin_user, "127.0.0.1")
    assert entry.changes == {"body": {"before": before, "after": before + " Asante!"}}


def test_saving_a_template_unchanged_records_nothing(admin_client):
    template = MessageTemplate.objects.get(event="payment_completed", channel="sms", language="en")

    change(admin_client, template, form_data(template, TEMPLATE_FIELDS))
    template.save()

    assert not records_of(template).exists()


def test_a_notification_rule_switched_off_records_it(admin_client, admin_user):
    rule = NotificationRule.objects.filter(enabled=True).order_by("pk").first()

    change(admin_client, rule, {})  # the one editable box, unticked

    entry = the_record(rule, AuditAction.CHANGED)
    assert entry.actor == admin_user
    assert entry.changes == {"enabled": {"before": True, "after": False}}


def test_a_deleted_template_keeps_its_text_in_the_record(db):
    template = MessageTemplate.objects.get(event="payment_completed", channel="sms", language="en")
    body, pk = template.body, template.pk

    template.delete()

    entry = AuditEntry.objects.get(action=AuditAction.DELETED, object_id=str(pk))
    assert entry.changes["body"] == {"before": body, "after": None}


# --- what alerts and reports watch, and whom they reach ----------------------------------------------------
ALERT_RULE_FIELDS = [
    "name",
    "kind",
    "enabled",
    "window_minutes",
    "min_volume",
    "threshold",
    "technical_threshold",
    "baseline_points",
    "baseline_days",
    "grace_seconds",
    "remind_after_minutes",
    "resolve_after_minutes",
    "sms",
]


def test_an_alert_rule_edited_in_the_admin_records_the_figures_before_and_after(admin_client, admin_user):
    rule = AlertRule.objects.filter(kind="success_rate").get()

    change(admin_client, rule, {**form_data(rule, ALERT_RULE_FIELDS), "window_minutes": "45", "sms": ""})

    entry = the_record(rule, AuditAction.CHANGED)
    assert entry.actor == admin_user
    assert entry.changes == {
        "window_minutes": {"before": rule.window_minutes, "after": 45},
        "sms": {"before": rule.sms, "after": False},
    }


@pytest.fixture
def finance(django_user_model):
    return django_user_model.objects.create_user("finance", email="finance@example.com", is_staff=True)


def test_a_report_subscription_records_its_creation_its_edits_and_its_recipients(
    admin_client, admin_user, finance, django_user_model
):
    cfo = django_user_model.objects.create_user("cfo", email="cfo@example.com", is_staff=True)
    form = {"name": "Weekly finance", "frequency": "weekly", "send_at": "08:00", "weekday": "0",
            "file_format": "both", "recipients": [finance.pk], "extra_emails": "", "active": "on"}  # fmt: skip
    admin_client.post(reverse("admin:reports_reportsubscription_add"), form)
    subscription = ReportSubscription.objects.get()

    created = the_record(subscription, AuditAction.CREATED)
    assert created.actor == admin_user
    assert created.changes["frequency"] == {"before": None, "after": "weekly"}
    assert records_of(subscription, AuditAction.CHANGED).get().changes == {
        "recipients": {"added": ["finance"], "removed": []}
    }

    change(admin_client, subscription, {**form, "recipients": [cfo.pk], "extra_emails": "board@example.com"})

    changes = [entry.changes for entry in records_of(subscription, AuditAction.CHANGED)[1:]]
    assert {"extra_emails": {"before": "", "after": "board@example.com"}} in changes
    assert {"recipients": {"added": [], "removed": ["finance"]}} in changes
    assert {"recipients": {"added": ["cfo"], "removed": []}} in changes
    assert len(changes) == 3  # keeping its schedule in step is no edit


# --- who may sign in and what they may do ------------------------------------------------------------------
def test_a_permission_given_to_a_role_in_the_admin_records_its_name(admin_client, admin_user):
    role = Group.objects.create(name="Cashiers")
    approve = Permission.objects.get(codename="approve_refund")

    change(admin_client, role, {"name": "Cashiers", "permissions": [approve.pk]})

    entry = the_record(role, AuditAction.PERMISSIONS_CHANGED)
    assert (entry.actor, entry.ip) == (admin_user, "127.0.0.1")
    assert entry.changes == {"permissions": {"added": [str(approve)], "removed": []}}
    assert not records_of(role, AuditAction.CHANGED).exists()  # the name stayed


def test_a_user_joining_and_leaving_a_role_records_it_from_either_side(django_user_model):
    role = Group.objects.create(name="Cashiers")
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)

    clerk.groups.add(role)
    role.user_set.remove(clerk)
    role.user_set.add(clerk)
    clerk.groups.clear()

    assert [entry.changes for entry in records_of(clerk, AuditAction.PERMISSIONS_CHANGED)] == [
        {"groups": {"added": ["Cashiers"], "removed": []}},
        {"groups": {"added": [], "removed": ["Cashiers"]}},
        {"groups": {"added": ["Cashiers"], "removed": []}},
        {"groups": {"added": [], "removed": ["Cashiers"]}},
    ]


def test_a_user_edited_records_the_fields_that_changed(django_user_model):
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    created = the_record(clerk, AuditAction.CREATED)
    assert created.changes["username"] == {"before": None, "after": "clerk"}
    assert created.changes["password"] == {"before": None, "after": "(hidden)"}

    clerk.is_staff, clerk.is_active = False, False
    clerk.save()

    assert the_record(clerk, AuditAction.CHANGED).changes == {
        "is_active": {"before": True, "after": False},
        "is_staff": {"before": True, "after": False},
    }


def test_a_password_changed_in_the_admin_is_recorded_without_any_hash(
    admin_client, admin_user, django_user_model
):
    clerk = django_user_model.objects.create_user("clerk", password="old-Passw0rd!", is_staff=True)
    old_hash = clerk.password
    url = reverse("admin:auth_user_password_change", args=[clerk.pk])

    response = admin_client.post(
        url, {"usable_password": "true", "password1": "N3w-passw0rd-2026", "password2": "N3w-passw0rd-2026"}
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    clerk.refresh_from_db()
    assert clerk.password != old_hash
    entry = the_record(clerk, AuditAction.CHANGED)
    assert entry.actor == admin_user
    assert entry.changes == {"password": {"before": "(hidden)", "after": "(changed)"}}
    stored = json.dumps([entry.changes, entry.data, entry.reason])
    assert old_hash not in stored and clerk.password not in stored and "md5$" not in stored


def test_signing_in_and_a_rehashed_password_record_no_edit(client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    # A hash Django wants to upgrade (too short a salt): checking the password re-hashes and saves it.
    clerk.password = make_password("pw", salt="ab", hasher="md5")
    clerk.save()
    edits = records_of(clerk, AuditAction.CHANGED).count()
    assert edits == 1  # setting the hash directly is an edit

    # Signing in re-hashes the password, then writes last_login.
    response = client.post(reverse("admin:login"), {"username": "clerk", "password": "pw"})
    assert response.status_code == 302

    clerk.refresh_from_db()
    assert "$ab$" not in clerk.password and clerk.last_login is not None
    assert records_of(clerk, AuditAction.CHANGED).count() == edits


def test_an_api_token_renamed_in_the_admin_records_the_name(admin_client, admin_user):
    token, _raw, _created = api_token_issue(username="kiosk", name="Kiosk")

    change(admin_client, token, {"name": "Kiosk, front desk"})

    entry = the_record(token, AuditAction.CHANGED)
    assert entry.actor == admin_user
    assert entry.changes == {"name": {"before": "Kiosk", "after": "Kiosk, front desk"}}
    assert ApiToken.objects.get(pk=token.pk).name == "Kiosk, front desk"
