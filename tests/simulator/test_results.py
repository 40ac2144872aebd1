import re

import pytest

from .conftest import security_credential
from .test_stk_callbacks import items_of, pay

REVERSAL = "mpesa/reversal/v1/request"
B2C = "mpesa/b2c/v3/paymentrequest"
STATUS = "mpesa/transactionstatus/v1/query"


def parameters_of(result: dict) -> dict:
    return {
        p["Key"]: p.get("Value", "<absent>") for p in result["Result"]["ResultParameters"]["ResultParameter"]
    }


def paid_receipt(daraja, receiver, phone="254708374149", amount=10) -> str:
    _, url = pay(daraja, receiver, phone, amount=amount)
    return items_of(receiver.wait_for(url)[0])["MpesaReceiptNumber"]


def reversal_body(receiver, receipt, **overrides):
    body = {
        "Initiator": "testapi",
        "SecurityCredential": security_credential("Safaricom999!*!"),
        "CommandID": "TransactionReversal",
        "TransactionID": receipt,
        "Amount": "10",
        "ReceiverParty": "174379",
        "RecieverIdentifierType": "11",
        "ResultURL": receiver.url("reversal-result"),
        "QueueTimeOutURL": receiver.url("reversal-timeout"),
        "Remarks": "Refund order 1001",
        "Occasion": "Refund",
    }
    body.update(overrides)
    return body


def b2c_body(receiver, **overrides):
    body = {
        "OriginatorConversationID": f"bo-refund-{receiver.url('unused').rsplit('/', 1)[-1]}",
        "InitiatorName": "testapi",
        "SecurityCredential": security_credential("Safaricom999!*!"),
        "CommandID": "BusinessPayment",
        "Amount": 25,
        "PartyA": "600992",
        "PartyB": "254708374149",
        "Remarks": "Partial refund",
        "QueueTimeOutURL": receiver.url("b2c-timeout"),
        "ResultURL": receiver.url("b2c-result"),
        "Occassion": "Refund",
    }
    body.update(overrides)
    return body


def status_body(receiver, **overrides):
    body = {
        "Initiator": "testapi",
        "SecurityCredential": security_credential("Safaricom999!*!"),
        "CommandID": "TransactionStatusQuery",
        "PartyA": "174379",
        "IdentifierType": "4",
        "ResultURL": receiver.url("status-result"),
        "QueueTimeOutURL": receiver.url("status-timeout"),
        "Remarks": "Reconcile",
        "Occasion": "",
    }
    body.update(overrides)
    return body


def assert_accepted(response):
    assert response.status_code == 200, response.content
    ack = response.json()
    assert ack["ResponseCode"] == "0"
    assert ack["ResponseDescription"] == "Accept the service request successfully."
    assert re.fullmatch(r"AG_\d{8}_[0-9a-f]{20}", ack["ConversationID"])
    return ack


# --- Reversal -------------------------------------------------------------------------------------


def test_reversal_of_a_paid_receipt_succeeds(daraja, receiver):
    receipt = paid_receipt(daraja, receiver, amount=10)
    body = reversal_body(receiver, receipt)

    ack = assert_accepted(daraja.post(REVERSAL, body))
    [result] = receiver.wait_for(body["ResultURL"])

    envelope = result["Result"]
    assert envelope["ResultType"] == 0
    assert envelope["ResultCode"] == 0
    assert envelope["OriginatorConversationID"] == ack["OriginatorConversationID"]
    assert envelope["ConversationID"] == ack["ConversationID"]
    assert re.fullmatch(r"[A-Z0-9]{10}", envelope["TransactionID"]) and envelope["TransactionID"] != receipt
    assert envelope["ReferenceData"] == {
        "ReferenceItem": {"Key": "QueueTimeoutURL", "Value": body["QueueTimeOutURL"]}
    }
    parameters = parameters_of(result)
    assert parameters["OriginalTransactionID"] == receipt
    assert parameters["Amount"] == 10
    assert isinstance(parameters["TransCompletedTime"], int)
    assert set(parameters) == {
        "DebitAccountBalance",
        "Amount",
        "TransCompletedTime",
        "OriginalTransactionID",
        "Charge",
        "CreditPartyPublicName",
        "DebitPartyPublicName",
    }
    receiver.assert_silent(body["QueueTimeOutURL"], wait=0)


def test_second_reversal_of_the_same_receipt_is_already_reversed(daraja, receiver):
    receipt = paid_receipt(daraja, receiver)
    first = reversal_body(receiver, receipt)
    assert_accepted(daraja.post(REVERSAL, first))
    receiver.wait_for(first["ResultURL"])
    second = reversal_body(receiver, receipt)

    assert_accepted(daraja.post(REVERSAL, second))
    [result] = receiver.wait_for(second["ResultURL"])

    assert result["Result"]["ResultCode"] == "R000001"
    assert result["Result"]["ResultDesc"] == "The transaction has already been reversed."
    assert "ResultParameters" not in result["Result"]


def test_reversal_of_an_unknown_receipt_is_invalid_original_transaction(daraja, receiver):
    body = reversal_body(receiver, "SKE1234567")

    assert_accepted(daraja.post(REVERSAL, body))
    [result] = receiver.wait_for(body["ResultURL"])

    assert result["Result"]["ResultCode"] == "R000002"
    assert result["Result"]["ResultDesc"] == "The OriginalTransactionID is invalid."
    assert re.fullmatch(r"[A-Z0-9]{3}0{7}", result["Result"]["TransactionID"])


def test_reversal_with_a_bad_security_credential_is_accepted_then_fails_2001(daraja, receiver):
    receipt = paid_receipt(daraja, receiver)
    body = reversal_body(receiver, receipt, SecurityCredential=security_credential("wrong-password"))

    assert_accepted(daraja.post(REVERSAL, body))
    [result] = receiver.wait_for(body["ResultURL"])

    assert result["Result"]["ResultCode"] == 2001
    assert result["Result"]["ResultDesc"] == "The initiator information is invalid."


@pytest.mark.parametrize("credential", ["Safaricom999!*!", "bm90LWVuY3J5cHRlZA=="])
def test_plaintext_or_garbage_credential_fails_2001(daraja, receiver, credential):
    body = reversal_body(receiver, paid_receipt(daraja, receiver), SecurityCredential=credential)

    assert_accepted(daraja.post(REVERSAL, body))

    assert receiver.wait_for(body["ResultURL"])[0]["Result"]["ResultCode"] == 2001


def test_wrong_initiator_name_fails_2001(daraja, receiver):
    body = reversal_body(receiver, paid_receipt(daraja, receiver), Initiator="someoneelse")

    assert_accepted(daraja.post(REVERSAL, body))

    assert receiver.wait_for(body["ResultURL"])[0]["Result"]["ResultCode"] == 2001


def test_reversal_for_the_insufficient_float_payer_fails_with_code_1(daraja, receiver):
    body = reversal_body(receiver, paid_receipt(daraja, receiver, phone="254700000101"))

    assert_accepted(daraja.post(REVERSAL, body))
    [result] = receiver.wait_for(body["ResultURL"])

    assert result["Result"]["ResultCode"] == 1
    assert result["Result"]["ResultDesc"] == "The balance is insufficient for the transaction."


def test_reversal_queue_timeout_posts_an_echo_but_the_money_moved(daraja, receiver):
    receipt = paid_receipt(daraja, receiver, phone="254700000102")
    body = reversal_body(receiver, receipt)

    ack = assert_accepted(daraja.post(REVERSAL, body))
    [timeout] = receiver.wait_for(body["QueueTimeOutURL"])

    assert "Result" not in timeout
    assert timeout == {**body, "OriginatorConversationID": ack["OriginatorConversationID"]}
    receiver.assert_silent(body["ResultURL"])
    # What the refund worker does next: ask, never resend blindly.
    status = status_body(receiver, OriginalConversationID=ack["OriginatorConversationID"])
    assert_accepted(daraja.post(STATUS, status))
    [answer] = receiver.wait_for(status["ResultURL"])
    assert answer["Result"]["ResultCode"] == 0
    assert parameters_of(answer)["TransactionStatus"] == "Completed"
    assert parameters_of(answer)["ReasonType"] == "Reversal"
    again = reversal_body(receiver, receipt)
    assert_accepted(daraja.post(REVERSAL, again))
    assert receiver.wait_for(again["ResultURL"])[0]["Result"]["ResultCode"] == "R000001"


def test_silent_reversal_posts_nothing_but_status_shows_it_completed(daraja, receiver):
    receipt = paid_receipt(daraja, receiver, phone="254700000103")
    body = reversal_body(receiver, receipt)

    ack = assert_accepted(daraja.post(REVERSAL, body))

    receiver.assert_silent(body["ResultURL"])
    receiver.assert_silent(body["QueueTimeOutURL"], wait=0)
    status = status_body(receiver, OriginalConversationID=ack["ConversationID"])
    assert_accepted(daraja.post(STATUS, status))
    assert parameters_of(receiver.wait_for(status["ResultURL"])[0])["TransactionStatus"] == "Completed"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"RecieverIdentifierType": "4"}, "RecieverIdentifierType"),
        ({"Remarks": "x"}, "Remarks"),
        ({"Remarks": "x" * 101}, "Remarks"),
        ({"Amount": "10.50"}, "Amount"),
        ({"ResultURL": "result-url"}, "ResultURL"),
        ({"QueueTimeOutURL": "https://host/with space"}, "QueueTimeOutURL"),
        ({"TransactionID": "bad"}, "TransactionID"),
        ({"CommandID": "Reversal"}, "CommandID"),
        ({"Initiator": ""}, "Initiator"),
    ],
)
def test_reversal_field_validation(daraja, receiver, overrides, field):
    response = daraja.post(REVERSAL, reversal_body(receiver, "SKE1234567", **overrides))

    assert response.status_code == 400
    assert response.json()["errorMessage"] == f"Bad Request - Invalid {field}"


def test_correctly_spelt_receiver_identifier_type_is_invalid(daraja, receiver):
    body = reversal_body(receiver, "SKE1234567")
    body["ReceiverIdentifierType"] = body.pop("RecieverIdentifierType")

    response = daraja.post(REVERSAL, body)

    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Bad Request - Invalid RecieverIdentifierType"


# --- B2C ------------------------------------------------------------------------------------------


def test_b2c_payment_succeeds_with_documented_parameters(daraja, receiver):
    body = b2c_body(receiver, Amount="25")

    ack = assert_accepted(daraja.post(B2C, body))
    [result] = receiver.wait_for(body["ResultURL"])

    assert ack["OriginatorConversationID"] == body["OriginatorConversationID"]
    assert result["Result"]["ResultCode"] == 0
    assert result["Result"]["OriginatorConversationID"] == body["OriginatorConversationID"]
    parameters = parameters_of(result)
    assert parameters["TransactionAmount"] == 25
    assert parameters["TransactionReceipt"] == result["Result"]["TransactionID"]
    assert re.fullmatch(r"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}", parameters["TransactionCompletedDateTime"])
    assert parameters["B2CRecipientIsRegisteredCustomer"] == "Y"
    assert parameters["ReceiverPartyPublicName"].startswith("254708374149 - ")
    assert {
        "B2CUtilityAccountAvailableFunds",
        "B2CWorkingAccountAvailableFunds",
        "B2CChargesPaidAccountAvailableFunds",
    } <= set(parameters)


def test_b2c_repeat_originator_conversation_id_is_duplicate(daraja, receiver):
    body = b2c_body(receiver)
    assert_accepted(daraja.post(B2C, body))

    response = daraja.post(B2C, body)

    assert response.status_code == 500
    assert response.json()["errorCode"] == "500.002.1001"
    assert response.json()["errorMessage"] == "Duplicate OriginatorConversationID."


def test_b2c_v1_path_generates_the_originator_conversation_id(daraja, receiver):
    body = b2c_body(receiver)
    del body["OriginatorConversationID"]

    ack = assert_accepted(daraja.post("mpesa/b2c/v1/paymentrequest", body))

    assert (
        receiver.wait_for(body["ResultURL"])[0]["Result"]["OriginatorConversationID"]
        == ack["OriginatorConversationID"]
    )


def test_b2c_v3_requires_the_originator_conversation_id(daraja, receiver):
    body = b2c_body(receiver)
    del body["OriginatorConversationID"]

    response = daraja.post(B2C, body)

    assert response.json()["errorMessage"] == "Bad Request - Invalid OriginatorConversationID"


def test_b2c_insufficient_float_number_fails_with_code_1(daraja, receiver):
    body = b2c_body(receiver, PartyB="254700000101")

    assert_accepted(daraja.post(B2C, body))
    [result] = receiver.wait_for(body["ResultURL"])

    assert result["Result"]["ResultCode"] == 1
    assert "ResultParameters" not in result["Result"]


def test_b2c_queue_timeout_echoes_the_request_and_status_shows_it_paid(daraja, receiver):
    body = b2c_body(receiver, PartyB="254700000102")

    assert_accepted(daraja.post(B2C, body))
    [timeout] = receiver.wait_for(body["QueueTimeOutURL"])

    assert timeout == body
    receiver.assert_silent(body["ResultURL"])
    status = status_body(receiver, OriginalConversationID=body["OriginatorConversationID"])
    assert_accepted(daraja.post(STATUS, status))
    parameters = parameters_of(receiver.wait_for(status["ResultURL"])[0])
    assert parameters["TransactionStatus"] == "Completed"
    assert parameters["Amount"] == 25
    assert parameters["OriginatorConversationID"] == body["OriginatorConversationID"]


def test_b2c_with_a_bad_credential_fails_2001(daraja, receiver):
    body = b2c_body(receiver, SecurityCredential=security_credential("nope"))

    assert_accepted(daraja.post(B2C, body))

    assert receiver.wait_for(body["ResultURL"])[0]["Result"]["ResultCode"] == 2001


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"InitiatorName": ""}, "InitiatorName"),
        ({"CommandID": "Payment"}, "CommandID"),
        ({"Amount": 10.5}, "Amount"),
        ({"PartyB": "0708374149"}, "PartyB"),
        ({"Remarks": "x"}, "Remarks"),
        ({"ResultURL": "ftp://host/x"}, "ResultURL"),
        ({"Occassion": "x" * 101}, "Occassion"),
    ],
)
def test_b2c_field_validation(daraja, receiver, overrides, field):
    response = daraja.post(B2C, b2c_body(receiver, **overrides))

    assert response.status_code == 400
    assert response.json()["errorMessage"] == f"Bad Request - Invalid {field}"


# --- Transaction Status -----------------------------------------------------------------------------


def test_status_of_a_paid_stk_receipt_is_completed(daraja, receiver):
    receipt = paid_receipt(daraja, receiver, amount=40)
    body = status_body(receiver, TransactionID=receipt, Occasion="Check")

    ack = assert_accepted(daraja.post(STATUS, body))
    [result] = receiver.wait_for(body["ResultURL"])

    assert result["Result"]["ResultCode"] == 0
    assert result["Result"]["OriginatorConversationID"] == ack["OriginatorConversationID"]
    assert result["Result"]["ReferenceData"] == {"ReferenceItem": {"Key": "Occasion", "Value": "Check"}}
    parameters = parameters_of(result)
    assert parameters["ReceiptNo"] == receipt
    assert parameters["TransactionStatus"] == "Completed"
    assert parameters["Amount"] == 40
    assert isinstance(parameters["InitiatedTime"], int) and isinstance(parameters["FinalisedTime"], int)


def test_status_of_an_unknown_receipt_is_r000002(daraja, receiver):
    body = status_body(receiver, TransactionID="SKE7654321")

    assert_accepted(daraja.post(STATUS, body))
    [result] = receiver.wait_for(body["ResultURL"])

    assert result["Result"]["ResultCode"] == "R000002"
    assert "ResultParameters" not in result["Result"]


def test_status_of_a_failed_b2c_is_not_found(daraja, receiver):
    b2c = b2c_body(receiver, PartyB="254700000101")
    assert_accepted(daraja.post(B2C, b2c))
    body = status_body(receiver, OriginalConversationID=b2c["OriginatorConversationID"])

    assert_accepted(daraja.post(STATUS, body))

    assert receiver.wait_for(body["ResultURL"])[0]["Result"]["ResultCode"] == "R000002"


def test_status_needs_a_transaction_id_or_a_conversation_id(daraja, receiver):
    response = daraja.post(STATUS, status_body(receiver))

    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Bad Request - Invalid TransactionID"


def test_status_with_a_bad_credential_fails_2001(daraja, receiver):
    body = status_body(
        receiver, TransactionID=paid_receipt(daraja, receiver), SecurityCredential=security_credential("x")
    )

    assert_accepted(daraja.post(STATUS, body))

    assert receiver.wait_for(body["ResultURL"])[0]["Result"]["ResultCode"] == 2001


def test_reversal_and_b2c_answer_after_the_refund_latency(daraja, receiver, settings, monkeypatch):
    from payments.simulator import traffic

    waits = []
    monkeypatch.setattr(traffic, "_sleep", waits.append)
    settings.SIMULATOR_REFUND_LATENCY_MS = 1500
    receipt = paid_receipt(daraja, receiver)
    assert waits == []

    assert_accepted(daraja.post(REVERSAL, reversal_body(receiver, receipt)))
    assert_accepted(daraja.post(B2C, b2c_body(receiver)))

    assert waits == [1.5, 1.5]
