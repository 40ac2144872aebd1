from io import StringIO

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from orders.models import Product
from tests.conftest import ApiClient


def seed(tmp_path) -> str:
    out = StringIO()
    call_command(
        "seed_demo",
        token_file=str(tmp_path / "token"),
        logins_file=str(tmp_path / "logins.txt"),
        stdout=out,
    )
    return out.getvalue()


def test_seed_demo_can_run_twice_without_duplicating_anything(db, tmp_path, client):
    seed(tmp_path)
    Product.objects.filter(sku="DEMO-001").update(price="99.00")

    output = seed(tmp_path)

    assert Product.objects.count() == 5
    assert Product.objects.get(sku="DEMO-001").price == 10  # demo prices restored
    users = get_user_model().objects
    assert users.filter(username__in=["admin", "finance", "storefront"]).count() == 3
    assert Group.objects.filter(name="Finance").count() == 1
    assert users.get(username="finance").groups.get().name == "Finance"
    assert users.get(username="admin").is_superuser
    assert client.login(username="admin", password="admin")  # the password was not reset to something else
    assert "product 1 costs KES 10.00" in output


def test_seed_demo_token_file_holds_a_working_storefront_token(db, tmp_path):
    seed(tmp_path)

    token = (tmp_path / "token").read_text().strip()

    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert ApiClient(token).get("/api/v1/orders/1").status_code == 404  # authenticated, nothing there
    assert "admin / admin" in (tmp_path / "logins.txt").read_text()
