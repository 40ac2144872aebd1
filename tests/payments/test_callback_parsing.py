import datetime as dt
from decimal import Decimal

import pytest

from payments.daraja.results import CallbackFormatError, parse_stk_callback
from tests.conftest import daraja_payload, stk_callback


def test_safaricoms_success_sample_is_parsed_with_receipt_amount_and_time():
    result = parse_stk_callback(daraja_payload("stk_callback_success"))

    assert result.is_success
    assert result.checkout_request_id == "ws_CO_191220191020363925"
    assert result.merchant_request_id == "29115-34620561-1"
    assert result.result_code == "0"
    assert result.amount == Decimal("1.00")
    assert result.receipt_number == "NLJ7RT61SV"
    # 10:21:15 in Nairobi (UTC+3, no DST) is 07:21:15 UTC.
    assert result.transaction_date == dt.datetime(2019, 12, 19, 7, 21, 15, tzinfo=dt.UTC)
    assert result.problems == ()


def test_safaricoms_cancelled_sample_is_a_failure_without_metadata():
    result = parse_stk_callback(daraja_payload("stk_callback_cancelled"))

    assert not result.is_success
    assert result.result_code == "1032"
    assert result.result_desc == "Request cancelled by user"
    assert result.amount is None
    assert result.receipt_number == ""
    assert result.problems == ()


def test_production_balance_item_without_value_is_tolerated():
    result = parse_stk_callback(daraja_payload("stk_callback_success_balance_without_value"))

    assert result.is_success
    assert result.receipt_number == "QKH94M1Z11"
    assert result.amount == Decimal("1")
    assert result.transaction_date == dt.datetime(2022, 11, 17, 12, 57, 45, tzinfo=dt.UTC)
    assert result.problems == ()


def test_metadata_items_in_another_order_give_the_same_result():
    reordered = parse_stk_callback(daraja_payload("stk_callback_success_items_reordered"))
    original = parse_stk_callback(daraja_payload("stk_callback_success"))

    assert reordered == original


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(0, "0"), ("0", "0"), (0.0, "0"), (1032, "1032"), ("1032", "1032"), ("SFC_IC0003", "SFC_IC0003")],
)
def test_result_code_as_number_or_string_is_kept_as_text(sent, kept):
    result = parse_stk_callback(stk_callback("ws_CO_1", result_code=sent))

    assert result.result_code == kept
    assert result.is_success is (kept == "0")


@pytest.mark.parametrize(
    ("sent", "amount"),
    [
        (1.0, Decimal("1")),
        (1.00, Decimal("1")),
        ("100", Decimal("100")),
        (100, Decimal("100")),
        (100.5, Decimal("100.5")),
    ],
)
def test_amount_as_float_or_string_is_read_exactly(sent, amount):
    result = parse_stk_callback(stk_callback("ws_CO_1", amount=sent))

    assert result.amount == amount
    assert result.problems == ()


@pytest.mark.parametrize(
    "garbage", ["yesterday", 2019, "20191319102115", "", None, True, "00010101000000", 1e30]
)
def test_unreadable_transaction_date_is_flagged_not_fatal(garbage):
    result = parse_stk_callback(stk_callback("ws_CO_1", transaction_date=garbage))

    assert result.transaction_date is None
    assert result.receipt_number == "NLJ7RT61SV"
    assert "TransactionDate unparseable" in result.problems


@pytest.mark.parametrize("absurd", [1e20, "1e20", 10**15, "NaN", "Infinity"])
def test_absurd_amount_is_flagged_not_fatal(absurd):
    result = parse_stk_callback(stk_callback("ws_CO_1", amount=absurd))

    assert result.amount is None
    assert "Amount missing or not a number" in result.problems


def test_transaction_date_as_a_string_is_read_as_nairobi_time():
    result = parse_stk_callback(stk_callback("ws_CO_1", transaction_date="20240711013005"))

    assert result.transaction_date == dt.datetime(2024, 7, 10, 22, 30, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        (None, "Amount missing or not a number"),
        ({"Item": []}, "MpesaReceiptNumber missing"),
        ({"Item": [{"Name": "Amount", "Value": 10}]}, "MpesaReceiptNumber missing"),
        ({"Item": [{"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"}]}, "Amount missing or not a number"),
        (
            {"Item": [{"Name": "Amount", "Value": "ten"}, {"Name": "MpesaReceiptNumber", "Value": "X"}]},
            "Amount missing or not a number",
        ),
        ({"Item": "not a list"}, "Amount missing or not a number"),
    ],
)
def test_success_without_required_metadata_is_flagged(metadata, problem):
    body = stk_callback("ws_CO_1")
    if metadata is None:
        del body["Body"]["stkCallback"]["CallbackMetadata"]
    else:
        body["Body"]["stkCallback"]["CallbackMetadata"] = metadata

    result = parse_stk_callback(body)

    assert result.is_success
    assert problem in result.problems


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([], id="list"),
        pytest.param("text", id="string"),
        pytest.param({}, id="empty-object"),
        pytest.param({"Body": "x"}, id="body-not-object"),
        pytest.param({"Body": {"stkCallback": []}}, id="callback-not-object"),
        pytest.param({"Body": {"stkCallback": {"ResultCode": 0}}}, id="no-checkout-id"),
        pytest.param(
            {"Body": {"stkCallback": {"CheckoutRequestID": 7, "ResultCode": 0}}}, id="checkout-id-number"
        ),
        pytest.param(
            {"Body": {"stkCallback": {"CheckoutRequestID": "x" * 65, "ResultCode": 0}}}, id="checkout-id-long"
        ),
        pytest.param({"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1"}}}, id="no-result-code"),
        pytest.param(
            {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": None}}}, id="null-code"
        ),
        pytest.param(
            {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": True}}}, id="bool-code"
        ),
        pytest.param(
            {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": "0\x00"}}}, id="nul-code"
        ),
        pytest.param(
            {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1\r\n", "ResultCode": 0}}}, id="crlf-id"
        ),
    ],
)
def test_bodies_that_are_not_stk_callbacks_are_refused(body):
    with pytest.raises(CallbackFormatError):
        parse_stk_callback(body)


def test_hostile_result_desc_is_cut_to_one_line_of_bounded_length():
    hostile = "<script>alert(1)</script>\r\nX-Injected: yes\n" + "A" * 100_000

    result = parse_stk_callback(stk_callback("ws_CO_1", result_code=1032, result_desc=hostile))

    assert len(result.result_desc) <= 512
    assert "\r" not in result.result_desc and "\n" not in result.result_desc
    assert result.result_desc.startswith("<script>")  # kept as data; escaping is the renderer's job


def test_nul_characters_are_dropped_from_stored_text():
    result = parse_stk_callback(stk_callback("ws_CO_1", receipt="NLJ7\x00RT61SV", result_desc="ok\x00"))

    assert result.receipt_number == "NLJ7RT61SV"
    assert result.result_desc == "ok"
