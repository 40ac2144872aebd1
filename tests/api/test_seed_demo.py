from io import StringIO

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from backoffice import roles
from orders.models import Product
from tests.conftest import ApiClient

# Demo logins (username = password) and their role; None: the superuser.
LOGINS = {
    "admin": None,
    "viewer": roles.VIEWER,
    "operator": roles.OPERATOR,
    "manager": roles.MANAGER,
    "manager2": roles.MANAGER,
    "auditor": roles.AUDITOR,
}


def seed(tmp_path) -> str:
    out = StringIO()
    call_command(
        "seed_demo",
        token_file=str(tmp_path / "token"),
        logins_file=str(tmp_path / "logins.txt"),
        stdout=out,
    )
    return out.getvalue()


def sign_in(client, username: str, password: str):
    """Through the login form: django-axes needs the request that client.login() does not give it."""
    return client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"}
    )


def test_seed_demo_can_run_twice_without_duplicating_anything(db, tmp_path, client):
    seed(tmp_path)
    Product.objects.filter(sku="DEMO-001").update(price="99.00")

    output = seed(tmp_path)

    assert Product.objects.count() == 5
    assert Product.objects.get(sku="DEMO-001").price == 10  # demo prices restored
    users = get_user_model().objects
    assert users.filter(username__in=[*LOGINS, "storefront"]).count() == len(LOGINS) + 1
    assert Group.objects.filter(name__in=roles.ROLES).count() == len(roles.ROLES)
    assert users.get(username="admin").is_superuser
    assert sign_in(client, "admin", "admin").url == "/admin/"  # the password was not reset to another
    assert "product 1 costs KES 10.00" in output


def test_seed_demo_makes_one_login_per_role_with_the_role_s_permissions(db, tmp_path, client):
    seed(tmp_path)

    users = get_user_model().objects
    for username, role in LOGINS.items():
        user = users.get(username=username)
        assert user.is_staff and user.is_active, username
        if role is None:
            assert user.is_superuser
            continue
        assert not user.is_superuser and [g.name for g in user.groups.all()] == [role], username
        assert {p for p in user.get_all_permissions() if not p.startswith("auth.")} == roles.ROLES[role]
        assert sign_in(client, username, username).url == "/admin/", username  # username = password
        assert client.get("/admin/").status_code == 200
        client.logout()
    assert users.get(username="viewer").has_perm("payments.view_payment")
    assert not users.get(username="viewer").has_perm("orders.view_full_phone")
    assert users.get(username="manager2").has_perm("payments.approve_refund")
    logins = (tmp_path / "logins.txt").read_text()
    assert all(f"{username} / {username}" in logins for username in LOGINS)


def test_seed_demo_leaves_an_older_finance_login_and_group_alone(db, tmp_path, django_user_model):
    legacy = Group.objects.create(name="Finance")
    finance = django_user_model.objects.create_user("finance", password="finance", is_staff=True)
    finance.groups.add(legacy)

    output = seed(tmp_path)

    assert Group.objects.filter(name="Finance").exists()
    assert django_user_model.objects.get(username="finance").groups.get() == legacy
    assert "finance" not in output and "finance" not in (tmp_path / "logins.txt").read_text()


def test_seed_demo_token_file_holds_a_working_storefront_token(db, tmp_path):
    seed(tmp_path)

    token = (tmp_path / "token").read_text().strip()

    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert ApiClient(token).get("/api/v1/orders/1").status_code == 404  # authenticated, nothing there
    assert "admin / admin" in (tmp_path / "logins.txt").read_text()
