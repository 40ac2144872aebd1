"""Traffic at the simulated Daraja: requests counted per API and wall-clock second, Daraja's Spike Arrest
over SIMULATOR_RATE_LIMIT_PER_SECOND, the STK Query latency, the OAuth token lifetime, and the figures a load
test reads back (`GET stats`).

Counting: the n-th request to an API within second s takes position n of the sequence `calls:<api>:<s>`
(state.append, an atomic cache add), so the counts are exact across threads and processes, on Redis and on
the database cache alike. A request at a position past the limit is refused as Daraja refuses it: HTTP 500
`{"requestId", "errorCode": "500.003.02", "errorMessage": "Error Occurred: Spike Arrest Violation"}`
(daraja.md §2), and its time is kept in `rejected:<api>`. Safaricom publishes neither its limit nor how it
counts; here each API has a limit of its own over a window of one wall-clock second. OAuth is counted and
never limited; every token minted is kept with its time in `mints`.
"""

import time
from typing import Any

from django.conf import settings

from . import state
from .ids import epoch_now
from .validation import DarajaError

SPIKE_ARREST = ("500.003.02", "Error Occurred: Spike Arrest Violation")
# Kept long enough for a day of load tests; the database cache culls old entries past its MAX_ENTRIES.
STATS_TTL = 24 * 3600
# The longest period `stats` reads at once: one cache key per API per second.
STATS_MAX_SECONDS = 3 * 3600
DEFAULT_TOKEN_SECONDS = 3600
APIS = (
    "oauth",
    "stk_push",
    "stk_query",
    "reversal",
    "transaction_status",
    "b2c",
    "pull_register",
    "pull_query",
)

_sleep = time.sleep


def rate_limit() -> int:
    """Requests a second each API accepts; 0 accepts everything."""
    return max(0, int(getattr(settings, "SIMULATOR_RATE_LIMIT_PER_SECOND", 0) or 0))


def query_latency() -> float:
    """Seconds STK Query takes to answer."""
    return max(0.0, float(getattr(settings, "SIMULATOR_QUERY_LATENCY_MS", 0) or 0) / 1000)


def refund_latency() -> float:
    """Seconds Reversal and B2C take to answer; the request is decided after them, so a caller that stops
    waiting (a worker killed mid-call) has still moved the money."""
    return max(0.0, float(getattr(settings, "SIMULATOR_REFUND_LATENCY_MS", 0) or 0) / 1000)


def token_seconds() -> int:
    """How long a minted access token lives (Daraja: an hour, announced as "expires_in": "3599")."""
    return max(2, int(getattr(settings, "SIMULATOR_TOKEN_SECONDS", DEFAULT_TOKEN_SECONDS) or 0))


def _calls(api: str, second: int) -> str:
    return f"calls:{api}:{second}"


def admit(api: str, *, limited: bool = True) -> None:
    """Count one request to `api`; DarajaError (Spike Arrest) when it is over this second's limit."""
    now = epoch_now()
    position = state.append(_calls(api, int(now)), 1, STATS_TTL)
    limit = rate_limit() if limited else 0
    if limit and position >= limit:
        state.append(f"rejected:{api}", now, STATS_TTL)
        raise DarajaError(*SPIKE_ARREST)


def delay(seconds: float) -> None:
    if seconds > 0:
        _sleep(seconds)


def record_invalid_token(api: str) -> None:
    """A request with a missing, expired or superseded token (404.001.03): minting races show up here."""
    state.append(f"invalid-token:{api}", epoch_now(), STATS_TTL)


def record_mint(minted_at: float) -> None:
    state.append("mints", minted_at, STATS_TTL)


def _within(times: list[Any], since: float, until: float) -> list[float]:
    return [moment for moment in times if since <= moment < until + 1]


def stats(*, since: int, until: int, apis: list[str]) -> dict[str, Any]:
    """What arrived from second `since` to second `until` (both included), per API."""
    seconds = range(since, until + 1)
    counts = state.lengths([_calls(api, second) for api in apis for second in seconds])
    figures = {}
    for api in apis:
        per_second = {second: counts[_calls(api, second)] for second in seconds}
        busiest = max(seconds, key=lambda second: per_second[second], default=since)
        figures[api] = {
            "requests": sum(per_second.values()),
            "rejected": len(_within(state.items(f"rejected:{api}"), since, until)),
            "invalid_token": len(_within(state.items(f"invalid-token:{api}"), since, until)),
            "peak_per_second": per_second.get(busiest, 0),
            "peak_second": busiest,
            "per_second": {str(second): count for second, count in per_second.items() if count},
        }
    mints = _within(state.items("mints"), since, until)
    return {
        "since": since,
        "until": until,
        "settings": {
            "rate_limit_per_second": rate_limit(),
            "query_latency_ms": round(query_latency() * 1000),
            "token_seconds": token_seconds(),
        },
        "apis": figures,
        "oauth": {"tokens_minted": len(mints), "minted_at": mints},
    }
