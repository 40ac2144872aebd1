"""What moved on the simulated M-PESA account: one ledger per shortcode and Nairobi day.

Every money movement the simulator decides (an STK payment that succeeds, a reversal, a B2C payment and its
charge, a direct Pay Bill payment) is appended here at the moment it is decided, whether or not a callback or
Result is ever posted, so the statement and Pull Transactions show exactly what moved.

Storage: slot `<shortcode>:<day>:<n>` holds the n-th entry of that day, claimed with `state.claim` (an atomic
cache add), so two workers appending at once never overwrite each other: the loser moves to the next slot.
A "next slot" hint keeps appends O(1); it is only a hint (it may lag behind), the claim decides. Slots are
filled without gaps (a slot is only tried once the one before it is taken), so a reader walks 0, 1, 2, ...
until the first empty slot.

Each entry carries the account balance after it: the balance of the slot before it (or the previous day's
closing balance) plus what it paid in, minus what it withdrew. Entries are never changed once written.
A day's ledger belongs to the Nairobi day of the entries' completion time; an entry completing just after
midnight may, if the callback delay changed meanwhile, be appended before the last one of the day before.
The day's opening balance is then read a moment early; the simulator accepts that.
"""

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

from django.conf import settings

from . import state
from .ids import NAIROBI, epoch_now, nairobi_at, receipt_number

LEDGER = "ledger"
NEXT_SLOT = "ledger-next"
# The account's balance before the first entry the simulator still remembers (state.RECORD_TTL).
OPENING_BALANCE_KES = Decimal("500000.00")
RETAINED_DAYS = state.RECORD_TTL // 86400
_MAX_SLOT_ATTEMPTS = 100_000
READ_CHUNK = 500

PAY_BILL_ONLINE = "Pay Bill Online"
PAY_MERCHANT_ONLINE = "Pay Merchant Online"
PAY_BILL = "Pay Bill"
REVERSAL = "Reversal"
B2C_PAYMENT = "Business Payment to Customer via API"
B2C_CHARGE = "B2C Payment Charge"
CUSTOMER_PAYMENT_REASONS = {PAY_BILL_ONLINE, PAY_MERCHANT_ONLINE, PAY_BILL}

# A simple B2C tariff (a flat fee in two bands), charged to the paying shortcode under the payment's receipt.
B2C_CHARGE_BANDS = ((Decimal("1000"), Decimal("15.00")), (None, Decimal("22.00")))

_FIRST_NAMES = ("JOHN", "MARY", "PETER", "GRACE", "JAMES", "FAITH", "DAVID", "MERCY", "JOSEPH", "ANN")
_LAST_NAMES = (
    "DOE",
    "KAMAU",
    "OTIENO",
    "WANJIKU",
    "MWANGI",
    "ACHIENG",
    "KIPROP",
    "NJERI",
    "WAFULA",
    "CHEBET",
)


DEFAULT_ACCOUNT_NAME = "Simulator Shop Ltd"


def account_name() -> str:
    """The organisation's name on statements and pulled transactions."""
    return getattr(settings, "SIMULATOR_ACCOUNT_NAME", "") or DEFAULT_ACCOUNT_NAME


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def b2c_charge_kes(amount_kes: Any) -> Decimal:
    amount = _money(amount_kes)
    for ceiling, fee in B2C_CHARGE_BANDS:
        if ceiling is None or amount <= ceiling:
            return fee
    raise AssertionError("the last band has no ceiling")


def customer_name(phone: str) -> str:
    """A made-up but stable name for a phone number, as the portal shows the registered name."""
    digest = hashlib.sha256(str(phone).encode()).digest()
    return f"{_FIRST_NAMES[digest[0] % len(_FIRST_NAMES)]} {_LAST_NAMES[digest[1] % len(_LAST_NAMES)]}"


def ledger_day(epoch_seconds: float) -> dt.date:
    return nairobi_at(epoch_seconds).date()


def _slot(shortcode: str, day: dt.date, index: int) -> str:
    return f"{shortcode}:{day.isoformat()}:{index}"


def _day_key(shortcode: str, day: dt.date) -> str:
    return f"{shortcode}:{day.isoformat()}"


def day_entries(shortcode: str, day: dt.date) -> list[dict[str, Any]]:
    """The day's entries in the order they were appended (the order of the running balance).

    Read READ_CHUNK slots per round trip: a busy day holds tens of thousands of entries, and every Pull
    Transactions page reads its day again.
    """
    entries: list[dict[str, Any]] = []
    while True:
        slots = [_slot(shortcode, day, index) for index in range(len(entries), len(entries) + READ_CHUNK)]
        found = state.get_many(LEDGER, slots)
        for slot in slots:
            if slot not in found:
                return entries
            entries.append(found[slot])


def _last_entry(shortcode: str, day: dt.date) -> dict[str, Any] | None:
    index = int(state.get(NEXT_SLOT, _day_key(shortcode, day)) or 0) - 1
    entry = state.get(LEDGER, _slot(shortcode, day, index)) if index >= 0 else None
    if entry is None:  # no hint (or an expired one): walk the day from its first slot
        entries = day_entries(shortcode, day)
        return entries[-1] if entries else None
    while (following := state.get(LEDGER, _slot(shortcode, day, index + 1))) is not None:
        entry, index = following, index + 1
    return entry


def opening_balance(shortcode: str, day: dt.date) -> Decimal:
    """The balance before the day's first entry: the closing balance of the last day with entries."""
    for days_back in range(1, RETAINED_DAYS + 1):
        last = _last_entry(shortcode, day - dt.timedelta(days=days_back))
        if last is not None:
            return Decimal(last["balance"])
    return OPENING_BALANCE_KES


def append(
    *,
    shortcode: str,
    receipt: str,
    reason_type: str,
    completed_at: float,
    initiated_at: float | None = None,
    paid_in: Any = 0,
    withdrawn: Any = 0,
    phone: str = "",
    account: str = "",
    linked_receipt: str = "",
) -> dict[str, Any]:
    """Append one movement to the ledger of its completion day; returns the stored entry."""
    day = ledger_day(completed_at)
    movement = {
        "receipt": receipt,
        "reason_type": reason_type,
        "completed_at": completed_at,
        "initiated_at": initiated_at if initiated_at is not None else completed_at,
        "paid_in": f"{_money(paid_in)}",
        "withdrawn": f"{_money(withdrawn)}",
        "phone": phone,
        "account": account,
        "linked_receipt": linked_receipt,
        "shortcode": shortcode,
    }
    change = _money(paid_in) - _money(withdrawn)
    index = int(state.get(NEXT_SLOT, _day_key(shortcode, day)) or 0)
    for _attempt in range(_MAX_SLOT_ATTEMPTS):
        if index == 0:
            before = opening_balance(shortcode, day)
        else:
            previous = state.get(LEDGER, _slot(shortcode, day, index - 1))
            if previous is None:  # the hint ran ahead of what is still stored: start over
                index = 0
                continue
            before = Decimal(previous["balance"])
        entry = {**movement, "balance": f"{before + change}"}
        if state.claim(LEDGER, _slot(shortcode, day, index), entry):
            state.put(NEXT_SLOT, _day_key(shortcode, day), index + 1)
            return entry
        index += 1  # another worker took this slot; its entry comes before ours
    raise RuntimeError("could not append to the simulator ledger")


def entries_between(shortcode: str, start: float, end: float) -> list[dict[str, Any]]:
    """Entries completed in [start, end] (epoch seconds), day by day, in ledger order."""
    first, last = ledger_day(start), ledger_day(end)
    entries = []
    day = first
    while day <= last:
        entries.extend(e for e in day_entries(shortcode, day) if start <= e["completed_at"] <= end)
        day += dt.timedelta(days=1)
    return entries


def nairobi_day_bounds(first: dt.date, last: dt.date) -> tuple[float, float]:
    """Epoch seconds of first 00:00:00 and last 23:59:59 (inclusive), Nairobi time."""
    start = dt.datetime.combine(first, dt.time.min, tzinfo=NAIROBI)
    end = dt.datetime.combine(last, dt.time(23, 59, 59, 999999), tzinfo=NAIROBI)
    return start.timestamp(), end.timestamp()


def pay_bill(
    *, phone: str, amount_kes: int, account: str = "", shortcode: str | None = None
) -> dict[str, Any]:
    """A customer pays the paybill from the M-PESA menu (not through the shop): a fresh receipt, now."""
    shortcode = shortcode or str(settings.MPESA_SHORTCODE)
    now = epoch_now()
    receipt = state.claim_unique(
        "receipt",
        lambda _attempt: receipt_number(nairobi_at(now)),
        lambda _receipt: {
            "kind": "c2b",
            "amount": amount_kes,
            "phone": phone,
            "party": shortcode,
            "reason_type": PAY_BILL,
            "initiated_at": now,
            "completed_at": now,
            "originator_conversation_id": None,
            "conversation_id": None,
        },
    )
    return append(
        shortcode=shortcode,
        receipt=receipt,
        reason_type=PAY_BILL,
        completed_at=now,
        initiated_at=now,
        paid_in=amount_kes,
        phone=phone,
        account=account,
    )
