"""The sidebar offers each person only the pages they may open."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from backoffice import roles


@pytest.fixture
def sidebar_links(client, django_user_model):
    def links(role: str | None) -> str:
        if role is None:
            user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-123456789")
        else:
            user = django_user_model.objects.create_user(role.lower(), password="pw-123456789", is_staff=True)
            user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client.get(reverse("admin:index")).content.decode()

    return links


def _has(page: str, name: str) -> bool:
    return f'href="{reverse(name)}' in page


@pytest.mark.django_db
def test_a_viewer_is_offered_only_what_a_viewer_may_open(sidebar_links):
    page = sidebar_links(roles.VIEWER)
    for allowed in (
        "admin:payments_payment_changelist",
        "admin:payments_refund_changelist",
        "admin:orders_order_changelist",
        "admin:audit_auditentry_changelist",
    ):
        assert _has(page, allowed), allowed
    for refused in (
        "admin:auth_user_changelist",
        "admin:auth_group_changelist",
        "admin:django_q_schedule_changelist",
        "admin:payments_callbackinbox_changelist",
        "admin:notifications_messagetemplate_changelist",
        "admin:reports_alertrule_changelist",
        "admin:exports_export_changelist",
        "admin:axes_accessattempt_changelist",
    ):
        assert not _has(page, refused), refused


@pytest.mark.django_db
def test_every_sidebar_link_a_role_sees_opens(sidebar_links, client):
    import re

    for role in roles.ROLES:
        page = sidebar_links(role)
        found = set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)[^"]*"', page))
        assert len(found) >= 4, (role, found)
        for link in found:
            assert client.get(link).status_code == 200, (role, link)


@pytest.mark.django_db
def test_superusers_are_offered_users_roles_and_lockouts(sidebar_links):
    page = sidebar_links(None)
    for name in (
        "admin:auth_user_changelist",
        "admin:auth_group_changelist",
        "admin:axes_accessattempt_changelist",
    ):
        assert _has(page, name), name
