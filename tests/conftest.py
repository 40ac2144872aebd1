"""Fixtures shared by the whole suite: API users and tokens, the catalogue, and a live Daraja simulator."""

import os
import shutil
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from backoffice.services import api_token_issue
from orders.models import Product

# Sync Playwright runs an event loop in the test thread; live_server ORM calls need this.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

DEMO_PRODUCTS = [
    ("DEMO-001", "Test item", Decimal("10.00")),
    ("TEA-500", "Tea 500 g", Decimal("450.00")),
    ("KIKOY-1", "Cotton kikoy", Decimal("1850.50")),
]
SUCCESS_PHONE = "254708374149"


def pytest_collection_modifyitems(config, items):
    chromium = shutil.which("chromium")
    for item in items:
        if "browser" in item.keywords and not chromium:
            item.add_marker(pytest.mark.skip(reason="Debian's chromium is not installed (scripts/ensure-chromium)"))


@pytest.fixture(autouse=True)
def _skip_postgres_only(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")


@pytest.fixture
def products(db):
    return [
        Product.objects.create(sku=sku, name=name, price=price) for sku, name, price in DEMO_PRODUCTS
    ]


class ApiClient(Client):
    """Django's test client speaking JSON with a bearer token."""

    def __init__(self, token: str | None = None, **defaults):
        if token:
            defaults["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        super().__init__(**defaults)

    def post_json(self, path: str, data=None, **extra):
        return self.post(path, data=data if data is not None else {}, content_type="application/json", **extra)


@pytest.fixture
def api_token(db):
    _token, raw, _ = api_token_issue(username="shopper")
    return raw


@pytest.fixture
def api_user(api_token, django_user_model):
    return django_user_model.objects.get(username="shopper")


@pytest.fixture
def api_client(api_token):
    return ApiClient(api_token)


@pytest.fixture
def other_api_client(db):
    _token, raw, _ = api_token_issue(username="someone-else")
    return ApiClient(raw)


@pytest.fixture
def staff_api_client(db, django_user_model):
    django_user_model.objects.create_user("staffer", is_staff=True)
    _token, raw, _ = api_token_issue(username="staffer")
    return ApiClient(raw)


def order_body(*, phone: str = SUCCESS_PHONE, method: str = "mpesa", product_id: int = 1, quantity: int = 1, price=None):
    item = {"productId": product_id, "quantity": quantity}
    if price is not None:
        item["price"] = price
    return {
        "items": [item],
        "shipping": {
            "fullName": "Test User",
            "address": "123 Test St",
            "city": "Nairobi",
            "postalCode": "00100",
            "phone": "+254700000000",
        },
        "payment": {"method": method, "phone": phone},
    }


def wait_for(predicate: Callable[[], object], *, timeout: float = 10.0, interval: float = 0.05):
    """Poll until predicate() is truthy; returns its value, or fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture
def daraja(live_server, settings):
    """The app pointed at the built-in simulator over real HTTP, with callbacks posted back to live_server.

    Needs `@pytest.mark.django_db(transaction=True)`: the simulator's callback thread and the live server
    see only committed data.
    """
    settings.MPESA_ENVIRONMENT = "simulator"
    settings.MPESA_BASE_URL = f"{live_server.url}/simulator/daraja"
    settings.MPESA_CALLBACK_BASE_URL = live_server.url
    settings.SIMULATOR_CALLBACK_DELAY = 0.2
    from django.core.cache import cache

    cache.clear()
    return live_server
