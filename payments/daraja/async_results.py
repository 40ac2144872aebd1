"""Daraja's asynchronous answers for Reversal, B2C and Transaction Status (daraja.md §6.1).

A Result arrives on ResultURL as {"Result": {...}}. A QueueTimeOutURL body is undocumented: real
integrations see the request echoed at top level (global-121/121-platform), others assume a Result
envelope; both are accepted, keyed on OriginatorConversationID.
"""

from dataclasses import dataclass, field

from payments.daraja.results import CallbackFormatError, result_code_str

ALREADY_REVERSED = "R000001"
INVALID_ORIGINAL_TRANSACTION = "R000002"


class AsyncFormatError(CallbackFormatError):
    """The body is not a Result or queue-timeout notice."""


@dataclass(frozen=True)
class AsyncAccepted:
    """Daraja's synchronous acknowledgement: accepted for processing, the outcome comes later."""

    originator_conversation_id: str
    conversation_id: str
    response_description: str = ""


@dataclass(frozen=True)
class AsyncResult:
    result_type: int | None
    result_code: str
    result_desc: str
    originator_conversation_id: str
    conversation_id: str
    transaction_id: str
    parameters: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def is_success(self) -> bool:
        return self.result_code == "0"

    @property
    def is_final(self) -> bool:
        # ResultType 1 = "waiting for further messages"; 0 (or absent) = completed.
        return self.result_type != 1

    def parameter(self, key: str, default=None):
        return self.parameters.get(key, default)

    def text(self, key: str) -> str:
        return _text(self.parameters.get(key), 128)


@dataclass(frozen=True)
class QueueTimeout:
    originator_conversation_id: str
    conversation_id: str
    command_id: str
    transaction_id: str
    raw: dict = field(default_factory=dict, compare=False)


def _key_values(container, list_key: str) -> dict:
    """{"ResultParameter": [{"Key": k, "Value": v}, ...]} (or one object) -> {k: v}; items without Value skipped."""
    if not isinstance(container, dict):
        return {}
    items = container.get(list_key)
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return {}
    values = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("Key"), str) and "Value" in item:
            values[item["Key"]] = item["Value"]
    return values


def _text(value, limit: int) -> str:
    # Hostile strings stay harmless: one line, capped (faults.md row 36).
    text = "" if value is None else str(value)
    return text.replace("\r", " ").replace("\n", " ")[:limit].strip()


def parse_result(body) -> AsyncResult:
    if not isinstance(body, dict) or not isinstance(body.get("Result"), dict):
        raise AsyncFormatError("Result is missing.")
    result = body["Result"]
    originator = _text(result.get("OriginatorConversationID"), 128)
    conversation = _text(result.get("ConversationID"), 64)
    if not originator and not conversation:
        raise AsyncFormatError("OriginatorConversationID and ConversationID are missing.")
    result_type = result.get("ResultType")
    try:
        result_type = None if result_type is None else int(result_type)
    except (TypeError, ValueError):
        result_type = None
    return AsyncResult(
        result_type=result_type,
        result_code=result_code_str(result.get("ResultCode")),
        result_desc=_text(result.get("ResultDesc"), 512),
        originator_conversation_id=originator,
        conversation_id=conversation,
        transaction_id=_text(result.get("TransactionID"), 32),
        parameters=_key_values(result.get("ResultParameters"), "ResultParameter"),
        reference=_key_values(result.get("ReferenceData"), "ReferenceItem"),
        raw=body,
    )


def parse_queue_timeout(body) -> QueueTimeout:
    if not isinstance(body, dict):
        raise AsyncFormatError("The body must be a JSON object.")
    source = body["Result"] if isinstance(body.get("Result"), dict) else body
    originator = _text(source.get("OriginatorConversationID"), 128)
    conversation = _text(source.get("ConversationID"), 64)
    transaction_id = _text(source.get("TransactionID"), 32)
    if not originator and not conversation and not transaction_id:
        raise AsyncFormatError("No OriginatorConversationID, ConversationID or TransactionID.")
    return QueueTimeout(
        originator_conversation_id=originator,
        conversation_id=conversation,
        command_id=_text(source.get("CommandID"), 64),
        transaction_id=transaction_id,
        raw=body,
    )
