import re
from datetime import datetime, timedelta

import pytest
import time_machine

from .conftest import NAIROBI


def items_of(callback: dict) -> dict:
    items = callback["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    return {item["Name"]: item.get("Value", "<absent>") for item in items}


def pay(daraja, receiver, phone, amount=10):
    url = receiver.url("stk")
    response = daraja.push(PartyA=phone, PhoneNumber=phone, Amount=amount, CallBackURL=url)
    assert response.status_code == 200, response.content
    return response.json(), url


def test_success_callback_has_safaricoms_exact_shape(daraja, receiver):
    ack, url = pay(daraja, receiver, "254708374149", amount=10)

    [callback] = receiver.wait_for(url)

    stk = callback["Body"]["stkCallback"]
    assert stk["MerchantRequestID"] == ack["MerchantRequestID"]
    assert stk["CheckoutRequestID"] == ack["CheckoutRequestID"]
    assert stk["ResultCode"] == 0 and isinstance(stk["ResultCode"], int)
    assert stk["ResultDesc"] == "The service request is processed successfully."
    items = stk["CallbackMetadata"]["Item"]
    assert [item["Name"] for item in items] == [
        "Amount",
        "MpesaReceiptNumber",
        "Balance",
        "TransactionDate",
        "PhoneNumber",
    ]
    assert items[2] == {"Name": "Balance"}
    values = items_of(callback)
    assert values["Amount"] == 10.0 and isinstance(values["Amount"], float)
    assert re.fullmatch(r"[A-Z0-9]{10}", values["MpesaReceiptNumber"])
    assert isinstance(values["TransactionDate"], int)
    paid_at = datetime.strptime(str(values["TransactionDate"]), "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    assert abs(paid_at - datetime.now(NAIROBI)) < timedelta(minutes=1)
    assert values["PhoneNumber"] == 254708374149


def test_unlisted_numbers_succeed_with_unique_receipts(daraja, receiver):
    _, first_url = pay(daraja, receiver, "254712000001")
    _, second_url = pay(daraja, receiver, "254112000002")

    first = items_of(receiver.wait_for(first_url)[0])["MpesaReceiptNumber"]
    second = items_of(receiver.wait_for(second_url)[0])["MpesaReceiptNumber"]

    assert first != second


@pytest.mark.parametrize(
    ("phone", "code", "desc"),
    [
        ("254700000032", 1032, "Request cancelled by user"),
        ("254700000037", 1037, "DS timeout user cannot be reached"),
        ("254700000001", 1, "The balance is insufficient for the transaction."),
        ("254700002001", 2001, "The initiator information is invalid."),
        ("254700001019", 1019, "Transaction has expired"),
    ],
)
def test_failure_callbacks_carry_a_numeric_code_and_no_metadata(daraja, receiver, phone, code, desc):
    ack, url = pay(daraja, receiver, phone)

    [callback] = receiver.wait_for(url)

    assert callback == {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": ack["MerchantRequestID"],
                "CheckoutRequestID": ack["CheckoutRequestID"],
                "ResultCode": code,
                "ResultDesc": desc,
            }
        }
    }


def test_lost_callback_number_sends_nothing_but_query_says_paid(daraja, receiver):
    ack, url = pay(daraja, receiver, "254700000404")

    receiver.assert_silent(url)
    response = daraja.query(ack["CheckoutRequestID"])

    assert response.status_code == 200
    assert response.json()["ResultCode"] == "0"


def test_duplicate_callback_number_gets_the_same_body_twice(daraja, receiver):
    _, url = pay(daraja, receiver, "254700000002")

    first, second = receiver.wait_for(url, count=2)

    assert first == second
    assert first["Body"]["stkCallback"]["ResultCode"] == 0


def test_short_amount_number_reports_one_shilling_less(daraja, receiver):
    _, url = pay(daraja, receiver, "254700000098", amount=100)

    [callback] = receiver.wait_for(url)

    assert items_of(callback)["Amount"] == 99.0


def test_callback_waits_for_the_configured_delay(daraja, receiver, settings):
    settings.SIMULATOR_CALLBACK_DELAY = 0.3
    _, url = pay(daraja, receiver, "254708374149")

    assert receiver.received(url) == []
    receiver.wait_for(url)


def test_query_is_being_processed_until_the_outcome_is_decided(daraja, receiver, settings):
    settings.SIMULATOR_CALLBACK_DELAY = 60
    with time_machine.travel(datetime.now(NAIROBI), tick=True) as traveller:
        ack, _ = pay(daraja, receiver, "254700000032")
        pending = daraja.query(ack["CheckoutRequestID"])
        traveller.shift(timedelta(seconds=61))
        decided = daraja.query(ack["CheckoutRequestID"])

    assert pending.status_code == 500
    assert pending.json() == {
        "requestId": ack["CheckoutRequestID"],
        "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed",
    }
    assert decided.status_code == 200
    assert decided.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": ack["MerchantRequestID"],
        "CheckoutRequestID": ack["CheckoutRequestID"],
        "ResultCode": "1032",
        "ResultDesc": "Request cancelled by user",
    }


def test_query_of_a_success_has_no_receipt_amount_or_date(daraja, receiver):
    ack, url = pay(daraja, receiver, "254708374149")
    receiver.wait_for(url)

    body = daraja.query(ack["CheckoutRequestID"]).json()

    assert body["ResultCode"] == "0"
    assert body["ResultDesc"] == "The service request is processed successfully."
    assert not {"MpesaReceiptNumber", "Amount", "TransactionDate"} & set(body)


def test_query_of_an_unknown_checkout_is_invalid(daraja):
    response = daraja.query("ws_CO_01012026000000000708374149")

    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"


def test_query_with_a_wrong_password_is_wrong_credentials(daraja, receiver):
    ack, _ = pay(daraja, receiver, "254708374149")

    response = daraja.query(ack["CheckoutRequestID"], Password="d3Jvbmc=")

    assert response.status_code == 500
    assert response.json()["errorMessage"] == "[MerchantValidate] - Wrong credentials"
