"""Simulator state, kept in the default cache so every process (web workers, the cluster) sees it.

Unique identifiers are claimed with `cache.add`, which is atomic on Redis (SET NX) and on the database cache
(the insert loses on the primary key), so two workers never hand out the same receipt, CheckoutRequestID or
B2C OriginatorConversationID, and a receipt is reversed at most once. Records are written once and never
updated; everything time-dependent is derived from the timestamps stored in them.
"""

from collections.abc import Callable
from typing import Any

from django.core.cache import caches

PREFIX = "mpesa-simulator:"
RECORD_TTL = 7 * 24 * 3600
TOKEN_LIFETIME = 3600
_CLAIM_ATTEMPTS = 20


def _cache():
    return caches["default"]


def _key(kind: str, identifier: str) -> str:
    return f"{PREFIX}{kind}:{identifier}"


def get(kind: str, identifier: str) -> dict[str, Any] | None:
    return _cache().get(_key(kind, identifier))


def put(kind: str, identifier: str, record: Any) -> None:
    _cache().set(_key(kind, identifier), record, RECORD_TTL)


def claim(kind: str, identifier: str, record: Any) -> bool:
    """Store `record` under a fresh identifier; False when the identifier is already taken."""
    return _cache().add(_key(kind, identifier), record, RECORD_TTL)


def claim_unique(kind: str, make_identifier: Callable[[int], str], record_for: Callable[[str], Any]) -> str:
    """Claim the first free identifier among make_identifier(0), make_identifier(1), ..."""
    for attempt in range(_CLAIM_ATTEMPTS):
        identifier = make_identifier(attempt)
        if claim(kind, identifier, record_for(identifier)):
            return identifier
    raise RuntimeError(f"could not claim a unique {kind} identifier")


# --- OAuth: only the most recently minted token is valid (portal FAQ) ---------------------------


def token_store(token: str, expires_at: float) -> None:
    _cache().set(_key("oauth", "current"), {"token": token, "expires_at": expires_at}, TOKEN_LIFETIME * 2)


def token_current() -> dict[str, Any] | None:
    return _cache().get(_key("oauth", "current"))
