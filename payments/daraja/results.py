"""Daraja's STK results as typed values, parsed from Safaricom's payload shapes (daraja.md §3, §4)."""

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")
SUCCESS_CODE = "0"
MAX_READABLE_AMOUNT = Decimal("1e9")


class CallbackFormatError(ValueError):
    """The body is not an STK callback at all."""


@dataclass(frozen=True)
class StkResult:
    checkout_request_id: str
    result_code: str
    result_desc: str
    merchant_request_id: str = ""
    amount: Decimal | None = None
    receipt_number: str = ""
    transaction_date: dt.datetime | None = None
    phone: str = ""
    problems: tuple[str, ...] = ()
    raw: dict = field(default_factory=dict, compare=False)
    # STK Query answers carry no receipt, amount or date: only the result code.
    from_query: bool = False

    @property
    def is_success(self) -> bool:
        return self.result_code == SUCCESS_CODE


def result_code_str(value) -> str:
    """ResultCode arrives as 0, "0", 1032 or "SFC_IC0003": always keep it as a string."""
    if isinstance(value, bool) or value is None:
        raise CallbackFormatError("ResultCode is missing.")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text or len(text) > 16 or not text.isprintable():
        raise CallbackFormatError("ResultCode is not a result code.")
    return text


RECEIPT_PATTERN = re.compile(r"^[A-Z0-9]{8,20}$")


def clean_receipt_number(value: str) -> str:
    """An M-Pesa receipt number as staff type it ("nlj7rt61sv ") -> "NLJ7RT61SV"; "" when it is not one."""
    text = "".join(str(value or "").split()).upper()
    return text if RECEIPT_PATTERN.match(text) else ""


def parse_amount(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    # Bounded so that it fits the 12-digit money columns; anything larger is no M-Pesa amount anyway.
    return amount if amount.is_finite() and abs(amount) < MAX_READABLE_AMOUNT else None


def parse_transaction_date(value) -> dt.datetime | None:
    """TransactionDate is a number YYYYMMDDHHmmss in Nairobi time with no zone."""
    if value is None or isinstance(value, bool):
        return None
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()
    try:
        naive = dt.datetime.strptime(text, "%Y%m%d%H%M%S")
        return naive.replace(tzinfo=NAIROBI).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # year 1 in Nairobi is year 0 in UTC
        return None


def _clean_text(value, limit: int = 512) -> str:
    text = "" if value is None else str(value)
    # NUL too: PostgreSQL text columns refuse it.
    return text.replace("\r", " ").replace("\n", " ").replace("\x00", "")[:limit]


def parse_stk_callback(body) -> StkResult:
    if not isinstance(body, dict):
        raise CallbackFormatError("The body must be a JSON object.")
    callback = (body.get("Body") or {}).get("stkCallback") if isinstance(body.get("Body"), dict) else None
    if not isinstance(callback, dict):
        raise CallbackFormatError("Body.stkCallback is missing.")
    checkout_request_id = callback.get("CheckoutRequestID")
    if (
        not isinstance(checkout_request_id, str)
        or not checkout_request_id
        or len(checkout_request_id) > 64
        or not checkout_request_id.isprintable()
    ):
        raise CallbackFormatError("CheckoutRequestID is missing.")
    result_code = result_code_str(callback.get("ResultCode"))

    metadata: dict = {}
    problems: list[str] = []
    items = (
        (callback.get("CallbackMetadata") or {}).get("Item")
        if isinstance(callback.get("CallbackMetadata"), dict)
        else None
    )
    if isinstance(items, list):
        # Order is not guaranteed and some items (Balance) carry no Value.
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("Name"), str) and "Value" in item:
                metadata[item["Name"]] = item["Value"]

    amount = parse_amount(metadata.get("Amount"))
    receipt = _clean_text(metadata.get("MpesaReceiptNumber"), 32).strip()
    transaction_date = parse_transaction_date(metadata.get("TransactionDate"))
    if result_code == SUCCESS_CODE:
        if amount is None:
            problems.append("Amount missing or not a number")
        if not receipt:
            problems.append("MpesaReceiptNumber missing")
        if "TransactionDate" in metadata and transaction_date is None:
            problems.append("TransactionDate unparseable")
    phone = metadata.get("PhoneNumber")
    return StkResult(
        checkout_request_id=checkout_request_id,
        merchant_request_id=_clean_text(callback.get("MerchantRequestID"), 64),
        result_code=result_code,
        result_desc=_clean_text(callback.get("ResultDesc")),
        amount=amount,
        receipt_number=receipt,
        transaction_date=transaction_date,
        phone="" if phone is None else _clean_text(phone, 20),
        problems=tuple(problems),
        raw=body,
    )


@dataclass(frozen=True)
class StkPushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    response_description: str
    customer_message: str


@dataclass(frozen=True)
class StkQueryAnswer:
    """A final answer from STK Query, or `pending` while the customer has not answered yet."""

    pending: bool
    result_code: str = ""
    result_desc: str = ""
    raw: dict = field(default_factory=dict, compare=False)

    def as_result(self, checkout_request_id: str) -> StkResult:
        return StkResult(
            checkout_request_id=checkout_request_id,
            result_code=self.result_code,
            result_desc=self.result_desc,
            raw=self.raw,
            from_query=True,
        )
