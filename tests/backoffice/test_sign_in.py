"""Staff sign-in through the real login form: audit records, django-axes throttling per account and per
address, the lockout page, superusers lifting a lockout, and idle sessions expiring.

`client.login()` bypasses the form and gives django-axes no request (it refuses), so these tests post the form.
"""

import datetime as dt

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from backoffice import roles
from tests.backoffice.test_deploy_settings import settings_of

PASSWORD = "correct-horse-battery-9"
LOGIN = reverse("admin:login")


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=roles.VIEWER))
    return user


def sign_in(client, username: str, password: str, *, address: str = "127.0.0.1"):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address
    )


def signed_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def fail_until_locked(client, usernames, *, address: str = "127.0.0.1"):
    responses = [sign_in(client, username, "wrong-password", address=address) for username in usernames]
    assert [r.status_code for r in responses[:-1]] == [200] * (len(responses) - 1)  # the form, with an error
    return responses[-1]


def test_a_sign_in_is_recorded_with_who_and_from_where(client, viewer):
    response = sign_in(client, "viewer", PASSWORD)

    assert response.status_code == 302 and response.url == "/admin/"
    assert signed_in(client)
    entry = AuditEntry.objects.get(action=AuditAction.LOGIN_SUCCEEDED)
    assert entry.actor == viewer and entry.ip == "127.0.0.1"


def test_a_failed_sign_in_is_recorded_with_the_username_and_never_the_password(client, viewer):
    response = sign_in(client, "viewer", "wrong-password")

    assert response.status_code == 200 and not signed_in(client)
    entry = AuditEntry.objects.get(action=AuditAction.LOGIN_FAILED)
    assert entry.actor is None and entry.ip == "127.0.0.1" and entry.data["username"] == "viewer"
    assert "wrong-password" not in repr(list(AuditEntry.objects.values()))
    assert "wrong-password" not in repr(list(AccessAttempt.objects.values()))


def test_the_failure_limit_locks_the_account_even_for_the_right_password(client, viewer):
    limit = settings.AXES_FAILURE_LIMIT

    locked = fail_until_locked(client, ["viewer"] * limit)

    assert locked.status_code == 429
    refused = sign_in(client, "viewer", PASSWORD)
    assert refused.status_code == 429 and not signed_in(client)
    assert "Too many failed sign-ins" in refused.content.decode()
    # From another address too: the account itself is locked.
    assert sign_in(Client(), "viewer", PASSWORD, address="10.1.2.3").status_code == 429
    lockout = AuditEntry.objects.filter(action=AuditAction.LOGIN_LOCKED_OUT).earliest("at", "pk")
    assert lockout.data["username"] == "viewer" and lockout.ip == "127.0.0.1"


def test_the_failure_limit_also_locks_an_address_whatever_username_it_tries(client, viewer):
    guesses = [f"guess{n}" for n in range(settings.AXES_FAILURE_LIMIT)]

    assert fail_until_locked(client, guesses, address="10.9.9.9").status_code == 429

    assert sign_in(client, "viewer", PASSWORD, address="10.9.9.9").status_code == 429
    elsewhere = Client()
    assert sign_in(elsewhere, "viewer", PASSWORD).status_code == 302  # the account is not locked
    assert signed_in(elsewhere)


def test_the_lockout_page_looks_like_the_sign_in_page_and_says_when_to_try_again(client, viewer):
    fail_until_locked(client, ["viewer"] * settings.AXES_FAILURE_LIMIT)

    page = sign_in(client, "viewer", PASSWORD)

    html = page.content.decode()
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert page.status_code == 429 and "admin/locked_out.html" in [t.name for t in page.templates]
    assert f"Try again in {minutes} minutes or ask an administrator" in html
    assert settings.UNFOLD["SITE_TITLE"] in html  # the admin's context: title, theme colours, styles
    assert "unfold-theme-colors" in html and "unfold/css/styles.css" in html
    assert f'href="{LOGIN}"' in html


def test_superusers_see_the_attempts_and_lift_a_lockout_a_viewer_does_not(client, admin_client, viewer):
    client.force_login(viewer)  # first: a sign-in resets the account's failures (AXES_RESET_ON_SUCCESS)
    fail_until_locked(Client(), ["viewer"] * settings.AXES_FAILURE_LIMIT)
    attempts = reverse("admin:axes_accessattempt_changelist")

    assert client.get(attempts).status_code == 403
    assert client.get(reverse("admin:axes_accesslog_changelist")).status_code == 403
    assert "Sign-in lockouts" not in client.get("/admin/").content.decode()
    listed = admin_client.get(attempts)
    assert listed.status_code == 200 and "viewer" in listed.content.decode()
    assert "Sign-in lockouts" in admin_client.get("/admin/").content.decode()
    assert admin_client.get(reverse("admin:axes_accesslog_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:axes_accessfailurelog_changelist")).status_code == 200

    for attempt in AccessAttempt.objects.filter(username="viewer"):
        delete = reverse("admin:axes_accessattempt_delete", args=[attempt.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403  # not a Viewer's to lift
        assert admin_client.post(delete, {"post": "yes"}).status_code == 302

    assert not AccessAttempt.objects.filter(username="viewer").exists()
    assert sign_in(Client(), "viewer", PASSWORD).status_code == 302


def test_sessions_expire_after_the_idle_hours_and_every_request_renews_them(client, viewer):
    idle = dt.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert idle == dt.timedelta(hours=8)  # STAFF_SESSION_IDLE_HOURS's default
    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert sign_in(client, "viewer", PASSWORD).status_code == 302
        for _ in range(3):  # 21 hours signed in, never 8 idle
            clock.shift(idle - dt.timedelta(hours=1))
            response = client.get("/admin/")
            assert response.status_code == 200
            assert response.cookies["sessionid"]["max-age"] == settings.SESSION_COOKIE_AGE  # renewed

        clock.shift(idle + dt.timedelta(minutes=1))
        response = client.get("/admin/")

    assert response.status_code == 302 and response.url.startswith(LOGIN)


def test_idle_hours_and_the_failure_limit_come_from_the_environment():
    defaults = settings_of({}, "SESSION_COOKIE_AGE", "SESSION_SAVE_EVERY_REQUEST", "AXES_FAILURE_LIMIT")
    chosen = settings_of(
        {"STAFF_SESSION_IDLE_HOURS": "0.5", "AXES_FAILURE_LIMIT": "3", "AXES_ENABLED": "false"},
        "SESSION_COOKIE_AGE",
        "AXES_FAILURE_LIMIT",
        "AXES_ENABLED",
    )

    assert defaults == {
        "SESSION_COOKIE_AGE": 8 * 3600,
        "SESSION_SAVE_EVERY_REQUEST": True,
        "AXES_FAILURE_LIMIT": 5,
    }
    assert chosen == {"SESSION_COOKIE_AGE": 1800, "AXES_FAILURE_LIMIT": 3, "AXES_ENABLED": False}
