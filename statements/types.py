"""What an M-PESA statement line says, before it is stored: the shape a file parser and the Pull
Transactions job both hand to the store."""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class ParsedLine:
    receipt: str
    completed_at: dt.datetime  # aware
    kind: str  # statements.models.LineKind
    paid_in: Decimal = Decimal("0")
    withdrawn: Decimal = Decimal("0")
    initiated_at: dt.datetime | None = None
    details: str = ""
    transaction_status: str = ""
    balance: Decimal | None = None
    balance_confirmed: bool | None = None
    reason_type: str = ""
    other_party: str = ""
    party_phone_prefix: str = ""
    party_phone_suffix: str = ""
    party_phone_length: int | None = None
    party_name: str = ""
    linked_transaction_id: str = ""
    account_number: str = ""
    row_number: int | None = None  # in the file, 1-based, for messages
    raw: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ParsedStatement:
    lines: list[ParsedLine]
    shortcode: str = ""  # from the preamble, when the file names it
    account_name: str = ""
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    file_format: str = ""  # "csv" or "xlsx"
