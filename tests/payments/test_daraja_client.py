import base64
import datetime as dt
from decimal import Decimal

import pytest
import requests
import time_machine

from payments.daraja import client as client_module
from payments.daraja.client import DarajaClient, mpesa_amount
from payments.daraja.errors import (
    DarajaAuthError,
    DarajaBusy,
    DarajaError,
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaUnavailable,
)
from payments.models import FailureClass, Payment, PaymentStatus, ReviewReason
from tests.conftest import order_body

PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
INVALID_TOKEN = (
    404,
    {"requestId": "10219-2484793-1", "errorCode": "404.001.03", "errorMessage": "Invalid Access Token"},
)
BUSY = (
    500,
    {
        "requestId": "r-1",
        "errorCode": "500.003.02",
        "errorMessage": "System is busy. Please try again in few minutes.",
    },
)


def push(amount=Decimal("10"), phone="254708374149", reference="AB12CD34"):
    return DarajaClient().stk_push(
        phone=phone,
        amount=amount,
        account_reference=reference,
        description=f"Order {reference}",
        callback_url="https://shop.example/hooks/daraja/stk/secret/",
    )


# --- STK password, timestamp and amount ------------------------------------------------------------
def test_push_timestamp_is_nairobi_time_and_the_password_is_built_from_the_same_value(fake_daraja, settings):
    # 22:30 UTC is already the next day in Nairobi (UTC+3): a UTC timestamp would be refused.
    with time_machine.travel(dt.datetime(2024, 7, 10, 22, 30, 5, tzinfo=dt.UTC), tick=False):
        push()

    [sent] = fake_daraja.pushes
    assert sent["Timestamp"] == "20240711013005"
    assert base64.b64decode(sent["Password"]).decode() == f"174379{PASSKEY}20240711013005"
    assert sent["BusinessShortCode"] == settings.MPESA_SHORTCODE == "174379"
    assert sent["PartyB"] == "174379"
    assert sent["TransactionType"] == "CustomerPayBillOnline"
    assert sent["PartyA"] == sent["PhoneNumber"] == "254708374149"


def test_push_keeps_account_reference_and_description_within_daraja_limits(fake_daraja):
    push(reference="ORD#2024/0001-LONG&REF")

    [sent] = fake_daraja.pushes
    assert len(sent["AccountReference"]) <= 12
    assert len(sent["TransactionDesc"]) <= 13
    assert sent["AccountReference"].replace(" ", "").isalnum()
    assert sent["TransactionDesc"].replace(" ", "").isalnum()


@pytest.mark.parametrize(
    ("total", "charged"),
    [
        (Decimal("10.20"), 11),
        (Decimal("10.00"), 10),
        (Decimal("1850.50"), 1851),
        (Decimal("0.40"), 1),
        (Decimal("250000"), 250000),
    ],
)
def test_amounts_are_whole_shillings_rounded_up(fake_daraja, total, charged):
    assert mpesa_amount(total) == charged

    push(amount=total)

    assert fake_daraja.pushes[0]["Amount"] == charged
    assert isinstance(fake_daraja.pushes[0]["Amount"], int)


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-5"), Decimal("250001"), Decimal("250000.01")])
def test_amounts_outside_mpesa_limits_are_refused_before_any_request(fake_daraja, amount):
    with pytest.raises(ValueError, match="1 to 250,000"):
        push(amount=amount)

    assert fake_daraja.pushes == []


# --- OAuth token --------------------------------------------------------------------------------------
def test_one_oauth_token_serves_many_pushes(fake_daraja):
    for _ in range(4):
        push()

    assert fake_daraja.oauth_calls == 1
    authorizations = {r.headers["Authorization"] for r in fake_daraja.requests_to("/processrequest")}
    assert authorizations == {f"Bearer {fake_daraja.tokens_issued[0]}"}


def test_oauth_request_uses_basic_auth_with_the_consumer_credentials(fake_daraja, settings):
    push()

    [oauth] = fake_daraja.requests_to("/oauth/v1/generate")
    assert "grant_type=client_credentials" in oauth.url
    expected = base64.b64encode(f"{settings.MPESA_CONSUMER_KEY}:{settings.MPESA_CONSUMER_SECRET}".encode())
    assert oauth.headers["Authorization"] == f"Basic {expected.decode()}"


def test_token_is_minted_again_once_it_expires(fake_daraja):
    with time_machine.travel(dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.UTC), tick=False) as traveller:
        push()
        traveller.shift(dt.timedelta(minutes=30))
        push()
        assert fake_daraja.oauth_calls == 1

        traveller.shift(dt.timedelta(minutes=31))  # an hour later: the 3599 s token is (nearly) dead
        push()

    assert fake_daraja.oauth_calls == 2
    last = fake_daraja.requests_to("/processrequest")[-1]
    assert last.headers["Authorization"] == f"Bearer {fake_daraja.tokens_issued[1]}"


def test_refused_token_is_refreshed_once_and_the_push_is_sent_again(fake_daraja):
    fake_daraja.push_replies.append(INVALID_TOKEN)

    accepted = push()

    assert accepted.checkout_request_id.startswith("ws_CO_")
    assert fake_daraja.oauth_calls == 2
    first, second = fake_daraja.requests_to("/processrequest")
    assert first.headers["Authorization"] == f"Bearer {fake_daraja.tokens_issued[0]}"
    assert second.headers["Authorization"] == f"Bearer {fake_daraja.tokens_issued[1]}"


def test_a_fresh_token_refused_again_raises_instead_of_looping(fake_daraja):
    fake_daraja.push_replies.extend([INVALID_TOKEN, INVALID_TOKEN, INVALID_TOKEN])

    with pytest.raises(DarajaAuthError):
        push()

    assert len(fake_daraja.pushes) == 2
    assert fake_daraja.oauth_calls == 2


def test_oauth_refusal_raises_without_sending_the_push(fake_daraja):
    fake_daraja.oauth_replies.append(
        (400, {"requestId": "r", "errorCode": "400.008.01", "errorMessage": "Invalid Authentication passed"})
    )

    with pytest.raises(DarajaAuthError) as caught:
        push()

    assert caught.value.error_code == "400.008.01"
    assert fake_daraja.pushes == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ((503, "<html>Service Unavailable</html>"), DarajaUnavailable),
        (
            (500, {"requestId": "r", "errorCode": "500.003.1001", "errorMessage": "Internal Server Error"}),
            DarajaUnavailable,
        ),
        ((429, {"requestId": "r", "errorCode": "", "errorMessage": "Too Many Requests"}), DarajaBusy),
        (
            (500, {"requestId": "r", "errorCode": "500.003.02", "errorMessage": "Spike Arrest Violation"}),
            DarajaBusy,
        ),
        (
            (401, {"requestId": "r", "errorCode": "401.003.01", "errorMessage": "Unauthorized"}),
            DarajaAuthError,
        ),
    ],
    ids=["503", "500", "429", "spike-arrest", "401"],
)
def test_an_oauth_outage_is_try_again_later_and_only_a_refusal_is_a_configuration_error(
    fake_daraja, reply, error
):
    fake_daraja.oauth_replies.append(reply)

    with pytest.raises(DarajaError) as caught:
        push()

    assert type(caught.value) is error
    assert fake_daraja.pushes == []


def test_an_oauth_outage_fails_the_attempt_as_a_system_failure_not_configuration(
    fake_daraja, api_client, products
):
    fake_daraja.oauth_replies.append((503, "<html>Service Unavailable</html>"))

    response = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk))

    payment = Payment.objects.get(pk=response.json()["payment"]["id"])
    assert (payment.status, payment.failure_class) == (PaymentStatus.FAILED, FailureClass.SYSTEM)
    assert response.json()["payment"]["retryable"] is True


def test_the_process_keeps_one_client_and_one_session_for_daraja(monkeypatch):
    first = client_module.get_client()
    assert client_module.get_client() is first
    assert client_module.get_client().session is first.session

    monkeypatch.setattr(client_module.os, "getpid", lambda: -1)  # as in a freshly forked worker
    assert client_module.get_client() is not first


# --- what Daraja's answers mean -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(
            (
                400,
                {
                    "requestId": "r",
                    "errorCode": "400.002.02",
                    "errorMessage": "Bad Request - Invalid PhoneNumber",
                },
            ),
            DarajaRejected,
            id="400-invalid-phone",
        ),
        pytest.param(
            (200, {"ResponseCode": "1", "ResponseDescription": "Rejected"}), DarajaRejected, id="200-refused"
        ),
        pytest.param(
            (500, {"requestId": "r", "errorCode": "500.001.1001", "errorMessage": "Merchant does not exist"}),
            DarajaRejected,
            id="500-merchant",
        ),
        pytest.param(BUSY, DarajaBusy, id="500.003.02-busy"),
        pytest.param((429, {"fault": "rate"}), DarajaBusy, id="429"),
        pytest.param((502, "<html>Bad Gateway</html>"), DarajaOutcomeUnknown, id="502-html"),
        pytest.param((503, ""), DarajaOutcomeUnknown, id="503-empty"),
        pytest.param((200, {"ResponseCode": "0"}), DarajaOutcomeUnknown, id="accepted-without-id"),
        pytest.param(requests.ReadTimeout("read timed out"), DarajaOutcomeUnknown, id="read-timeout"),
        pytest.param(
            requests.ConnectionError("('Connection aborted.', RemoteDisconnected())"),
            DarajaOutcomeUnknown,
            id="dropped-after-send",
        ),
    ],
)
def test_daraja_answers_become_typed_errors(fake_daraja, reply, error):
    fake_daraja.push_replies.append(reply)

    with pytest.raises(error):
        push()

    assert len(fake_daraja.pushes) == 1  # a push that may have reached Safaricom is never re-sent


def test_connection_refused_is_retried_with_capped_backoff_then_reported_unavailable(
    fake_daraja, monkeypatch
):
    pauses = []
    monkeypatch.setattr(client_module.time, "sleep", pauses.append)
    refused = requests.ConnectionError(
        "HTTPSConnectionPool: NewConnectionError: [Errno 111] Connection refused"
    )
    fake_daraja.push_replies.extend([refused] * 5)

    with pytest.raises(DarajaUnavailable):
        push()

    assert len(fake_daraja.requests_to("/processrequest")) == 3
    assert len(pauses) == 2 and all(0 < pause <= 4 for pause in pauses)


def test_connection_refused_once_then_accepted(fake_daraja, monkeypatch):
    monkeypatch.setattr(client_module.time, "sleep", lambda _s: None)
    fake_daraja.push_replies.append(requests.ConnectionError("NewConnectionError: Connection refused"))

    assert push().checkout_request_id


# --- STK Query ------------------------------------------------------------------------------------
def test_query_being_processed_is_pending_not_failed(fake_daraja):
    answer = DarajaClient().stk_query(checkout_request_id="ws_CO_1")

    assert answer.pending
    [sent] = fake_daraja.queries
    assert sent["CheckoutRequestID"] == "ws_CO_1"
    assert base64.b64decode(sent["Password"]).decode() == f"174379{PASSKEY}{sent['Timestamp']}"


@pytest.mark.parametrize(("code", "expected"), [("0", "0"), (0, "0"), ("1032", "1032"), (1032, "1032")])
def test_query_result_code_is_kept_as_text(fake_daraja, code, expected):
    fake_daraja.query_replies.append((200, {"ResponseCode": "0", "ResultCode": code, "ResultDesc": "x"}))

    answer = DarajaClient().stk_query(checkout_request_id="ws_CO_1")

    assert not answer.pending
    assert answer.result_code == expected


@pytest.mark.parametrize(
    "reply",
    [
        {
            "ResponseCode": "0",
            "ResultCode": "4999",
            "ResultDesc": "The transaction is still under processing",
        },
        {"ResponseCode": "0", "ResponseDescription": "The service request has been accepted successfully"},
    ],
)
def test_query_answered_200_without_a_final_result_is_pending(fake_daraja, reply):
    fake_daraja.query_replies.append((200, reply))

    assert DarajaClient().stk_query(checkout_request_id="ws_CO_1").pending


# --- what the customer and staff see when the push goes wrong (through the API) -------------------
@pytest.mark.parametrize(
    ("reply", "status", "failure_class", "review_reason", "result_code"),
    [
        pytest.param(
            (
                400,
                {"requestId": "r", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid Amount"},
            ),
            PaymentStatus.FAILED,
            FailureClass.REQUEST,
            "",
            "400.002.02",
            id="4xx-rejected",
        ),
        pytest.param(BUSY, PaymentStatus.FAILED, FailureClass.SYSTEM, "", "500.003.02", id="busy"),
        pytest.param(
            (
                500,
                {
                    "requestId": "r",
                    "errorCode": "500.001.1001",
                    "errorMessage": "Unable to lock subscriber, a transaction is already in process for the current subscriber",
                },
            ),
            PaymentStatus.FAILED,
            FailureClass.CUSTOMER,
            "",
            "500.001.1001",
            id="subscriber-locked",
        ),
        pytest.param(
            (502, "<html><body>Bad Gateway</body></html>"),
            PaymentStatus.NEEDS_REVIEW,
            FailureClass.UNKNOWN,
            ReviewReason.PUSH_OUTCOME_UNKNOWN,
            "",
            id="5xx-unknown",
        ),
        pytest.param(
            requests.ReadTimeout("read timed out"),
            PaymentStatus.NEEDS_REVIEW,
            FailureClass.UNKNOWN,
            ReviewReason.PUSH_OUTCOME_UNKNOWN,
            "",
            id="read-timeout",
        ),
        pytest.param(
            [requests.ConnectionError("NewConnectionError: Connection refused")] * 3,
            PaymentStatus.FAILED,
            FailureClass.SYSTEM,
            "",
            "",
            id="connection-refused",
        ),
        pytest.param(
            [INVALID_TOKEN, INVALID_TOKEN],
            PaymentStatus.FAILED,
            FailureClass.CONFIG,
            "",
            "404.001.03",
            id="token-refused-twice",
        ),
    ],
)
def test_push_faults_leave_a_clear_payment_state_and_never_a_server_error(
    fake_daraja, api_client, products, monkeypatch, reply, status, failure_class, review_reason, result_code
):
    monkeypatch.setattr(client_module.time, "sleep", lambda _s: None)
    fake_daraja.push_replies.extend(reply if isinstance(reply, list) else [reply])

    response = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk))

    assert response.status_code == 201, response.content
    payment = response.json()["payment"]
    assert payment["status"] == status
    assert response.json()["order"]["status"] == "PENDING"
    from payments.models import Payment

    stored = Payment.objects.get(pk=payment["id"])
    assert stored.failure_class == failure_class
    assert stored.review_reason == review_reason
    assert stored.result_code == result_code
    assert payment["retryable"] is (status == PaymentStatus.FAILED)
    if status == PaymentStatus.NEEDS_REVIEW:
        # Nobody may push again blindly: the prompt may still be on the customer's phone.
        assert "do not push again" in stored.events.get(kind="push_unknown").message


def test_oauth_outage_fails_the_attempt_without_pushing(fake_daraja, api_client, products):
    fake_daraja.oauth_replies.append(requests.ConnectionError("NewConnectionError: Connection refused"))

    response = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk))

    assert response.status_code == 201
    assert response.json()["payment"]["status"] == "failed"
    assert fake_daraja.pushes == []


# --- the shared cache out of reach (Redis restarting) ------------------------------------------------
def test_with_the_shared_cache_down_a_push_fails_at_once_as_unavailable_and_sends_nothing(
    fake_daraja, place_order, monkeypatch
):
    from redis.exceptions import ConnectionError as RedisConnectionError

    def cache_down(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    monkeypatch.setattr(client_module.cache, "get", cache_down)

    _order, payment = place_order()

    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_class == FailureClass.SYSTEM
    assert "Shared cache unreachable" in payment.result_desc
    assert fake_daraja.pushes == []
    assert fake_daraja.oauth_calls == 0


def test_a_cache_error_that_is_not_an_outage_is_not_hidden(fake_daraja, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("a bug, not an outage")

    monkeypatch.setattr(client_module.cache, "get", broken)

    with pytest.raises(TypeError):
        DarajaClient().access_token()
