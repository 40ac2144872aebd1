"""API tokens: scopes, expiry, revocation; the command that issues them, the admin that revokes them, the
upgrade that gives existing tokens their scopes, and every API route declaring the scope it needs."""

import datetime as dt
import re
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from backoffice.api import api
from backoffice.exceptions import ApiTokenScopeMissing
from backoffice.models import ApiScope, ApiToken, hash_token
from backoffice.services import api_token_issue
from orders.models import Order
from payments.models import Refund
from tests.admin_support import dialog_post
from tests.conftest import ApiClient, order_body
from tests.payments import refunds_support as support
from tests.payments.refunds_support import staff_user

paid = support.paid
result_apis = support.result_apis

ORDERS = "/api/v1/orders"
UNAUTHORIZED = "A valid API token is required (Authorization: Bearer)."


def refunds_url(payment) -> str:
    return f"/api/v1/payments/{payment.pk}/refunds"


def token(username: str = "shopper", **options) -> str:
    return api_token_issue(username=username, **options)[1]


def assert_unauthorized(response) -> dict:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert error["fields"] == {}
    return error


def assert_forbidden(response, scope: str) -> dict:
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert f"'{scope}' scope" in error["message"]
    assert error["required_scope"] == scope
    assert response["WWW-Authenticate"] == f'Bearer error="insufficient_scope", scope="{scope}"'
    return error


# --- 401: unknown, revoked, expired, inactive user --------------------------------------------------
def test_an_expired_token_is_refused_and_the_message_says_it_expired(fake_daraja, products):
    raw = token(expires_days=1)
    ApiToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    response = ApiClient(raw).post_json(ORDERS, order_body(product_id=products[0].pk))

    error = assert_unauthorized(response)
    assert "expired" in error["message"]
    assert not Order.objects.exists()
    assert fake_daraja.pushes == []


def test_a_token_works_until_its_expiry(fake_daraja, products):
    raw = token(expires_days=30)

    response = ApiClient(raw).post_json(ORDERS, order_body(product_id=products[0].pk))

    assert response.status_code == 201, response.content


@pytest.mark.parametrize("kind", ["unknown", "revoked", "inactive user", "revoked and expired"])
def test_unknown_revoked_and_inactive_tokens_get_the_same_401(db, django_user_model, kind):
    raw = token(expires_days=1)
    stored = ApiToken.objects.get()
    if kind == "unknown":
        raw = raw[:-4] + "abcd"
    if "revoked" in kind:
        stored.revoked_at = timezone.now()
    if "expired" in kind:
        stored.expires_at = timezone.now() - dt.timedelta(days=1)
    stored.save()
    if kind == "inactive user":
        django_user_model.objects.update(is_active=False)

    error = assert_unauthorized(ApiClient(raw).get(f"{ORDERS}/1"))

    assert error["message"] == UNAUTHORIZED  # nothing to learn about a token one does not hold


# --- 403: a valid token without the scope -----------------------------------------------------------
def test_a_token_without_the_orders_scope_cannot_place_orders(fake_daraja, products, django_user_model):
    raw = token("ops", staff=True, scopes=[ApiScope.REFUNDS])

    response = ApiClient(raw).post_json(ORDERS, order_body(product_id=products[0].pk))

    assert_forbidden(response, "orders")
    assert not Order.objects.exists()
    assert fake_daraja.pushes == []


def test_the_scope_is_checked_before_the_body(db):
    raw = token("ops", staff=True, scopes=[ApiScope.REFUNDS])

    assert_forbidden(ApiClient(raw).post_json(ORDERS, {"not": "an order"}), "orders")


def test_a_storefront_token_gets_403_on_the_refund_endpoints(paid, api_client, result_apis):
    for response in (
        api_client.post_json(refunds_url(paid), {"reason": "I want my money"}),
        api_client.get(refunds_url(paid)),
    ):
        assert_forbidden(response, "refunds")
    assert not Refund.objects.exists()
    assert result_apis.reversals == []


def test_a_refunds_token_never_grants_more_than_its_user_may(paid, django_user_model, result_apis):
    no_permission = staff_user(django_user_model, "clerk")
    not_staff = django_user_model.objects.create_user("outsider")
    not_staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_refund", "view_refund"]))

    for user in (no_permission, not_staff):
        client = ApiClient(token(user.username, scopes=[ApiScope.REFUNDS]))
        for response in (client.post_json(refunds_url(paid), {"reason": "x"}), client.get(refunds_url(paid))):
            assert response.status_code == 403, (user, response.content)
            assert response.json()["error"]["code"] == "forbidden"
    assert not Refund.objects.exists()
    assert result_apis.reversals == []


def test_listing_refunds_needs_a_refund_permission(paid, django_user_model, result_apis):
    viewer = staff_user(django_user_model, "viewer", "view_refund")
    client = ApiClient(token("viewer", scopes=[ApiScope.REFUNDS]))

    assert client.get(refunds_url(paid)).json() == []
    refused = client.post_json(refunds_url(paid), {"reason": "x"})  # seeing is not requesting
    assert refused.status_code == 403
    assert "payments.add_refund" in refused.json()["error"]["message"]
    assert viewer.api_tokens.get().scopes == ["refunds"]


def test_a_refunds_token_of_a_user_with_the_permission_refunds(
    paid, django_user_model, result_apis, django_capture_on_commit_callbacks
):
    staff_user(django_user_model, "maker", "add_refund")
    client = ApiClient(token("maker", scopes=[ApiScope.REFUNDS]))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post_json(refunds_url(paid), {"reason": "Out of stock"})

    assert response.status_code == 201, response.content
    assert len(result_apis.reversals) == 1


# --- every route declares its scope, walked ---------------------------------------------------------
def schema_operations() -> list[tuple[str, str, dict]]:
    schema = api.get_openapi_schema(path_prefix="/api/v1/")
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def required_scopes(operation: dict) -> list[str] | None:
    """The scopes the OpenAPI document says an operation needs; None when it is public."""
    if "security" not in operation:
        return None
    return [
        scope for requirement in operation["security"] for scopes in requirement.values() for scope in scopes
    ]


def test_every_api_operation_declares_one_known_scope_or_is_public():
    operations = schema_operations()
    public = set()
    for method, path, operation in operations:
        scopes = required_scopes(operation)
        if scopes is None:
            public.add(f"{method} {path}")
        else:
            assert len(scopes) == 1 and scopes[0] in ApiScope.values, (method, path, operation["security"])
            assert f"`{scopes[0]}` scope" in operation["description"]  # what /api/v1/docs shows
    assert len(operations) >= 8  # the walk finds the routes; a broken walk cannot pass
    assert public == {"GET /api/v1/products"}  # public on purpose (auth=None); anything else is a leak
    refund_scopes = {required_scopes(op)[0] for _m, path, op in operations if path.endswith("/refunds")}
    assert refund_scopes == {ApiScope.REFUNDS}


def _routes(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


# Under /api/v1 but not token API operations: the docs, and Daraja's legacy callback (its own trust rules).
NOT_TOKEN_ROUTES = {"/api/v1/", "/api/v1/docs", "/api/v1/openapi.json", "/api/v1/payments/mpesa/callback"}


def test_every_url_under_the_api_is_an_operation_of_the_openapi_document():
    documented = {path for _method, path, _op in schema_operations()}
    routes = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for route in _routes(get_resolver().url_patterns)
        if route.startswith("api/v1/")
    }

    assert routes - NOT_TOKEN_ROUTES == documented


@pytest.mark.django_db
def test_every_route_refuses_a_token_without_its_scope_and_accepts_one_with_it(django_user_model):
    django_user_model.objects.create_superuser("root", is_staff=True)
    with_every_scope = ApiClient(token("root", scopes=ApiScope.values))
    for method, path, operation in schema_operations():
        url = re.sub(r"{\w+}", "999999", path)
        scopes = required_scopes(operation)
        if scopes is None:
            assert ApiClient().generic(method, url).status_code != 401, (method, path)
            continue
        [scope] = scopes
        others = [other for other in ApiScope.values if other != scope]
        without = ApiClient(token("root", scopes=others))

        assert_unauthorized(ApiClient().generic(method, url, "{}", content_type="application/json"))
        assert_forbidden(without.generic(method, url, "{}", content_type="application/json"), scope)
        accepted = with_every_scope.generic(method, url, "{}", content_type="application/json")
        assert accepted.status_code not in (401, 403, 405), (method, path, accepted.content)


def test_an_endpoint_mounted_without_a_scope_refuses_every_token(db, rf):
    raw = token("root", scopes=ApiScope.values)
    [default_auth] = api.auth  # what a router mounted without auth= gets

    with pytest.raises(ApiTokenScopeMissing):
        default_auth(rf.get("/", HTTP_AUTHORIZATION=f"Bearer {raw}"))


# --- manage.py issue_api_token ---------------------------------------------------------------------
def issue(*args) -> str:
    out = StringIO()
    call_command("issue_api_token", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_issue_api_token_defaults_to_the_orders_scope_and_no_expiry(db):
    out = issue("kiosk")

    raw = out.strip()
    assert out == raw + "\n"  # only the token on stdout
    stored = ApiToken.objects.get(key_hash=hash_token(raw))
    assert stored.scopes == ["orders"]
    assert stored.expires_at is None


def test_issue_api_token_with_scopes_expiry_and_name(db):
    before = timezone.now()

    raw = issue("ops", "--scope", "refunds", "--scope", "orders", "--expires-days", "30", "--name", "ops")

    stored = ApiToken.objects.get(key_hash=hash_token(raw.strip()))
    assert stored.scopes == ["orders", "refunds"]
    assert stored.name == "ops"
    assert before + dt.timedelta(days=30) <= stored.expires_at <= timezone.now() + dt.timedelta(days=30)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scope", "refund"], "Unknown scope 'refund'; known scopes: orders, refunds, reports."),
        (["--expires-days", "0"], "at least one day"),
    ],
)
def test_issue_api_token_refuses_what_it_cannot_issue(db, django_user_model, args, says):
    with pytest.raises(CommandError, match=re.escape(says)):
        issue("kiosk", *args)

    assert not ApiToken.objects.exists()
    assert not django_user_model.objects.filter(username="kiosk").exists()


# --- seed_demo --------------------------------------------------------------------------------------
def test_the_demo_storefront_token_places_orders_but_cannot_refund(paid, tmp_path, result_apis):
    call_command(
        "seed_demo",
        token_file=str(tmp_path / "token"),
        logins_file=str(tmp_path / "logins.txt"),
        stdout=StringIO(),
    )
    raw = (tmp_path / "token").read_text().strip()

    assert ApiToken.objects.get(key_hash=hash_token(raw)).scopes == ["orders"]
    assert ApiClient(raw).get(f"{ORDERS}/999999").status_code == 404  # authenticated
    assert_forbidden(ApiClient(raw).post_json(refunds_url(paid), {"reason": "x"}), "refunds")


# --- admin ------------------------------------------------------------------------------------------
def revoke_url(api_token: ApiToken) -> str:
    return reverse("admin:backoffice_apitoken_revoke", args=[api_token.pk])


def test_revoking_in_the_admin_is_a_dialog_and_only_its_post_revokes(admin_client, db):
    raw = token()
    stored = ApiToken.objects.get()

    page = admin_client.get(revoke_url(stored), {"_form_submitted": "on"})

    assert page.status_code == 200
    assert "Revoke this API token" in page.content.decode()
    stored.refresh_from_db()
    assert stored.revoked_at is None
    assert ApiClient(raw).get(f"{ORDERS}/1").status_code == 404  # still works

    response = dialog_post(admin_client, revoke_url(stored))

    assert response["HX-Redirect"] == reverse("admin:backoffice_apitoken_change", args=[stored.pk])
    stored.refresh_from_db()
    assert stored.revoked_at is not None
    assert_unauthorized(ApiClient(raw).get(f"{ORDERS}/1"))


def test_staff_without_the_change_permission_cannot_revoke(client, django_user_model, db):
    token()
    stored = ApiToken.objects.get()
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apitoken"))
    client.force_login(viewer)

    assert dialog_post(client, revoke_url(stored)).status_code == 403
    stored.refresh_from_db()
    assert stored.revoked_at is None


def test_the_admin_shows_scopes_expiry_status_and_never_the_token(admin_client, db):
    active = token("shop", expires_days=7)
    expired = token("old-shop", scopes=[ApiScope.ORDERS, ApiScope.REFUNDS])
    ApiToken.objects.filter(user__username="old-shop").update(
        expires_at=timezone.now() - dt.timedelta(days=1)
    )
    revoked = token("gone")
    ApiToken.objects.filter(user__username="gone").update(revoked_at=timezone.now())

    listing = admin_client.get(reverse("admin:backoffice_apitoken_changelist")).content.decode()
    expired_page = admin_client.get(
        reverse("admin:backoffice_apitoken_change", args=[ApiToken.objects.get(user__username="old-shop").pk])
    ).content.decode()

    for status in ("Active", "Expired", "Revoked"):
        assert status in listing
    assert "orders, refunds" in listing and "orders, refunds" in expired_page
    assert "Expired" in expired_page
    for raw in (active, expired, revoked):
        assert raw not in listing and raw not in expired_page
        assert raw[:10] in listing  # the prefix, to recognise it
    only_expired = admin_client.get(reverse("admin:backoffice_apitoken_changelist"), {"status": "expired"})
    assert [row.user.username for row in only_expired.context["cl"].result_list] == ["old-shop"]


# --- upgrade ----------------------------------------------------------------------------------------
BEFORE = [("backoffice", "0002_cache_table")]
AFTER = [("backoffice", "0003_apitoken_scopes_expires_at")]


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_keeps_every_existing_token_working(django_user_model):
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        old_token = old.get_model("backoffice", "ApiToken")
        refunder = staff_user(django_user_model, "refunder", "add_refund")
        shopper = django_user_model.objects.create_user("old-shopper")
        permitted_outsider = django_user_model.objects.create_user("outsider")
        permitted_outsider.user_permissions.add(Permission.objects.get(codename="add_refund"))
        for user in (refunder, shopper, permitted_outsider):
            old_token.objects.create(user_id=user.pk, key_prefix="bo_x", key_hash=f"hash-{user.pk}")

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        MigrationExecutor(connection).migrate(leaves)

    scopes = dict(ApiToken.objects.values_list("user__username", "scopes"))
    assert scopes == {
        "refunder": ["orders", "refunds"],
        "old-shopper": ["orders"],
        "outsider": ["orders"],  # not staff: the refund endpoints never let it in anyway
    }
    assert not ApiToken.objects.filter(expires_at__isnull=False).exists()


def test_a_token_sent_with_another_scheme_is_refused_and_never_logged(db, settings, caplog):
    settings.DEBUG = True
    raw = token()
    caplog.set_level("DEBUG")

    response = ApiClient().get("/api/v1/orders/1", HTTP_AUTHORIZATION=f"Token {raw}")

    assert_unauthorized(response)
    assert raw not in caplog.text
