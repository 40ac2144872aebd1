"""The client's pace (MPESA_RATE_LIMIT_PER_SECOND, shared by every process through the cache) and its OAuth token
(one mint per lifetime, however many processes need it at once)."""

import datetime as dt
import json
import math
import threading
import time
from collections import Counter

import pytest
import responses
import time_machine
from django.core.cache import cache
from django.db import connection

from payments import reconciliation
from payments.daraja import client as client_module
from payments.daraja.client import STK_PUSH_PATH, STK_QUERY_PATH, DarajaClient, token_cache_seconds
from payments.daraja.errors import DarajaBusy
from payments.daraja.rate_limit import DarajaPacer
from payments.models import EventKind, PaymentStatus
from tests.conftest import FAKE_DARAJA_URL

START = 1_780_000_000.0  # a whole second


class FakeTime:
    """A clock and a sleep that moves it; `waits` records every sleep."""

    def __init__(self, now: float = START):
        self.now = now
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def pace(db, settings):
    settings.MPESA_RATE_LIMIT_PER_SECOND = 5
    cache.clear()
    return settings


def pacer(fake: FakeTime, *, max_wait: float = 5.0, moves_clock: bool = False) -> DarajaPacer:
    """A process's pacer on the shared cache; with moves_clock=False its sleeps leave the clock alone (as
    when several processes claim their slots at the same moment)."""
    return DarajaPacer(
        clock=fake.clock, sleep=fake.sleep if moves_clock else fake.waits.append, max_wait=max_wait
    )


def test_without_a_limit_requests_are_sent_at_once(db, settings):
    settings.MPESA_RATE_LIMIT_PER_SECOND = 0
    fake = FakeTime()

    waits = [pacer(fake).wait_for_slot(STK_QUERY_PATH) for _ in range(50)]

    assert waits == [0.0] * 50
    assert fake.waits == []


def test_requests_past_the_limit_wait_for_evenly_spaced_slots(pace):
    fake = FakeTime()
    processes = [pacer(fake) for _ in range(6)]

    waits = [process.wait_for_slot(STK_QUERY_PATH) for process in processes]

    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_no_wall_clock_second_carries_more_than_the_limit_across_processes(pace):
    # Three processes asking 20 times a second between them for 3 s; Daraja would count per second.
    fake = FakeTime(START + 0.37)
    processes = [pacer(fake, max_wait=30) for _ in range(3)]
    sent_at = []
    for n in range(60):
        fake.now = START + 0.37 + n * 0.05
        wait = processes[n % 3].wait_for_slot(STK_QUERY_PATH)
        sent_at.append(fake.now + wait)

    per_second = Counter(math.floor(moment + 1e-9) for moment in sent_at)
    assert max(per_second.values()) == 5
    assert len(sent_at) == 60


def test_a_request_whose_slot_is_too_far_away_is_busy_and_not_sent(pace):
    pace.MPESA_RATE_LIMIT_PER_SECOND = 2
    fake = FakeTime()
    processes = [pacer(fake, max_wait=1.0) for _ in range(4)]

    waits = [process.wait_for_slot(STK_QUERY_PATH) for process in processes[:3]]
    with pytest.raises(DarajaBusy, match="MPESA_RATE_LIMIT_PER_SECOND"):
        processes[3].wait_for_slot(STK_QUERY_PATH)

    assert waits == pytest.approx([0.0, 0.5, 1.0])


def test_each_daraja_api_has_a_budget_of_its_own(pace):
    pace.MPESA_RATE_LIMIT_PER_SECOND = 1
    fake = FakeTime()
    pacer(fake).wait_for_slot(STK_QUERY_PATH)

    assert pacer(fake).wait_for_slot(STK_PUSH_PATH) == 0.0
    assert pacer(fake).wait_for_slot(STK_QUERY_PATH) == pytest.approx(1.0)


def test_the_client_waits_for_its_slot_before_each_request(pace, fake_daraja):
    pace.MPESA_RATE_LIMIT_PER_SECOND = 2
    fake = FakeTime()
    client = DarajaClient(pacer=pacer(fake, moves_clock=True))

    for _ in range(3):
        client.stk_query(checkout_request_id="ws_CO_1")

    assert len(fake_daraja.queries) == 3
    assert fake.waits == pytest.approx([0.5, 0.5])  # OAuth is not paced: only the queries wait


def test_a_throttled_sweeper_query_is_asked_again_later_and_never_expires(pace, fake_daraja, place_order):
    _order, payment = place_order()
    pace.MPESA_RATE_LIMIT_PER_SECOND = 1
    fake = FakeTime()
    busy = pacer(fake, max_wait=0)
    busy.wait_for_slot(STK_QUERY_PATH)  # another process took this second's only query
    client_module.get_client().pacer = busy
    past_deadline = payment.initiated_at + dt.timedelta(seconds=pace.MPESA_PAYMENT_DEADLINE + 1)

    try:
        reconciliation.payment_reconcile(payment_id=payment.pk, now=past_deadline)
    finally:
        client_module.get_client().pacer = DarajaPacer()

    payment.refresh_from_db()
    assert (payment.status, payment.query_failing) == (PaymentStatus.INITIATED, True)
    assert payment.events.filter(kind=EventKind.QUERY_FAILED).exists()
    assert fake_daraja.queries == []


@pytest.mark.parametrize(("limit", "batch"), [(0, 200), (10, 600), (1, 60)])
def test_a_sweep_claims_what_the_rate_limit_lets_through_until_the_next_sweep(settings, limit, batch):
    settings.MPESA_RATE_LIMIT_PER_SECOND = limit

    assert reconciliation.sweep_batch_size() == batch


# --- OAuth: one token per lifetime --------------------------------------------------------------------------
@pytest.mark.parametrize(("lifetime", "used_for"), [(3599, 3299), (59, 54), (9, 8)])
def test_a_token_is_used_until_a_tenth_of_its_life_at_most_five_minutes_is_left(lifetime, used_for):
    assert token_cache_seconds(lifetime) == used_for


def test_a_short_lived_token_is_renewed_before_it_expires(fake_daraja):
    fake_daraja.oauth_replies.extend(
        [(200, {"access_token": token, "expires_in": "59"}) for token in ("first-token", "second-token")]
    )
    client = DarajaClient()
    with time_machine.travel(dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC), tick=False) as traveller:
        client.stk_query(checkout_request_id="ws_CO_1")
        traveller.shift(dt.timedelta(seconds=53))
        client.stk_query(checkout_request_id="ws_CO_1")
        traveller.shift(dt.timedelta(seconds=2))
        client.stk_query(checkout_request_id="ws_CO_1")

    authorizations = [r.headers["Authorization"] for r in fake_daraja.requests_to(STK_QUERY_PATH)]
    assert authorizations == ["Bearer first-token", "Bearer first-token", "Bearer second-token"]


@pytest.mark.django_db(transaction=True)
def test_processes_that_need_a_token_at_the_same_moment_mint_one(settings):
    settings.MPESA_BASE_URL = FAKE_DARAJA_URL
    cache.clear()
    minted = []

    def oauth(_request):
        time.sleep(0.2)  # a slow OAuth answer: every other process asks while this one mints
        minted.append(f"token-{len(minted) + 1}")
        return 200, {}, json.dumps({"access_token": minted[-1], "expires_in": "3599"})

    start = threading.Barrier(6)
    tokens = []

    def process():
        try:
            start.wait()
            tokens.append(DarajaClient().access_token())
        finally:
            connection.close()

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, FAKE_DARAJA_URL + "/oauth/v1/generate", callback=oauth)
        threads = [threading.Thread(target=process) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert minted == ["token-1"]
    assert tokens == ["token-1"] * 6
