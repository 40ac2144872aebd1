"""STK result codes (daraja.md §5): who caused a failure and what to tell the customer."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ResultMeaning:
    failure_class: str  # payments.models.FailureClass values
    customer_text: str
    retryable: bool
    label: str = ""  # what staff read in reports: short, plain words


_MEANINGS = {
    "1": ResultMeaning(
        "customer", "Your M-Pesa balance was not enough for this payment.", True, label="Insufficient balance"
    ),
    "2": ResultMeaning(
        "request", "The amount is below the M-Pesa minimum.", False, label="Below the minimum amount"
    ),
    "3": ResultMeaning(
        "request",
        "The amount is above the M-Pesa maximum for one payment.",
        False,
        label="Above the maximum amount",
    ),
    "4": ResultMeaning(
        "customer", "This payment would pass your daily M-Pesa limit.", True, label="Over the daily limit"
    ),
    "8": ResultMeaning(
        "config",
        "The merchant account cannot receive this payment right now.",
        False,
        label="Merchant account cannot receive",
    ),
    "17": ResultMeaning(
        "system",
        "M-Pesa refused a repeat of the same payment within 2 minutes.",
        True,
        label="Repeat within 2 minutes (rule 17)",
    ),
    "26": ResultMeaning("system", "M-Pesa was busy.", True, label="M-Pesa busy"),
    "1001": ResultMeaning(
        "customer",
        "Another M-Pesa transaction was in progress on your phone.",
        True,
        label="Another transaction in progress",
    ),
    "1019": ResultMeaning(
        "expired", "The payment request expired before it was answered.", True, label="Prompt expired"
    ),
    "1025": ResultMeaning(
        "system", "M-Pesa could not send the payment prompt.", True, label="Prompt could not be sent"
    ),
    "1032": ResultMeaning(
        "customer", "The payment was cancelled on the phone.", True, label="Cancelled by the customer"
    ),
    "1037": ResultMeaning("customer", "Your phone could not be reached.", True, label="Phone unreachable"),
    "2001": ResultMeaning("customer", "The M-Pesa PIN entered was wrong.", True, label="Wrong PIN"),
    "2028": ResultMeaning(
        "config",
        "The merchant account is not set up for this payment.",
        False,
        label="Merchant not set up for this payment",
    ),
    "8006": ResultMeaning(
        "customer",
        "Your M-Pesa PIN is locked. Call Safaricom on 100 to unlock it.",
        False,
        label="PIN locked",
    ),
    "9999": ResultMeaning(
        "system", "M-Pesa could not send the payment prompt.", True, label="Prompt could not be sent (9999)"
    ),
    "SFC_IC0003": ResultMeaning(
        "config",
        "The merchant account is not set up for this payment.",
        False,
        label="Merchant not set up (SFC_IC0003)",
    ),
}
_UNKNOWN = ResultMeaning("unknown", "The payment did not go through.", True, label="Unknown result code")


def meaning_of(result_code: str) -> ResultMeaning:
    return _MEANINGS.get(str(result_code), _UNKNOWN)


def known_result_code(result_code: str) -> bool:
    return str(result_code) in _MEANINGS
