"""Pull Transactions: register once per shortcode, then query the C2B payments of a window.

Shapes follow Safaricom's Postman collection as reproduced by public client libraries (the portal pages
scraped for daraja.md do not cover this API). Not documented there, and chosen here: the page size (100
rows), the text of the 1001 answer, the `transactiontype` of Buy Goods payments, and what `trxDate` means.
The simulator writes `trxDate` in UTC with a "Z" (the literal ISO 8601 reading); whether Daraja writes UTC or
Nairobi time followed by a "Z" is not documented, so the application's client accepts both spellings.
"""

import re
import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from . import ledger, state, validation
from .ids import NAIROBI, epoch_now
from .validation import DarajaError

PAGE_SIZE = 100
MAX_WINDOW = timedelta(hours=48)
RETENTION_SECONDS = 48 * 3600  # Daraja keeps pulled transactions for 48 hours
REGISTERED = ("1000", "Short code Registered Successfully")
ALREADY_REGISTERED = ("1001", "ShortCode already Registered")
SUCCESS = ("1000", "Success")
NO_TRANSACTIONS = ("1001", "No transactions found")
DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{1,2}):(\d{2})(?::(\d{2}))?$")
NOMINATED_NUMBER_RE = re.compile(r"^(?:0|254)[71]\d{8}$")
OFFSET_RE = re.compile(r"^\d{1,9}$")
TRANSACTION_TYPES = {
    ledger.PAY_BILL_ONLINE: "c2b-pay-bill-debit",
    ledger.PAY_BILL: "c2b-pay-bill-debit",
    ledger.PAY_MERCHANT_ONLINE: "c2b-buy-goods-debit",
}


def _ref_id() -> str:
    """Like "18633-7271215-1"."""
    digits = "".join(secrets.choice(string.digits) for _ in range(12))
    return f"{digits[:5]}-{digits[5:]}-1"


def _own_shortcode(body: dict) -> str:
    shortcode = validation.shortcode(body, "ShortCode")
    if shortcode != str(settings.MPESA_SHORTCODE):
        raise validation.invalid("ShortCode")
    return shortcode


def register(body: dict) -> dict[str, str]:
    shortcode = _own_shortcode(body)
    validation.choice(body, "RequestType", {"Pull"})
    nominated = validation.text(body, "NominatedNumber", max_length=12)
    if not NOMINATED_NUMBER_RE.match(nominated):
        raise validation.invalid("NominatedNumber")
    callback_url = validation.url(body, "CallBackURL")
    record = {"nominated_number": nominated, "callback_url": callback_url, "registered_at": epoch_now()}
    status, description = (
        REGISTERED if state.claim("pull-register", shortcode, record) else ALREADY_REGISTERED
    )
    # Safaricom's keys, spaces included.
    return {
        "ResponseRefID": _ref_id(),
        "Response Status": status,
        "ShortCode": shortcode,
        "Response Description": description,
    }


def _date(body: dict, field: str) -> datetime:
    value = body.get(field)
    match = DATE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise validation.invalid(field)
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=NAIROBI)
    except ValueError:
        raise validation.invalid(field) from None


def _offset(body: dict) -> int:
    value = body.get("OffSetValue")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not OFFSET_RE.match(value):
        raise validation.invalid("OffSetValue")
    return int(value)


def _masked(phone: str) -> str:
    # As C2B confirmations mask it (daraja.md §7): "25470****149".
    return f"{phone[:5]}{'*' * (len(phone) - 8)}{phone[-3:]}" if len(phone) > 8 else phone


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "transactionId": entry["receipt"],
        "trxDate": datetime.fromtimestamp(entry["completed_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "msisdn": _masked(entry["phone"]),
        "sender": ledger.customer_name(entry["phone"]),
        "transactiontype": TRANSACTION_TYPES[entry["reason_type"]],
        "billreference": entry["account"],
        "amount": entry["paid_in"],
        "organizationname": ledger.account_name(),
    }


def query(body: dict) -> dict[str, Any]:
    shortcode = _own_shortcode(body)
    start = _date(body, "StartDate")
    end = _date(body, "EndDate")
    if end < start:
        raise validation.invalid("EndDate")
    if end - start > MAX_WINDOW:
        raise DarajaError("400.002.02", "Bad Request - Invalid EndDate: the period may not exceed 48 hours")
    offset = _offset(body)

    now = epoch_now()
    # Only what has completed by now and is still kept; entries are appended when the outcome is decided,
    # which may be a few seconds ahead.
    # The dates have whole seconds, like trxDate: EndDate 10:10:00 includes a payment at 10:10:00.4.
    window_start = max(start.timestamp(), now - RETENTION_SECONDS)
    window_end = min(end.timestamp() + 0.999999, now)
    rows = []
    if window_start <= window_end:
        entries = [
            entry
            for entry in ledger.entries_between(shortcode, window_start, window_end)
            if entry["reason_type"] in ledger.CUSTOMER_PAYMENT_REASONS
        ]
        entries.sort(key=lambda entry: entry["completed_at"])
        rows = [_row(entry) for entry in entries[offset : offset + PAGE_SIZE]]
    code, message = SUCCESS if rows else NO_TRANSACTIONS
    return {"ResponseRefID": _ref_id(), "ResponseCode": code, "ResponseMessage": message, "Response": [rows]}
