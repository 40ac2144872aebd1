"""STK result codes (daraja.md §5): who caused a failure and what to tell the customer."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ResultMeaning:
    failure_class: str  # payments.models.FailureClass values
    customer_text: str
    retryable: bool


_MEANINGS = {
    "1": ResultMeaning("customer", "Your M-Pesa balance was not enough for this payment.", True),
    "2": ResultMeaning("request", "The amount is below the M-Pesa minimum.", False),
    "3": ResultMeaning("request", "The amount is above the M-Pesa maximum for one payment.", False),
    "4": ResultMeaning("customer", "This payment would pass your daily M-Pesa limit.", True),
    "8": ResultMeaning("config", "The merchant account cannot receive this payment right now.", False),
    "17": ResultMeaning("system", "M-Pesa refused a repeat of the same payment within 2 minutes.", True),
    "26": ResultMeaning("system", "M-Pesa was busy.", True),
    "1001": ResultMeaning("customer", "Another M-Pesa transaction was in progress on your phone.", True),
    "1019": ResultMeaning("expired", "The payment request expired before it was answered.", True),
    "1025": ResultMeaning("system", "M-Pesa could not send the payment prompt.", True),
    "1032": ResultMeaning("customer", "The payment was cancelled on the phone.", True),
    "1037": ResultMeaning("customer", "Your phone could not be reached.", True),
    "2001": ResultMeaning("customer", "The M-Pesa PIN entered was wrong.", True),
    "2028": ResultMeaning("config", "The merchant account is not set up for this payment.", False),
    "8006": ResultMeaning(
        "customer", "Your M-Pesa PIN is locked. Call Safaricom on 100 to unlock it.", False
    ),
    "9999": ResultMeaning("system", "M-Pesa could not send the payment prompt.", True),
    "SFC_IC0003": ResultMeaning("config", "The merchant account is not set up for this payment.", False),
}
_UNKNOWN = ResultMeaning("unknown", "The payment did not go through.", True)


def meaning_of(result_code: str) -> ResultMeaning:
    return _MEANINGS.get(str(result_code), _UNKNOWN)
