"""Users, roles and the task queue are administered by superusers alone, whatever permissions a role holds."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse


@pytest.fixture
def staff_with_auth_permissions(django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw-123456789", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["auth", "django_q"]))
    return django_user_model.objects.get(pk=user.pk)


def test_staff_holding_user_permissions_still_cannot_administer_users_or_roles(
    client, staff_with_auth_permissions, admin_user
):
    client.force_login(staff_with_auth_permissions)
    for url in (
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_user_change", args=[staff_with_auth_permissions.pk]),
        reverse("admin:auth_group_changelist"),
        reverse("admin:django_q_schedule_changelist"),
    ):
        assert client.get(url).status_code == 403, url

    # Making oneself a superuser through the change form is refused.
    change = reverse("admin:auth_user_change", args=[staff_with_auth_permissions.pk])
    client.post(change, {"username": "clerk", "is_superuser": "on", "is_staff": "on", "is_active": "on"})
    staff_with_auth_permissions.refresh_from_db()
    assert not staff_with_auth_permissions.is_superuser


def test_superusers_administer_users_and_roles(admin_client):
    assert admin_client.get(reverse("admin:auth_user_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:auth_group_changelist")).status_code == 200
