"""The documented test values: which phone number produces which outcome.

Keep README.md in step with these tables; the index page (`GET /`) renders them.
"""

from dataclasses import dataclass

SANDBOX_TEST_MSISDN = "254708374149"

SUCCESS_DESC = "The service request is processed successfully."
INSUFFICIENT_FUNDS_DESC = "The balance is insufficient for the transaction."
INITIATOR_INVALID_DESC = "The initiator information is invalid."
ALREADY_REVERSED_CODE = "R000001"
ALREADY_REVERSED_DESC = "The transaction has already been reversed."
INVALID_ORIGINAL_TRANSACTION_CODE = "R000002"
INVALID_ORIGINAL_TRANSACTION_DESC = "The OriginalTransactionID is invalid."


@dataclass(frozen=True)
class StkOutcome:
    label: str
    result_code: int = 0
    result_desc: str = SUCCESS_DESC
    callback_copies: int = 1  # 0: the callback is never sent
    amount_shortfall_kes: int = 0  # the callback reports this much less than was requested
    push_error: tuple[str, str] | None = (
        None  # the push itself is refused with this (errorCode, errorMessage)
    )

    @property
    def is_success(self) -> bool:
        return self.result_code == 0


STK_SUCCESS = StkOutcome("success")

# Outcome of an STK push, chosen by the paying number (PartyA). Any number not listed succeeds.
STK_OUTCOMES: dict[str, StkOutcome] = {
    SANDBOX_TEST_MSISDN: STK_SUCCESS,
    "254700000032": StkOutcome("cancelled by user", 1032, "Request cancelled by user"),
    "254700000037": StkOutcome("unreachable", 1037, "DS timeout user cannot be reached"),
    "254700000001": StkOutcome("insufficient funds", 1, INSUFFICIENT_FUNDS_DESC),
    "254700002001": StkOutcome("wrong PIN", 2001, INITIATOR_INVALID_DESC),
    "254700001019": StkOutcome("expired", 1019, "Transaction has expired"),
    "254700000404": StkOutcome("success, callback never sent (STK Query answers)", callback_copies=0),
    "254700000002": StkOutcome("success, callback sent twice (same body)", callback_copies=2),
    "254700000098": StkOutcome("success, callback Amount 1 KES less than requested", amount_shortfall_kes=1),
    "254700000500": StkOutcome(
        "push refused: HTTP 500 System is busy (no callback)",
        push_error=("500.003.02", "System is busy. Please try again in few minutes."),
    ),
}


def stk_outcome_for(phone: str) -> StkOutcome:
    return STK_OUTCOMES.get(phone, STK_SUCCESS)


@dataclass(frozen=True)
class ResultOutcome:
    """Outcome of a Reversal (by the original payer's number) or a B2C payment (by PartyB)."""

    label: str
    result_code: int = 0
    result_desc: str = SUCCESS_DESC
    money_moves: bool = True
    posts_result: bool = True  # False: nothing reaches ResultURL
    posts_queue_timeout: bool = False  # True: the request body is echoed to QueueTimeOutURL instead


RESULT_SUCCESS = ResultOutcome("success")

RESULT_OUTCOMES: dict[str, ResultOutcome] = {
    "254700000101": ResultOutcome(
        "insufficient float: ResultCode 1", 1, INSUFFICIENT_FUNDS_DESC, money_moves=False
    ),
    "254700000102": ResultOutcome(
        "queue timeout: QueueTimeOutURL called, no Result; the money DID move",
        posts_result=False,
        posts_queue_timeout=True,
    ),
    "254700000103": ResultOutcome("silent: nothing posted at all; the money DID move", posts_result=False),
}


def result_outcome_for(phone: str) -> ResultOutcome:
    return RESULT_OUTCOMES.get(phone, RESULT_SUCCESS)
