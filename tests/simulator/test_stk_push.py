import re
from datetime import datetime, timedelta

import pytest

from .conftest import BASE, NAIROBI, nairobi_timestamp

PUSH = "mpesa/stkpush/v1/processrequest"


def test_valid_push_is_accepted_with_daraja_identifiers(daraja):
    response = daraja.push(PartyA="254712345678", PhoneNumber="254712345678")

    assert response.status_code == 200
    body = response.json()
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "Success. Request accepted for processing"
    assert body["CustomerMessage"] == "Success. Request accepted for processing"
    assert re.fullmatch(r"ws_CO_\d{17}712345678", body["CheckoutRequestID"])
    assert body["MerchantRequestID"]


def test_checkout_request_ids_are_unique_within_the_same_millisecond(daraja):
    ids = {daraja.push().json()["CheckoutRequestID"] for _ in range(5)}

    assert len(ids) == 5


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"Amount": 10.5}, "Amount"),
        ({"Amount": "10.50"}, "Amount"),
        ({"Amount": 10.0}, "Amount"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": 250001}, "Amount"),
        ({"Amount": "ten"}, "Amount"),
        ({"Amount": True}, "Amount"),
        ({"PartyA": "0712345678"}, "PartyA"),
        ({"PartyA": "+254712345678"}, "PartyA"),
        ({"PartyA": "254612345678"}, "PartyA"),
        ({"PhoneNumber": "25471234567"}, "PhoneNumber"),
        ({"PhoneNumber": "2547123456789"}, "PhoneNumber"),
        ({"AccountReference": "ABCDEFGHIJKLM"}, "AccountReference"),
        ({"AccountReference": ""}, "AccountReference"),
        ({"TransactionDesc": "ABCDEFGHIJKLMN"}, "TransactionDesc"),
        ({"TransactionType": "CustomerPayBill"}, "TransactionType"),
        ({"CallBackURL": "ftp://example.invalid/cb"}, "CallBackURL"),
        ({"CallBackURL": " https://example.invalid/cb"}, "CallBackURL"),
        ({"CallBackURL": "https://example.invalid/c b"}, "CallBackURL"),
        ({"CallBackURL": "not a url"}, "CallBackURL"),
        ({"PartyB": ""}, "PartyB"),
        ({"BusinessShortCode": "17"}, "BusinessShortCode"),
    ],
)
def test_invalid_field_is_rejected_like_daraja(daraja, overrides, field):
    response = daraja.push(**overrides)

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.02"
    assert response.json()["errorMessage"] == f"Bad Request - Invalid {field}"


@pytest.mark.parametrize("amount", [1, "1", 250000, "250000"])
def test_whole_amounts_as_number_or_string_are_accepted(daraja, amount):
    assert daraja.push(Amount=amount).status_code == 200


def test_safaricom_01_numbers_are_accepted(daraja):
    assert daraja.push(PartyA="254112345678", PhoneNumber="254112345678").status_code == 200


def test_missing_transaction_desc_is_accepted(daraja):
    body = daraja.stk_body()
    del body["TransactionDesc"]

    assert daraja.post(PUSH, body).status_code == 200


def test_wrong_password_is_wrong_credentials(daraja):
    response = daraja.push(Password="bm90IHRoZSBwYXNzd29yZA==")

    assert response.status_code == 500
    assert response.json()["errorCode"] == "500.001.1001"
    assert response.json()["errorMessage"] == "[MerchantValidate] - Wrong credentials"


def test_password_built_from_another_timestamp_is_wrong_credentials(daraja):
    body = daraja.stk_body()
    body["Timestamp"] = nairobi_timestamp(datetime.now(NAIROBI) - timedelta(minutes=1))

    response = daraja.post(PUSH, body)

    assert response.status_code == 500
    assert response.json()["errorMessage"] == "[MerchantValidate] - Wrong credentials"


@pytest.mark.parametrize("minutes", [-11, 11])
def test_stale_or_future_timestamp_is_invalid(daraja, minutes):
    response = daraja.push(timestamp=nairobi_timestamp(datetime.now(NAIROBI) + timedelta(minutes=minutes)))

    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Bad Request - Invalid Timestamp"


def test_utc_timestamp_is_invalid_because_daraja_wants_nairobi_time(daraja):
    utc_wall_clock = datetime.now(NAIROBI).replace(tzinfo=None) - timedelta(hours=3)

    response = daraja.push(timestamp=utc_wall_clock.strftime("%Y%m%d%H%M%S"))

    assert response.json()["errorMessage"] == "Bad Request - Invalid Timestamp"


def test_unknown_shortcode_is_merchant_does_not_exist(daraja):
    response = daraja.push(BusinessShortCode="600000")

    assert response.status_code == 500
    assert response.json()["errorCode"] == "500.001.1001"
    assert response.json()["errorMessage"] == "Merchant does not exist"


def test_form_encoded_body_reads_as_invalid_business_short_code(client, daraja):
    token = daraja.login()

    response = client.post(f"{BASE}/{PUSH}", daraja.stk_body(), HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Bad Request - Invalid BusinessShortCode"


def test_malformed_json_is_invalid_request_payload(client, daraja):
    token = daraja.login()

    response = client.post(
        f"{BASE}/{PUSH}", "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.05"


def test_system_busy_number_gets_http_500_and_no_checkout(daraja):
    response = daraja.push(PartyA="254700000500", PhoneNumber="254700000500")

    assert response.status_code == 500
    assert response.json()["errorCode"] == "500.003.02"
    assert response.json()["errorMessage"] == "System is busy. Please try again in few minutes."
