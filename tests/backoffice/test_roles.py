"""The four staff roles exist with the permissions backoffice.roles defines; a superuser's edits stay."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from backoffice import roles


def _perms(group: Group) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


@pytest.mark.django_db
def test_each_role_holds_exactly_its_permissions():
    for name, expected in roles.ROLES.items():
        assert _perms(Group.objects.get(name=name)) == set(expected), name


@pytest.mark.django_db
def test_no_role_administers_users_roles_tokens_or_settings():
    for name in roles.ROLES:
        held = _perms(Group.objects.get(name=name))
        assert not {p for p in held if p.startswith(("auth.", "axes.", "django_q."))}, name
        assert not {p for p in held if p.startswith("backoffice.") and not p.startswith("backoffice.view_")}
        assert not {
            p
            for p in held
            if p.startswith("audit.") and p.split(".")[1].startswith(("add_", "change_", "delete_"))
        }


@pytest.mark.django_db
def test_a_missing_role_comes_back_on_migrate_and_an_edited_one_is_kept():
    Group.objects.filter(name=roles.VIEWER).delete()
    manager = Group.objects.get(name=roles.MANAGER)
    manager.permissions.remove(Permission.objects.get(codename="approve_refund"))

    call_command("migrate", verbosity=0)

    assert _perms(Group.objects.get(name=roles.VIEWER)) == set(roles.ROLES[roles.VIEWER])
    assert "payments.approve_refund" not in _perms(Group.objects.get(name=roles.MANAGER))
