"""Daraja's Spike Arrest, respected from our side: all our processes together send each Daraja API at most
MPESA_RATE_LIMIT_PER_SECOND requests per second.

Past its limit Daraja answers 500.003.02 "Spike Arrest Violation" (daraja.md §2) and publishes no figure; the
setting holds the one agreed for the app (0, the default, sends at once). Each API (URL path) has its own
budget, so the sweeper's STK Queries never hold back a customer's STK push.

How: a second is cut into `rate` slots of 1/rate s each, numbered from the epoch. A request claims the first
free slot from now on with `cache.add` on the slot's key, which is atomic in the shared cache (SET NX on
Redis, an INSERT on the primary key of the database cache), and waits for the slot to begin. One request per
slot means at most `rate` requests begin in any wall-clock second, evenly spaced, so the limit holds however
Daraja aligns its window and whatever the number of processes and hosts (their clocks kept by NTP). A request
whose slot would be more than `max_wait` away is not sent: DarajaBusy, which every caller already treats as
"nothing happened, ask again later" (the sweeper never expires an attempt on it).
"""

import math
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache

from payments.daraja.errors import DarajaBusy

KEY_PREFIX = "daraja:rate:"
MAX_WAIT_SECONDS = 5.0


class DarajaPacer:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = MAX_WAIT_SECONDS,
    ):
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait

    @staticmethod
    def rate() -> int:
        return max(0, int(settings.MPESA_RATE_LIMIT_PER_SECOND or 0))

    def wait_for_slot(self, api: str) -> float:
        """Block until this process may send one request to `api`; returns the seconds waited."""
        rate = self.rate()
        if not rate:
            return 0.0
        now = self.clock()
        slot = math.floor(now * rate)
        last = math.floor((now + self.max_wait) * rate)
        hint_key = f"{KEY_PREFIX}{api}:next"
        hint = cache.get(hint_key)
        if isinstance(hint, int) and hint > slot:
            slot = hint  # the slots before it are taken: skip asking for each of them
        keep = math.ceil(self.max_wait) + 5  # a slot key outlives its slot
        while slot <= last:
            if cache.add(f"{KEY_PREFIX}{api}:{slot}", 1, timeout=keep):
                cache.set(hint_key, slot + 1, timeout=keep)
                wait = max(0.0, slot / rate - self.clock())
                if wait:
                    self.sleep(wait)
                return wait
            slot += 1
        raise DarajaBusy(
            f"Daraja rate limit: {rate} requests a second to {api} are taken for the next "
            f"{self.max_wait:g} s (MPESA_RATE_LIMIT_PER_SECOND); ask again later"
        )
