import base64
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from django.core.management import call_command
from django.test import Client

BASE = "/simulator/daraja"
CERTIFICATE = Path(__file__).resolve().parents[2] / "payments" / "simulator" / "certs" / "simulator-cert.pem"
NAIROBI = ZoneInfo("Africa/Nairobi")


@pytest.fixture(autouse=True)
def simulator_environment(db, settings):
    """The real default cache (DatabaseCache) inside the test transaction, and immediate deliveries."""
    call_command("createcachetable", verbosity=0)
    settings.ROOT_URLCONF = "tests.simulator.urls_for_tests"
    settings.MPESA_ENVIRONMENT = "simulator"
    settings.SIMULATOR_CALLBACK_DELAY = 0
    settings.MPESA_INITIATOR_NAME = "testapi"
    settings.MPESA_INITIATOR_PASSWORD = "Safaricom999!*!"


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def nairobi_timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(NAIROBI)).astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def security_credential(password: str) -> str:
    certificate = x509.load_pem_x509_certificate(CERTIFICATE.read_bytes())
    return base64.b64encode(certificate.public_key().encrypt(password.encode(), padding.PKCS1v15())).decode()


class Daraja:
    """A minimal Daraja caller: what the application's client does, written independently."""

    def __init__(self, client: Client, settings):
        self.client = client
        self.settings = settings
        self.token = None

    def oauth(self, authorization=None, grant_type="client_credentials"):
        if authorization is None:
            authorization = basic(self.settings.MPESA_CONSUMER_KEY, self.settings.MPESA_CONSUMER_SECRET)
        query = "" if grant_type is None else f"?grant_type={grant_type}"
        return self.client.get(f"{BASE}/oauth/v1/generate{query}", HTTP_AUTHORIZATION=authorization)

    def login(self) -> str:
        self.token = self.oauth().json()["access_token"]
        return self.token

    def post(self, path, body, token=None, **extra):
        token = token or self.token or self.login()
        return self.client.post(
            f"{BASE}/{path}",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            **extra,
        )

    def stk_body(self, **overrides):
        shortcode = self.settings.MPESA_SHORTCODE
        timestamp = overrides.pop("timestamp", None) or nairobi_timestamp()
        body = {
            "BusinessShortCode": shortcode,
            "Password": stk_password(shortcode, self.settings.MPESA_PASSKEY, timestamp),
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": 10,
            "PartyA": "254708374149",
            "PartyB": shortcode,
            "PhoneNumber": "254708374149",
            "CallBackURL": "http://127.0.0.1:9/hooks/stk",
            "AccountReference": "ORD-1001",
            "TransactionDesc": "Order 1001",
        }
        body.update(overrides)
        return body

    def push(self, **overrides):
        return self.post("mpesa/stkpush/v1/processrequest", self.stk_body(**overrides))

    def query(self, checkout_request_id, **overrides):
        shortcode = self.settings.MPESA_SHORTCODE
        timestamp = nairobi_timestamp()
        body = {
            "BusinessShortCode": shortcode,
            "Password": stk_password(shortcode, self.settings.MPESA_PASSKEY, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        body.update(overrides)
        return self.post("mpesa/stkpushquery/v1/query", body)


@pytest.fixture
def daraja(client, settings):
    return Daraja(client, settings)


class Receiver:
    """A real HTTP server standing in for the application's callback/result endpoints."""

    def __init__(self, httpserver):
        self.httpserver = httpserver
        self._paths = 0

    def url(self, name: str = "hook") -> str:
        self._paths += 1
        path = f"/{name}/{time.monotonic_ns()}-{self._paths}"
        self.httpserver.expect_request(path, method="POST").respond_with_json(
            {"ResultCode": 0, "ResultDesc": "Accepted"}
        )
        return self.httpserver.url_for(path)

    def received(self, url: str) -> list[dict]:
        path = urlsplit(url).path
        return [request.get_json() for request, _ in list(self.httpserver.log) if request.path == path]

    def wait_for(self, url: str, count: int = 1, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bodies = self.received(url)
            if len(bodies) >= count:
                return bodies
            time.sleep(0.02)
        raise AssertionError(f"expected {count} POST(s) to {url}, got {len(self.received(url))}")

    def assert_silent(self, url: str, wait: float = 0.4) -> None:
        time.sleep(wait)
        assert self.received(url) == []


@pytest.fixture
def receiver(httpserver):
    return Receiver(httpserver)
