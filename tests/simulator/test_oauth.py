from datetime import timedelta

import pytest
import time_machine

from .conftest import BASE, basic


def test_token_is_minted_with_expires_in_as_a_string(daraja):
    response = daraja.oauth()

    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == "3599"
    assert len(body["access_token"]) >= 20


def test_wrong_secret_is_rejected(daraja, settings):
    response = daraja.oauth(authorization=basic(settings.MPESA_CONSUMER_KEY, "wrong"))

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.008.01"
    assert response.json()["errorMessage"] == "Invalid Authentication passed"
    assert set(response.json()) == {"requestId", "errorCode", "errorMessage"}


def test_non_basic_authorization_is_rejected(daraja):
    response = daraja.oauth(authorization="Bearer something")

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.008.01"


@pytest.mark.parametrize("grant_type", [None, "password", "CLIENT_CREDENTIALS"])
def test_wrong_grant_type_is_rejected(daraja, grant_type):
    response = daraja.oauth(grant_type=grant_type)

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.008.02"
    assert response.json()["errorMessage"] == "Invalid grant type passed"


def test_new_token_invalidates_the_previous_one(daraja):
    first = daraja.login()
    second = daraja.login()

    old = daraja.post("mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=first)
    new = daraja.post("mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=second)

    assert old.status_code == 404
    assert old.json()["errorCode"] == "404.001.03"
    assert old.json()["errorMessage"] == "Invalid Access Token"
    assert new.status_code == 200


def test_token_expires_after_an_hour(daraja):
    with time_machine.travel(0, tick=False) as traveller:
        traveller.move_to("2026-06-01 09:00:00+03:00")
        token = daraja.login()
        traveller.shift(timedelta(seconds=3590))
        still_valid = daraja.post("mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=token)
        traveller.shift(timedelta(seconds=11))
        expired = daraja.post("mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=token)

    assert still_valid.status_code == 200
    assert expired.status_code == 404
    assert expired.json()["errorCode"] == "404.001.03"


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic abc"])
def test_api_call_without_a_valid_token_is_404(client, daraja, authorization):
    daraja.login()
    extra = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = client.post(
        f"{BASE}/mpesa/stkpush/v1/processrequest", daraja.stk_body(), content_type="application/json", **extra
    )

    assert response.status_code == 404
    assert response.json()["errorCode"] == "404.001.03"


def test_get_on_a_post_api_is_405(client, daraja):
    token = daraja.login()

    response = client.get(f"{BASE}/mpesa/stkpush/v1/processrequest", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 405
    assert response.json()["errorCode"] == "405.001"
    assert response.json()["errorMessage"] == "Method Not Allowed"


def test_unknown_path_answers_daraja_resource_not_found(client):
    response = client.post(f"{BASE}/mpesa/nothing/v9/here")

    assert response.status_code == 404
    assert response.json()["errorCode"] == "404.001.01"


def test_index_lists_endpoints_and_test_numbers(client):
    response = client.get(f"{BASE}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/mpesa/stkpush/v1/processrequest" in page
    assert "254700000032" in page
    assert "254700000102" in page


def test_simulator_refuses_to_answer_outside_the_simulator_environment(client, settings):
    settings.MPESA_ENVIRONMENT = "sandbox"

    assert client.get(f"{BASE}/oauth/v1/generate?grant_type=client_credentials").status_code == 404
    assert client.get(f"{BASE}/").status_code == 404
