"""Pull Transactions query answers as plain values.

The answer's shape comes from Safaricom's Postman collection as reproduced by public client libraries:
`{"ResponseCode": "1000", "Response": [[{"transactionId", "trxDate", "msisdn", "sender", "transactiontype",
"billreference", "amount", "organizationname"}, ...]]}`, and ResponseCode "1001" with `[[]]` when the
period has no transactions. Uncertain, so read leniently:
- `trxDate` ("2020-08-05T10:13:00Z"): whether the "Z" means UTC or Nairobi time followed by a "Z" is not
  documented. An explicit "Z" or offset is taken as written; a value without one is Nairobi time.
- `msisdn` is a JSON number in the sample (72200000, partial) and may arrive masked ("25470****149"):
  it is kept as text, never as a number.
- `Response` is a list holding one list of rows; a flat list of rows is read too.
"""

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from payments.daraja.results import NAIROBI, parse_amount

logger = logging.getLogger(__name__)

NO_TRANSACTIONS_CODE = "1001"


class PullFormatError(ValueError):
    """The body is not a Pull Transactions query answer."""


@dataclass(frozen=True)
class PulledTransaction:
    receipt: str
    completed_at: dt.datetime  # aware
    msisdn: str  # as Daraja wrote it: possibly partial or masked
    amount: Decimal
    bill_reference: str = ""
    sender: str = ""
    transaction_type: str = ""
    organization_name: str = ""
    raw: dict = field(default_factory=dict, compare=False)


def parse_trx_date(value) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=NAIROBI)
    return moment.astimezone(dt.UTC)


def _text(value, limit: int = 200) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().replace("\x00", "")[:limit]


def _rows(body: dict) -> list:
    response = body.get("Response")
    if response is None:
        return []
    if not isinstance(response, list):
        raise PullFormatError("Response is not a list.")
    rows = []
    for item in response:
        if isinstance(item, list):
            rows.extend(item)
        else:
            rows.append(item)
    return rows


def pull_row_count(body) -> int:
    """How many rows the answer held, readable or not: what the next OffSetValue moves on by."""
    if not isinstance(body, dict) or "ResponseCode" not in body:
        raise PullFormatError("Not a Pull Transactions answer.")
    if _text(body.get("ResponseCode")) == NO_TRANSACTIONS_CODE:
        return 0
    return len(_rows(body))


def parse_pull_response(body) -> list[PulledTransaction]:
    """The transactions of one answer; rows that cannot be read are logged (by receipt) and left out."""
    if not isinstance(body, dict) or "ResponseCode" not in body:
        raise PullFormatError("Not a Pull Transactions answer.")
    if _text(body.get("ResponseCode")) == NO_TRANSACTIONS_CODE:
        return []
    transactions = []
    for row in _rows(body):
        if not isinstance(row, dict):
            logger.warning("Pull Transactions row is not an object; skipped")
            continue
        receipt = _text(row.get("transactionId"), 32).upper()
        completed_at = parse_trx_date(row.get("trxDate"))
        amount = parse_amount(row.get("amount"))
        if not receipt or completed_at is None or amount is None:
            logger.warning("Pull Transactions row %s unreadable (date or amount); skipped", receipt or "?")
            continue
        transactions.append(
            PulledTransaction(
                receipt=receipt,
                completed_at=completed_at,
                msisdn=_text(row.get("msisdn"), 20),
                amount=amount,
                bill_reference=_text(row.get("billreference"), 64),
                sender=_text(row.get("sender"), 150),
                transaction_type=_text(row.get("transactiontype"), 60),
                organization_name=_text(row.get("organizationname"), 200),
                raw=row,
            )
        )
    return transactions
