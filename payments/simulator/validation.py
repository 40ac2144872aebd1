"""Field checks, answering with Daraja's own error envelope codes and messages (daraja.md §2, §6)."""

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from .ids import NAIROBI, nairobi_now

SHORTCODE_RE = re.compile(r"^\d{5,7}$")
MSISDN_RE = re.compile(r"^254[71]\d{8}$")
TIMESTAMP_RE = re.compile(r"^\d{14}$")
TIMESTAMP_TOLERANCE = timedelta(minutes=10)
MIN_AMOUNT_KES = 1
MAX_AMOUNT_KES = 250_000


class DarajaError(Exception):
    """A synchronous Daraja error: HTTP status = the errorCode's first three digits."""

    def __init__(self, code: str, message: str, request_id: str | None = None):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.request_id = request_id

    @property
    def status(self) -> int:
        return int(self.code[:3])


def invalid(field: str) -> DarajaError:
    return DarajaError("400.002.02", f"Bad Request - Invalid {field}")


def _scalar_text(value: Any) -> str | None:
    """Daraja is lenient about numbers sent as strings and vice versa; not about objects or booleans."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def shortcode(body: dict, field: str) -> str:
    value = _scalar_text(body.get(field))
    if value is None or not SHORTCODE_RE.match(value):
        raise invalid(field)
    return value


def msisdn(body: dict, field: str) -> str:
    value = _scalar_text(body.get(field))
    if value is None or not MSISDN_RE.match(value):
        raise invalid(field)
    return value


def amount(body: dict, field: str = "Amount") -> int:
    """A whole number of shillings, as a JSON integer or a string of digits: 10.5, "10.50", 10.0 fail."""
    value = body.get(field)
    if isinstance(value, bool):
        raise invalid(field)
    if isinstance(value, int):
        whole = value
    elif isinstance(value, str) and value.strip().isdigit():
        whole = int(value.strip())
    else:
        raise invalid(field)
    if not MIN_AMOUNT_KES <= whole <= MAX_AMOUNT_KES:
        raise invalid(field)
    return whole


def timestamp(body: dict, field: str = "Timestamp") -> str:
    value = _scalar_text(body.get(field))
    if value is None or not TIMESTAMP_RE.match(value):
        raise invalid(field)
    try:
        moment = datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    except ValueError:
        raise invalid(field) from None
    if abs(moment - nairobi_now()) > TIMESTAMP_TOLERANCE:
        raise invalid(field)
    return value


def url(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise invalid(field)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise invalid(field)
    return value


def text(body: dict, field: str, *, min_length: int = 1, max_length: int, required: bool = True) -> str:
    if field not in body and not required:
        return ""
    value = _scalar_text(body.get(field))
    if value is None:
        raise invalid(field)
    if not required and value == "":
        return ""
    if not min_length <= len(value) <= max_length:
        raise invalid(field)
    return value


def choice(body: dict, field: str, allowed: set[str]) -> str:
    value = _scalar_text(body.get(field))
    if value not in allowed:
        raise invalid(field)
    return value
