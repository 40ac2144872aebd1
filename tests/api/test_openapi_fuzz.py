"""Every operation of /api/v1/openapi.json fuzzed over HTTP against a live server, Daraja faked by `responses`.

Schemathesis draws requests from the document, valid ones and (where there is something to break) invalid
ones, and sends them to pytest-django's live server with a token holding the operation's scopes. Whatever
comes in, the API must not answer 5xx; a 4xx is JSON in the API's error body
(`{"error": {"code", "message", "fields"}}`); a 2xx is what the document says it is. Authenticated
operations are then called with no token, an unknown token and a token without their scope.

Ids drawn from the document alone are almost never ones the database has, so half of the examples have
their ids, products, phone numbers and dates replaced by known ones (`known_values`): those get past the
lookups to the services (an order placed with an STK push, a failed payment retried, a paid one refunded),
all against the fake Daraja.

MAX_EXAMPLES and REFUSAL_EXAMPLES bound the run: about 770 requests to 9 operations, 16 s for the file on
SQLite and 33 s on PostgreSQL on a 2-core machine. Examples are derandomized: every run sends the same.
"""

import datetime as dt

import pytest
import requests
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance

from backoffice.services import api_token_issue
from payments import services
from payments.daraja.results import parse_stk_callback
from payments.models import EventSource, Payment
from tests.conftest import SUCCESS_PHONE, stk_callback
from tests.payments import refunds_support as support

paid = support.paid
result_apis = support.result_apis

OPENAPI_PATH = "/api/v1/openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
MAX_EXAMPLES = 40  # per operation and generation mode
REFUSAL_EXAMPLES = 4  # per authenticated operation and kind of bad token
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run, so a CI failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def assert_standard_error(response, label: str) -> None:
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{label}: {response.status_code} answered as {content_type!r}: {response.content[:300]!r}"
    )
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{label}: {response.status_code} without an error object: {body!r}"
    assert isinstance(error.get("code"), str), f"{label}: error.code is not a string: {body!r}"
    assert isinstance(error.get("message"), str), f"{label}: error.message is not a string: {body!r}"
    assert isinstance(error.get("fields"), dict), f"{label}: error.fields is not an object: {body!r}"


def assert_sound_answer(case, response, label: str) -> None:
    status = response.status_code
    assert status < 500, f"{label}: {status} for\n{case.as_curl_command()}\n{response.content[:2000]!r}"
    if status >= 400:
        assert_standard_error(response, label)
    elif status >= 200:
        case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])


def required_scopes(operation) -> list[str]:
    requirements = operation.definition.raw.get("security") or []
    return sorted(
        {scope for requirement in requirements for scopes in requirement.values() for scope in scopes}
    )


def operation_count(document: dict) -> int:
    return sum(
        1 for path_item in document["paths"].values() for method in path_item if method in HTTP_METHODS
    )


def plant_known_values(value, known: dict, draw) -> None:
    """Replace, in place and at any depth, the values of properties named in `known` by known-good ones."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in known:
                value[key] = draw(st.sampled_from(known[key]))
            else:
                plant_known_values(item, known, draw)
    elif isinstance(value, list):
        for item in value:
            plant_known_values(item, known, draw)


@pytest.fixture
def failed_payment(place_order, fake_daraja):
    """A failed M-Pesa attempt, old enough for a retry (M-Pesa refuses a repeat within 2 minutes)."""
    _order, payment = place_order()
    payment = services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id,
        result=parse_stk_callback(stk_callback(payment.checkout_request_id, result_code=1032)),
        source=EventSource.CALLBACK,
    )
    earlier = timezone.now() - dt.timedelta(minutes=10)
    Payment.objects.filter(pk=payment.pk).update(initiated_at=earlier, created_at=earlier)
    return payment


@pytest.fixture
def fuzz_user(django_user_model):
    """A superuser: what each request may do is then up to its token's scopes."""
    return django_user_model.objects.create_user("fuzzer", is_staff=True, is_superuser=True)


@pytest.mark.django_db(transaction=True)
def test_every_operation_answers_soundly_whatever_it_is_sent(
    live_server, fake_daraja, result_apis, products, paid, failed_payment, fuzz_user
):
    # Only Daraja is faked: the requests to the live server go out for real.
    fake_daraja.mock.add_passthru(live_server.url)
    document = requests.get(live_server.url + OPENAPI_PATH, timeout=10).json()
    schema = schemathesis.openapi.from_url(live_server.url + OPENAPI_PATH)
    known_values = {
        "payment_id": [paid.pk, failed_payment.pk],
        "order_id": [paid.order_id, failed_payment.order_id],
        "productId": [product.pk for product in products],
        "price": [None],
        "phone": [SUCCESS_PHONE, "0708374149", "+254 708 374 149"],
        "email": [None, "customer@example.com"],
        "amount": [None, float(paid.amount)],
        "from": ["2026-01-01", "2026-12-31"],
        "to": ["2026-12-31", "2026-01-01"],
    }
    tokens: dict[tuple[str, ...], str] = {}

    def token_holding(scopes: list[str]) -> str:
        if tuple(scopes) not in tokens:
            tokens[tuple(scopes)] = api_token_issue(username=fuzz_user.username, scopes=scopes)[1]
        return tokens[tuple(scopes)]

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= operation_count(document) > 0
    all_scopes = sorted({scope for operation in operations for scope in required_scopes(operation)})
    failures: list[str] = []
    examples = 0

    def fuzz(label: str, strategy, send, max_examples: int) -> None:
        @settings(FUZZ_SETTINGS, max_examples=max_examples)
        @given(case=strategy, data=st.data())
        def examples_of(case, data):
            nonlocal examples
            examples += 1
            send(case, data.draw)

        # One report for every operation that fails, not only the first.
        try:
            examples_of()
        except Exception as exc:
            failures.append(f"{label}: {exc}")

    fuzzed = []
    for operation in operations:
        scopes = required_scopes(operation)
        token = {"Authorization": f"Bearer {token_holding(scopes)}"} if scopes else {}

        def send_with_token(case, draw, token=token, label=operation.label):
            if draw(st.booleans(), label="plant known values"):
                plant_known_values(case.path_parameters, known_values, draw)
                plant_known_values(case.body, known_values, draw)
                plant_known_values(case.query, known_values, draw)
            # No requests.Session: on a kept-alive connection the dev server answers ~40 ms late (delayed ACK).
            response = case.call(base_url=live_server.url, headers=dict(token))
            assert_sound_answer(case, response, label)

        modes = [GenerationMode.POSITIVE]
        if operation.body or any(True for _ in operation.iter_parameters()):
            modes.append(GenerationMode.NEGATIVE)  # nothing to break in a request without input
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)
            fuzz(f"{operation.label} ({mode.value})", strategy, send_with_token, MAX_EXAMPLES)
        fuzzed.append(operation.label)

        if not scopes:
            continue
        refusals = [({}, 401), ({"Authorization": "Bearer bo_not-a-token"}, 401)]
        other_scopes = [scope for scope in all_scopes if scope not in scopes]
        if other_scopes:
            refusals.append(({"Authorization": f"Bearer {token_holding(other_scopes)}"}, 403))
        for headers, expected in refusals:

            def send_refused(case, draw, headers=headers, expected=expected, label=operation.label):
                # Known ids: a refusal must not depend on whether the thing exists.
                plant_known_values(case.path_parameters, known_values, draw)
                case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
                response = case.call(base_url=live_server.url, headers=dict(headers))
                assert response.status_code == expected, (
                    f"{label} with {headers or 'no token'}: {response.status_code} for {response.request.url}"
                    f" {response.content[:300]!r}"
                )
                assert_standard_error(response, label)

            strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
            fuzz(f"{operation.label} refused", strategy, send_refused, REFUSAL_EXAMPLES)

    assert not failures, "\n\n".join(failures)
    assert len(fuzzed) >= operation_count(document)
    assert examples >= len(fuzzed)
