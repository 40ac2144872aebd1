"""M-Pesa Express: STK push, its callback, and STK Query (daraja.md §2-§5)."""

from datetime import timedelta
from typing import Any

from django.conf import settings

from . import delivery, ledger, state, validation
from .credentials import stk_password_is_valid
from .ids import checkout_request_id, daraja_timestamp, epoch_now, nairobi_at, receipt_number, request_id
from .outcomes import stk_outcome_for
from .validation import DarajaError

TRANSACTION_TYPES = {"CustomerPayBillOnline", "CustomerBuyGoodsOnline"}
ACCEPTED = "Success. Request accepted for processing"


def _merchant(body: dict) -> tuple[str, str]:
    """BusinessShortCode, Password and Timestamp checks shared by push and query."""
    shortcode = validation.shortcode(body, "BusinessShortCode")
    if shortcode != str(settings.MPESA_SHORTCODE):
        raise DarajaError("500.001.1001", "Merchant does not exist")
    if not isinstance(body.get("Password"), str) or not body["Password"]:
        raise validation.invalid("Password")
    return shortcode, validation.timestamp(body)


def _check_password(body: dict, shortcode: str, timestamp: str) -> None:
    if not stk_password_is_valid(shortcode=shortcode, timestamp=timestamp, password=body["Password"]):
        raise DarajaError("500.001.1001", "[MerchantValidate] - Wrong credentials")


def push(body: dict) -> dict[str, str]:
    shortcode, timestamp = _merchant(body)
    transaction_type = validation.choice(body, "TransactionType", TRANSACTION_TYPES)
    amount_kes = validation.amount(body)
    party_a = validation.msisdn(body, "PartyA")
    validation.shortcode(body, "PartyB")
    phone = validation.msisdn(body, "PhoneNumber")
    callback_url = validation.url(body, "CallBackURL")
    account_reference = validation.text(body, "AccountReference", max_length=12)
    validation.text(body, "TransactionDesc", max_length=13, required=False)
    _check_password(body, shortcode, timestamp)

    outcome = stk_outcome_for(party_a)
    if outcome.push_error:
        raise DarajaError(*outcome.push_error)

    accepted_at = epoch_now()
    delay = delivery.callback_delay()
    decided_at = accepted_at + delay
    merchant_request_id = request_id()
    receipt = None
    paid_kes = amount_kes - outcome.amount_shortfall_kes
    reason_type = (
        ledger.PAY_BILL_ONLINE if transaction_type == "CustomerPayBillOnline" else ledger.PAY_MERCHANT_ONLINE
    )
    if outcome.is_success:
        receipt = state.claim_unique(
            "receipt",
            lambda _attempt: receipt_number(nairobi_at(decided_at)),
            lambda _receipt: {
                "kind": "stk",
                "amount": paid_kes,
                "phone": party_a,
                "party": shortcode,
                "reason_type": reason_type,
                "initiated_at": accepted_at,
                "completed_at": decided_at,
                "originator_conversation_id": None,
                "conversation_id": None,
            },
        )
        # The money moves now, whatever becomes of the callback (some are never sent).
        ledger.append(
            shortcode=shortcode,
            receipt=receipt,
            reason_type=reason_type,
            completed_at=decided_at,
            initiated_at=accepted_at,
            paid_in=paid_kes,
            phone=party_a,
            account=account_reference,
        )

    pushed_at = nairobi_at(accepted_at)
    push_record = {
        "merchant_request_id": merchant_request_id,
        "shortcode": shortcode,
        "phone": party_a,
        "amount": amount_kes,
        "result_code": outcome.result_code,
        "result_desc": outcome.result_desc,
        "decided_at": decided_at,
        "receipt": receipt,
    }
    checkout_id = state.claim_unique(
        "stk",
        lambda attempt: checkout_request_id(pushed_at + timedelta(milliseconds=attempt), phone),
        lambda checkout: {**push_record, "checkout_request_id": checkout},
    )

    callback = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": merchant_request_id,
                "CheckoutRequestID": checkout_id,
                "ResultCode": outcome.result_code,
                "ResultDesc": outcome.result_desc,
            }
        }
    }
    if outcome.is_success:
        callback["Body"]["stkCallback"]["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": float(paid_kes)},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},  # present without a Value in production callbacks
                {"Name": "TransactionDate", "Value": int(daraja_timestamp(nairobi_at(decided_at)))},
                {"Name": "PhoneNumber", "Value": int(phone)},
            ]
        }
    delivery.schedule(callback_url, callback, delay=delay, copies=outcome.callback_copies)

    return {
        "MerchantRequestID": merchant_request_id,
        "CheckoutRequestID": checkout_id,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED,
        "CustomerMessage": ACCEPTED,
    }


def query(body: dict) -> dict[str, Any]:
    shortcode, timestamp = _merchant(body)
    checkout_id = body.get("CheckoutRequestID")
    if not isinstance(checkout_id, str) or not checkout_id:
        raise validation.invalid("CheckoutRequestID")
    _check_password(body, shortcode, timestamp)
    record = state.get("stk", checkout_id)
    if record is None:
        raise validation.invalid("CheckoutRequestID")
    if epoch_now() < record["decided_at"]:
        raise DarajaError("500.001.1001", "The transaction is being processed", request_id=checkout_id)
    return {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": record["merchant_request_id"],
        "CheckoutRequestID": checkout_id,
        "ResultCode": str(record["result_code"]),
        "ResultDesc": record["result_desc"],
    }
