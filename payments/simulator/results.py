"""The asynchronous "Result" APIs: Reversal, B2C and Transaction Status (daraja.md §6).

Each request is acknowledged at once; its outcome is decided at request time and posted to ResultURL (or,
for a queue timeout, the request is echoed to QueueTimeOutURL) after the callback delay.
"""

import re
from datetime import datetime
from typing import Any

from . import delivery, ledger, state, validation
from .credentials import initiator_is_valid
from .ids import (
    conversation_id,
    daraja_timestamp,
    epoch_now,
    nairobi_at,
    placeholder_transaction_id,
    receipt_number,
    request_id,
)
from .outcomes import (
    ALREADY_REVERSED_CODE,
    ALREADY_REVERSED_DESC,
    INITIATOR_INVALID_DESC,
    INVALID_ORIGINAL_TRANSACTION_CODE,
    INVALID_ORIGINAL_TRANSACTION_DESC,
    SUCCESS_DESC,
    ResultOutcome,
    result_outcome_for,
)
from .validation import DarajaError

ACCEPTED = "Accept the service request successfully."
B2C_COMMANDS = {"SalaryPayment", "BusinessPayment", "PromotionPayment"}
B2C_REASON_TYPES = {
    "SalaryPayment": "Salary Payment via API",
    "BusinessPayment": "Business Payment to Customer via API",
    "PromotionPayment": "Promotion Payment via API",
}
TRANSACTION_STATUS_IDENTIFIER_TYPES = {"1", "2", "4"}
UTILITY_BALANCE_KES = 500_000.00
RECEIPT_RE = re.compile(r"^[A-Z0-9]{10}$")
CUSTOMER_NAME = "SIMULATED CUSTOMER"
MERCHANT_NAME = "Simulator Merchant"


def _no_value(key: str) -> dict[str, Any]:
    return {"Key": key}


def _parameter(key: str, value: Any) -> dict[str, Any]:
    return _no_value(key) if value is None or value == "" else {"Key": key, "Value": value}


def _envelope(
    *,
    code: int | str,
    desc: str,
    originator_conversation_id: str,
    conversation_id_: str,
    transaction_id: str,
    reference_item: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": desc,
        "OriginatorConversationID": originator_conversation_id,
        "ConversationID": conversation_id_,
        "TransactionID": transaction_id,
    }
    if parameters is not None:
        result["ResultParameters"] = {"ResultParameter": parameters}
    result["ReferenceData"] = {"ReferenceItem": reference_item}
    return {"Result": result}


def _number(epoch_seconds: float) -> int:
    return int(daraja_timestamp(nairobi_at(epoch_seconds)))


def _common(body: dict, initiator_field: str) -> tuple[str, str]:
    initiator = validation.text(body, initiator_field, max_length=100)
    credential = body.get("SecurityCredential")
    if not isinstance(credential, str) or not credential:
        raise validation.invalid("SecurityCredential")
    return initiator, credential


def _urls(body: dict) -> tuple[str, str]:
    return validation.url(body, "QueueTimeOutURL"), validation.url(body, "ResultURL")


def _claim_receipt(moment: datetime, record: dict[str, Any]) -> str:
    return state.claim_unique("receipt", lambda _attempt: receipt_number(moment), lambda _r: record)


def _record_conversation(conversation: str, originator: str, record: dict[str, Any]) -> None:
    state.put("conversation", conversation, {**record, "originator_conversation_id": originator})
    state.put("originator", originator, {"conversation_id": conversation})


def _ack(originator: str, conversation: str) -> dict[str, str]:
    return {
        "OriginatorConversationID": originator,
        "ConversationID": conversation,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED,
    }


def _deliver(
    *, body: dict, originator: str, result: dict | None, outcome: ResultOutcome | None, delay: float
) -> None:
    """Post the Result, or (queue timeout) echo the request to QueueTimeOutURL, or post nothing."""
    if outcome is not None and outcome.posts_queue_timeout:
        # Undocumented payload; modelled on the 121-platform DTO: the request echoed, no Result wrapper.
        echo = {**body, "OriginatorConversationID": originator}
        delivery.schedule(body["QueueTimeOutURL"], echo, delay=delay)
    elif result is not None and (outcome is None or outcome.posts_result):
        delivery.schedule(body["ResultURL"], result, delay=delay)


# --- Reversal -------------------------------------------------------------------------------------


def reversal(body: dict) -> dict[str, str]:
    initiator, credential = _common(body, "Initiator")
    validation.choice(body, "CommandID", {"TransactionReversal"})
    original_receipt = validation.text(body, "TransactionID", max_length=10)
    if not RECEIPT_RE.match(original_receipt):
        raise validation.invalid("TransactionID")
    validation.amount(body)
    receiver_party = validation.shortcode(body, "ReceiverParty")
    # Safaricom's spelling; the correctly spelt key is not read at all (LNMOnlineAndroidSample#8).
    validation.choice(body, "RecieverIdentifierType", {"11"})
    queue_timeout_url, _ = _urls(body)
    validation.text(body, "Remarks", min_length=2, max_length=100)
    validation.text(body, "Occasion", max_length=100, required=False)

    now = epoch_now()
    delay = delivery.callback_delay()
    completed_at = now + delay
    originator = request_id()
    conversation = conversation_id(nairobi_at(now))
    reference = {"Key": "QueueTimeoutURL", "Value": queue_timeout_url}

    def failure(code: int | str, desc: str, outcome: ResultOutcome | None = None) -> dict[str, str]:
        _record_conversation(conversation, originator, {"api": "reversal", "receipt": None})
        result = _envelope(
            code=code,
            desc=desc,
            originator_conversation_id=originator,
            conversation_id_=conversation,
            transaction_id=placeholder_transaction_id(nairobi_at(completed_at)),
            reference_item=reference,
        )
        _deliver(body=body, originator=originator, result=result, outcome=outcome, delay=delay)
        return _ack(originator, conversation)

    if not initiator_is_valid(initiator=initiator, security_credential=credential):
        return failure(2001, INITIATOR_INVALID_DESC)
    original = state.get("receipt", original_receipt)
    # A payment exists for the simulator once its outcome has been decided, and only STK payments revert.
    if original is None or original["kind"] != "stk" or original["completed_at"] > now:
        return failure(INVALID_ORIGINAL_TRANSACTION_CODE, INVALID_ORIGINAL_TRANSACTION_DESC)
    outcome = result_outcome_for(original["phone"])
    if not outcome.money_moves:
        return failure(outcome.result_code, outcome.result_desc, outcome)

    # Claimed before anything is issued: of two concurrent reversals of one receipt, exactly one wins.
    if not state.claim("reversed", original_receipt, {"conversation_id": conversation}):
        return failure(ALREADY_REVERSED_CODE, ALREADY_REVERSED_DESC)
    reversal_receipt = _claim_receipt(
        nairobi_at(completed_at),
        {
            "kind": "reversal",
            "amount": original["amount"],
            "phone": original["phone"],
            "party": receiver_party,
            "reason_type": "Reversal",
            "original_receipt": original_receipt,
            "initiated_at": now,
            "completed_at": completed_at,
            "originator_conversation_id": originator,
            "conversation_id": conversation,
        },
    )
    # The money moves now, even when no Result is ever posted (queue timeout, silent).
    ledger.append(
        shortcode=original["party"],
        receipt=reversal_receipt,
        reason_type=ledger.REVERSAL,
        completed_at=completed_at,
        initiated_at=now,
        withdrawn=original["amount"],
        phone=original["phone"],
        linked_receipt=original_receipt,
    )
    _record_conversation(conversation, originator, {"api": "reversal", "receipt": reversal_receipt})
    result = _envelope(
        code=0,
        desc=SUCCESS_DESC,
        originator_conversation_id=originator,
        conversation_id_=conversation,
        transaction_id=reversal_receipt,
        reference_item=reference,
        parameters=[
            _parameter(
                "DebitAccountBalance",
                f"Utility Account|KES|{UTILITY_BALANCE_KES:.2f}|{UTILITY_BALANCE_KES:.2f}|0.00|0.00",
            ),
            _parameter("Amount", original["amount"]),
            _parameter("TransCompletedTime", _number(completed_at)),
            _parameter("OriginalTransactionID", original_receipt),
            _parameter("Charge", 0),
            _parameter("CreditPartyPublicName", f"{original['phone']} - {CUSTOMER_NAME}"),
            _parameter("DebitPartyPublicName", f"{receiver_party} - {MERCHANT_NAME}"),
        ],
    )
    _deliver(body=body, originator=originator, result=result, outcome=outcome, delay=delay)
    return _ack(originator, conversation)


# --- B2C ------------------------------------------------------------------------------------------


def _ledger_b2c(
    *,
    shortcode: str,
    receipt: str,
    reason_type: str,
    amount_kes: int,
    phone: str,
    initiated_at: float,
    completed_at: float,
) -> None:
    """The payment and its charge: two statement lines under one receipt, as on the portal."""
    common = {"shortcode": shortcode, "receipt": receipt, "completed_at": completed_at}
    ledger.append(
        **common, reason_type=reason_type, initiated_at=initiated_at, withdrawn=amount_kes, phone=phone
    )
    ledger.append(
        **common,
        reason_type=ledger.B2C_CHARGE,
        initiated_at=initiated_at,
        withdrawn=ledger.b2c_charge_kes(amount_kes),
    )


def b2c(body: dict, *, version: int) -> dict[str, str]:
    if version >= 3 or "OriginatorConversationID" in body:
        originator = validation.text(body, "OriginatorConversationID", max_length=128)
    else:
        originator = request_id()
    initiator, credential = _common(body, "InitiatorName")
    command = validation.choice(body, "CommandID", B2C_COMMANDS)
    amount_kes = validation.amount(body)
    party_a = validation.shortcode(body, "PartyA")
    party_b = validation.msisdn(body, "PartyB")
    validation.text(body, "Remarks", min_length=2, max_length=100)
    queue_timeout_url, _ = _urls(body)
    validation.text(body, "Occassion", max_length=100, required=False)  # sic, double s

    # The caller's key is its guard against double disbursement (daraja.md §6.4).
    if not state.claim("b2c-originator", originator, {"claimed": True}):
        raise DarajaError("500.002.1001", "Duplicate OriginatorConversationID.")

    now = epoch_now()
    delay = delivery.callback_delay()
    completed_at = now + delay
    conversation = conversation_id(nairobi_at(now))
    reference = {"Key": "QueueTimeoutURL", "Value": queue_timeout_url}

    if not initiator_is_valid(initiator=initiator, security_credential=credential):
        outcome, receipt = None, None
        code, desc = 2001, INITIATOR_INVALID_DESC
    else:
        outcome = result_outcome_for(party_b)
        code, desc = outcome.result_code, outcome.result_desc
        receipt = None
        if outcome.money_moves:
            receipt = _claim_receipt(
                nairobi_at(completed_at),
                {
                    "kind": "b2c",
                    "amount": amount_kes,
                    "phone": party_b,
                    "party": party_a,
                    "reason_type": B2C_REASON_TYPES[command],
                    "initiated_at": now,
                    "completed_at": completed_at,
                    "originator_conversation_id": originator,
                    "conversation_id": conversation,
                },
            )
            # The money moves now, even when no Result is ever posted (queue timeout, silent).
            _ledger_b2c(
                shortcode=party_a,
                receipt=receipt,
                reason_type=B2C_REASON_TYPES[command],
                amount_kes=amount_kes,
                phone=party_b,
                initiated_at=now,
                completed_at=completed_at,
            )
    _record_conversation(conversation, originator, {"api": "b2c", "receipt": receipt})

    parameters = None
    if receipt is not None:
        completed = nairobi_at(completed_at)
        parameters = [
            _parameter("TransactionAmount", amount_kes),
            _parameter("TransactionReceipt", receipt),
            _parameter("B2CRecipientIsRegisteredCustomer", "Y"),
            _parameter("B2CChargesPaidAccountAvailableFunds", 0.00),
            _parameter("ReceiverPartyPublicName", f"{party_b} - {CUSTOMER_NAME}"),
            # DD.MM.YYYY, unlike every other Daraja date (daraja.md §6.4).
            _parameter("TransactionCompletedDateTime", completed.strftime("%d.%m.%Y %H:%M:%S")),
            _parameter("B2CUtilityAccountAvailableFunds", UTILITY_BALANCE_KES),
            _parameter("B2CWorkingAccountAvailableFunds", 0.00),
        ]
    result = _envelope(
        code=code,
        desc=desc,
        originator_conversation_id=originator,
        conversation_id_=conversation,
        transaction_id=receipt or placeholder_transaction_id(nairobi_at(completed_at)),
        reference_item=reference,
        parameters=parameters,
    )
    _deliver(body=body, originator=originator, result=result, outcome=outcome, delay=delay)
    return _ack(originator, conversation)


# --- Transaction Status -----------------------------------------------------------------------------


def _find_transaction(transaction_id: str, original_conversation_id: str, known_by: float) -> str | None:
    """The receipt a status query refers to, if that transaction has completed by `known_by`."""
    candidates: list[str] = []
    if transaction_id:
        candidates.append(transaction_id)
    if original_conversation_id:
        pointer = state.get("originator", original_conversation_id)
        conversation = pointer["conversation_id"] if pointer else original_conversation_id
        record = state.get("conversation", conversation)
        if record and record["receipt"]:
            candidates.append(record["receipt"])
    for receipt in candidates:
        record = state.get("receipt", receipt)
        if record is not None and record["completed_at"] <= known_by:
            return receipt
    return None


def _status_parameters(receipt: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    customer = f"{record['phone']} - {CUSTOMER_NAME}"
    merchant = f"{record['party']} - {MERCHANT_NAME}"
    customer_pays = record["kind"] in {"stk", "c2b"}  # an STK payment, or a Pay Bill from the menu
    return [
        _parameter("DebitPartyName", customer if customer_pays else merchant),
        _parameter("CreditPartyName", merchant if customer_pays else customer),
        _parameter("OriginatorConversationID", record["originator_conversation_id"]),
        _parameter("InitiatedTime", _number(record["initiated_at"])),
        _parameter("DebitAccountType", "MMF Account" if customer_pays else "Utility Account"),
        _parameter("DebitPartyCharges", None),
        _parameter("TransactionReason", None),
        _parameter("ReasonType", record["reason_type"]),
        _parameter("TransactionStatus", "Completed"),
        _parameter("FinalisedTime", _number(record["completed_at"])),
        _parameter("Amount", record["amount"]),
        _parameter("ConversationID", record["conversation_id"]),
        _parameter("ReceiptNo", receipt),
    ]


def transaction_status(body: dict) -> dict[str, str]:
    initiator, credential = _common(body, "Initiator")
    validation.choice(body, "CommandID", {"TransactionStatusQuery"})
    transaction_id = validation.text(body, "TransactionID", max_length=10, required=False)
    if transaction_id and not RECEIPT_RE.match(transaction_id):
        raise validation.invalid("TransactionID")
    original_conversation_id = validation.text(body, "OriginalConversationID", max_length=128, required=False)
    if not transaction_id and not original_conversation_id:
        raise validation.invalid("TransactionID")
    validation.shortcode(body, "PartyA")
    validation.choice(body, "IdentifierType", TRANSACTION_STATUS_IDENTIFIER_TYPES)
    _urls(body)
    validation.text(body, "Remarks", min_length=2, max_length=100)
    occasion = validation.text(body, "Occasion", max_length=100, required=False)

    now = epoch_now()
    delay = delivery.callback_delay()
    originator = request_id()
    conversation = conversation_id(nairobi_at(now))
    _record_conversation(conversation, originator, {"api": "status", "receipt": None})
    # Status results carry the Occasion as reference data (dkiptugen/mpesa-php-full-integration#1).
    reference = _parameter("Occasion", occasion)

    if not initiator_is_valid(initiator=initiator, security_credential=credential):
        code, desc, receipt = 2001, INITIATOR_INVALID_DESC, None
    else:
        # The answer describes what is known when the result is produced, `delay` seconds from now.
        receipt = _find_transaction(transaction_id, original_conversation_id, now + delay)
        if receipt is None:
            code, desc = INVALID_ORIGINAL_TRANSACTION_CODE, INVALID_ORIGINAL_TRANSACTION_DESC
        else:
            code, desc = 0, SUCCESS_DESC
    result = _envelope(
        code=code,
        desc=desc,
        originator_conversation_id=originator,
        conversation_id_=conversation,
        transaction_id=receipt or placeholder_transaction_id(nairobi_at(now + delay)),
        reference_item=reference,
        parameters=_status_parameters(receipt, state.get("receipt", receipt)) if receipt else None,
    )
    delivery.schedule(body["ResultURL"], result, delay=delay)
    return _ack(originator, conversation)
