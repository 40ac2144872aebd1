from io import StringIO

from django.core.management import call_command

from backoffice.models import ApiToken
from tests.conftest import ApiClient, order_body


def issue(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("issue_api_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_issue_api_token_prints_only_the_token_and_the_token_works(products):
    out, err = issue("kiosk")

    token = out.strip()
    assert out == token + "\n"
    assert token.startswith("bo_") and " " not in token
    assert "kiosk" in err  # "Created user" goes to stderr, so `$(manage.py issue_api_token x)` is the token
    stored = ApiToken.objects.get(user__username="kiosk")
    assert token not in (stored.key_hash, stored.key_prefix)  # only a hash is kept
    response = ApiClient(token).post_json(
        "/api/v1/orders", order_body(product_id=products[0].pk, method="cod")
    )
    assert response.status_code == 201


def test_each_token_issued_for_a_user_keeps_working(db):
    first = issue("kiosk")[0].strip()
    second, err = issue("kiosk")

    assert err == ""
    assert first != second.strip()
    for token in (first, second.strip()):
        assert ApiClient(token).get("/api/v1/orders/12345").status_code == 404  # authenticated, not 401


def test_staff_token_sees_orders_placed_by_others(fake_daraja, api_client, products):
    order_id = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk)).json()["order"][
        "id"
    ]
    staff_token = issue("ops", "--staff", "--name", "ops laptop")[0].strip()

    assert ApiClient(staff_token).get(f"/api/v1/orders/{order_id}").status_code == 200
    assert ApiToken.objects.get(user__username="ops").name == "ops laptop"
