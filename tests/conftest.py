"""Fixtures shared by the whole suite: API users and tokens, the catalogue, and a live Daraja simulator."""

import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import responses
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
            item.add_marker(
                pytest.mark.skip(reason="Debian's chromium is not installed (scripts/ensure-chromium)")
            )


@pytest.fixture(autouse=True)
def _skip_postgres_only(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL to a postgres:// URL)")


@pytest.fixture
def products(db):
    return [Product.objects.create(sku=sku, name=name, price=price) for sku, name, price in DEMO_PRODUCTS]


class ApiClient(Client):
    """Django's test client speaking JSON with a bearer token."""

    def __init__(self, token: str | None = None, **defaults):
        if token:
            defaults["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        super().__init__(**defaults)

    def post_json(self, path: str, data=None, **extra):
        return self.post(
            path, data=data if data is not None else {}, content_type="application/json", **extra
        )


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
    # Both scopes: what this staff user may do is then up to its permissions (none are given here).
    _token, raw, _ = api_token_issue(username="staffer", scopes=["orders", "refunds"])
    return ApiClient(raw)


def order_body(
    *, phone: str = SUCCESS_PHONE, method: str = "mpesa", product_id: int = 1, quantity: int = 1, price=None
):
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
    earlier = set(threading.enumerate())
    yield live_server
    # live_server outlives the test: let every callback the simulator owes this test arrive and be
    # applied before the database is flushed, or the flush races the request (and the next test sees
    # its rows).
    for thread in set(threading.enumerate()) - earlier:
        if thread.name == "daraja-simulator-delivery":
            thread.join(timeout=30)


# --- Daraja faked at the HTTP boundary (payments, orders, api tests) -----------------------------------
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures" / "daraja"
FAKE_DARAJA_URL = "https://daraja.fake"


def daraja_payload(name: str) -> dict:
    """One of Safaricom's published payloads from tests/fixtures/daraja/ (daraja.md §3)."""
    return json.loads((FIXTURES_DIR / f"{name}.json").read_text())


def stk_callback(
    checkout_request_id: str,
    *,
    result_code=0,
    result_desc: str | None = None,
    amount=10.0,
    receipt: str = "NLJ7RT61SV",
    transaction_date=20191219102115,
    phone=254708374149,
) -> dict:
    """An STK callback body in Safaricom's shape; metadata only on success, as Daraja sends it."""
    succeeded = str(result_code) == "0"
    callback = {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": result_code,
        "ResultDesc": result_desc
        if result_desc is not None
        else ("The service request is processed successfully." if succeeded else "Request cancelled by user"),
    }
    if succeeded:
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": transaction_date},
                {"Name": "PhoneNumber", "Value": phone},
            ]
        }
    return {"Body": {"stkCallback": callback}}


class FakeDaraja:
    """Daraja's OAuth, STK push and STK Query answered by `responses`, with every request recorded.

    Queue replies with `oauth_replies` / `push_replies` / `query_replies` ((status, json) pairs or
    exceptions to raise);
    when a queue is empty a push is accepted (with the next of `checkout_ids`, or a fresh id) and a
    query answers "being processed".
    """

    def __init__(self, mock: responses.RequestsMock):
        self.mock = mock
        self.oauth_replies: list = []
        self.push_replies: list = []
        self.query_replies: list = []
        self.checkout_ids: list[str] = []
        self.tokens_issued: list[str] = []
        self._ids = itertools.count(1)
        mock.add_callback(responses.GET, FAKE_DARAJA_URL + "/oauth/v1/generate", callback=self._oauth)
        mock.add_callback(
            responses.POST, FAKE_DARAJA_URL + "/mpesa/stkpush/v1/processrequest", callback=self._push
        )
        mock.add_callback(
            responses.POST, FAKE_DARAJA_URL + "/mpesa/stkpushquery/v1/query", callback=self._query
        )

    @staticmethod
    def _reply(reply):
        if isinstance(reply, Exception):
            return reply
        if isinstance(reply, BaseException):
            raise reply  # the request reached Daraja and the process died waiting (SystemExit, ...)
        status, body = reply
        text = body if isinstance(body, str) else json.dumps(body)
        return status, {"Content-Type": "application/json"}, text

    def _oauth(self, request):
        if self.oauth_replies:
            return self._reply(self.oauth_replies.pop(0))
        token = f"fake-access-token-{len(self.tokens_issued) + 1:04d}"
        self.tokens_issued.append(token)
        return self._reply((200, {"access_token": token, "expires_in": "3599"}))

    def _push(self, request):
        if self.push_replies:
            return self._reply(self.push_replies.pop(0))
        checkout = self.checkout_ids.pop(0) if self.checkout_ids else f"ws_CO_FAKE{next(self._ids):010d}"
        return self._reply(
            (
                200,
                {
                    "MerchantRequestID": "2654-4b64-97ff-b827b542881d3130",
                    "CheckoutRequestID": checkout,
                    "ResponseCode": "0",
                    "ResponseDescription": "Success. Request accepted for processing",
                    "CustomerMessage": "Success. Request accepted for processing",
                },
            )
        )

    def _query(self, request):
        if self.query_replies:
            return self._reply(self.query_replies.pop(0))
        return self._reply(
            (
                500,
                {
                    "requestId": "ws_CO_1",
                    "errorCode": "500.001.1001",
                    "errorMessage": "The transaction is being processed",
                },
            )
        )

    def answer_query(self, result_code: str, result_desc: str = "") -> None:
        """The next STK Query gives this final answer (ResultCode as a string, as Daraja sends it)."""
        self.query_replies.append(
            (
                200,
                {
                    "ResponseCode": "0",
                    "ResponseDescription": "The service request has been accepted successfully",
                    "MerchantRequestID": "22205-34066-1",
                    "CheckoutRequestID": "ws_CO_1",
                    "ResultCode": result_code,
                    "ResultDesc": result_desc
                    or (
                        "The service request is processed successfully."
                        if result_code == "0"
                        else "Request cancelled by user"
                    ),
                },
            )
        )

    def requests_to(self, path: str) -> list:
        return [call.request for call in self.mock.calls if call.request.url.split("?")[0].endswith(path)]

    @property
    def oauth_calls(self) -> int:
        return len(self.requests_to("/oauth/v1/generate"))

    @property
    def pushes(self) -> list[dict]:
        return [json.loads(r.body) for r in self.requests_to("/mpesa/stkpush/v1/processrequest")]

    @property
    def queries(self) -> list[dict]:
        return [json.loads(r.body) for r in self.requests_to("/mpesa/stkpushquery/v1/query")]


@pytest.fixture
def fake_daraja(db, settings):
    """The application pointed at a fake Daraja; nothing leaves the machine."""
    from django.core.cache import cache

    settings.MPESA_BASE_URL = FAKE_DARAJA_URL
    settings.MPESA_CALLBACK_BASE_URL = "https://shop.example"
    cache.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeDaraja(mock)


@pytest.fixture
def place_order(products, api_user):
    """Place an order through the ordering service (the STK push goes to whatever Daraja is configured)."""
    from orders.services import ItemRequest, Shipping, order_place

    def place(
        *,
        phone: str = SUCCESS_PHONE,
        method: str = "mpesa",
        product=None,
        quantity: int = 1,
        owner=None,
        full_name: str = "Test User",
        email: str = "",
        language: str = "en",
        sms_opt_out: bool = False,
    ):
        order, payment, _created = order_place(
            owner=owner or api_user,
            items=[ItemRequest(product_id=(product or products[0]).pk, quantity=quantity)],
            shipping=Shipping(full_name=full_name, address="123 Test St", city="Nairobi", phone=phone),
            payment_method=method,
            payment_phone=phone,
            email=email,
            language=language,
            sms_opt_out=sms_opt_out,
        )
        return order, payment

    return place
