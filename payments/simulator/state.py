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
_CLAIM_ATTEMPTS = 20
_APPEND_ATTEMPTS = 100_000
_READ_CHUNK = 500


def _cache():
    return caches["default"]


def _key(kind: str, identifier: str) -> str:
    return f"{PREFIX}{kind}:{identifier}"


def get(kind: str, identifier: str) -> dict[str, Any] | None:
    return _cache().get(_key(kind, identifier))


def get_many(kind: str, identifiers: list[str]) -> dict[str, Any]:
    """The records stored under these identifiers (missing ones left out), in one round trip per chunk."""
    found = {}
    for chunk in _chunks(identifiers):
        stored = _cache().get_many([_key(kind, identifier) for identifier in chunk])
        found.update(
            {
                identifier: stored[_key(kind, identifier)]
                for identifier in chunk
                if _key(kind, identifier) in stored
            }
        )
    return found


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


# --- Sequences: append-only lists, exact under concurrent appenders ---------------------------------


def append(kind: str, value: Any, ttl: int = RECORD_TTL) -> int:
    """Store `value` as the next item of the sequence `kind`; returns its position (0, 1, 2, ...).

    Each position is claimed with `cache.add`, so two appenders never share one and the sequence has no gaps.
    The "next" hint only saves walking from 0: it is written after a claim, so it may lag behind (another
    appender overwrote it with a smaller value) but never points past a free position.
    """
    cache = _cache()
    hint_key = _key("next", kind)
    position = int(cache.get(hint_key) or 0)
    for _attempt in range(_APPEND_ATTEMPTS):
        if cache.add(_key(kind, str(position)), value, ttl):
            cache.set(hint_key, position + 1, ttl)
            return position
        position += 1
    raise RuntimeError(f"could not append to the simulator sequence {kind}")


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[start : start + _READ_CHUNK] for start in range(0, len(items), _READ_CHUNK)]


def lengths(kinds: list[str]) -> dict[str, int]:
    """How many items each sequence holds, in a few round trips whatever the number of sequences."""
    cache = _cache()
    length = {}
    for chunk in _chunks(kinds):
        hints = cache.get_many([_key("next", kind) for kind in chunk])
        length.update({kind: int(hints.get(_key("next", kind)) or 0) for kind in chunk})
    pending = list(kinds)
    while pending:  # a lagging hint: walk on while the next position is taken
        taken = []
        for chunk in _chunks(pending):
            found = cache.get_many([_key(kind, str(length[kind])) for kind in chunk])
            taken += [kind for kind in chunk if _key(kind, str(length[kind])) in found]
        for kind in taken:
            length[kind] += 1
        pending = taken
    return length


def items(kind: str) -> list[Any]:
    """The values of the sequence `kind`, in order."""
    count = lengths([kind])[kind]
    keys = [_key(kind, str(position)) for position in range(count)]
    found = {}
    for chunk in _chunks(keys):
        found.update(_cache().get_many(chunk))
    return [found[key] for key in keys if key in found]


# --- OAuth: only the most recently minted token is valid (portal FAQ) ---------------------------


def token_store(token: str, expires_at: float, lifetime: int) -> None:
    _cache().set(_key("oauth", "current"), {"token": token, "expires_at": expires_at}, lifetime * 2)


def token_current() -> dict[str, Any] | None:
    return _cache().get(_key("oauth", "current"))
