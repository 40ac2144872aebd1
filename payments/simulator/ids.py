"""Identifiers shaped like Daraja's, and Nairobi wall-clock helpers."""

import secrets
import string
import time
from datetime import datetime
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")
_ALNUM_UPPER = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits
# Receipt day character: 1-9, then A=10 ... V=31 ("NLJ7RT61SV" was issued 2019-12-19).
_DAY_CHARS = "123456789ABCDEFGHIJKLMNOPQRSTUV"


def nairobi_now() -> datetime:
    return datetime.now(NAIROBI)


def nairobi_at(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, NAIROBI)


def daraja_timestamp(moment: datetime) -> str:
    """YYYYMMDDHHmmss in Nairobi time."""
    return moment.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def request_id() -> str:
    """Like "1c5b-4ba8-815c-ac45c57a3db01495926": also the shape of MerchantRequestID."""
    hex_part = secrets.token_hex(12)
    digits = "".join(secrets.choice(string.digits) for _ in range(7))
    return f"{hex_part[:4]}-{hex_part[4:8]}-{hex_part[8:12]}-{hex_part[12:24]}{digits}"


def access_token() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(28))


def checkout_request_id(moment: datetime, phone: str) -> str:
    """ws_CO_ + DDMMYYYYHHMMSSmmm + the MSISDN's last 9 digits (recent Daraja format)."""
    moment = moment.astimezone(NAIROBI)
    return f"ws_CO_{moment.strftime('%d%m%Y%H%M%S')}{moment.microsecond // 1000:03d}{phone[-9:]}"


def _receipt_prefix(moment: datetime) -> str:
    # Real receipts start with year (A=2006), month (A=January) and day letters: "QKH94M1Z11" = 2022-11-17.
    moment = moment.astimezone(NAIROBI)
    year_letter = chr(ord("A") + (moment.year - 2006) % 26)
    return f"{year_letter}{chr(ord('A') + moment.month - 1)}{_DAY_CHARS[moment.day - 1]}"


def receipt_number(moment: datetime) -> str:
    """10 uppercase alphanumerics; uniqueness is claimed in the state store."""
    return _receipt_prefix(moment) + "".join(secrets.choice(_ALNUM_UPPER) for _ in range(7))


def placeholder_transaction_id(moment: datetime) -> str:
    """What failed async results carry in TransactionID, e.g. "MAS0000000"."""
    return _receipt_prefix(moment) + "0000000"


def conversation_id(moment: datetime) -> str:
    """AG_YYYYMMDD_ + 20 hex digits, e.g. AG_20210706_20106e9209f64bebd05b."""
    return f"AG_{moment.astimezone(NAIROBI).strftime('%Y%m%d')}_{secrets.token_hex(10)}"


def epoch_now() -> float:
    return time.time()
