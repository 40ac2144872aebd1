from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from payments.simulator import state, traffic

from .conftest import BASE

MOMENT = datetime(2026, 6, 1, 6, 0, 0, 100_000, tzinfo=UTC)
SECOND = int(MOMENT.timestamp())


@pytest.fixture
def frozen():
    with time_machine.travel(MOMENT, tick=False) as traveller:
        yield traveller


def stats(client, **params):
    params = {"since": SECOND - 5, "until": SECOND + 5, **params}
    response = client.get(f"{BASE}/stats", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_requests_over_the_rate_limit_get_darajas_spike_arrest_error(daraja, settings, frozen):
    settings.SIMULATOR_RATE_LIMIT_PER_SECOND = 2
    checkout = daraja.push().json()["CheckoutRequestID"]  # the push API has a window of its own

    answers = [daraja.query(checkout) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 500]
    refused = answers[2].json()
    assert set(refused) == {"requestId", "errorCode", "errorMessage"}
    assert refused["errorCode"] == "500.003.02"
    assert refused["errorMessage"] == "Error Occurred: Spike Arrest Violation"


def test_the_limit_applies_per_wall_clock_second(daraja, settings, frozen):
    settings.SIMULATOR_RATE_LIMIT_PER_SECOND = 1
    checkout = daraja.push().json()["CheckoutRequestID"]
    assert daraja.query(checkout).status_code == 200
    assert daraja.query(checkout).status_code == 500

    frozen.shift(timedelta(seconds=1))

    assert daraja.query(checkout).status_code == 200


def test_without_a_limit_every_request_is_answered(daraja, frozen):
    checkout = daraja.push().json()["CheckoutRequestID"]

    assert {daraja.query(checkout).status_code for _ in range(5)} == {200}


def test_stats_count_requests_per_second_and_rejections_per_api(client, daraja, settings, frozen):
    settings.SIMULATOR_RATE_LIMIT_PER_SECOND = 2
    checkout = daraja.push().json()["CheckoutRequestID"]
    for _ in range(3):
        daraja.query(checkout)
    frozen.shift(timedelta(seconds=1))
    daraja.query(checkout)

    figures = stats(client, api=["stk_query", "stk_push"])

    query = figures["apis"]["stk_query"]
    assert query["requests"] == 4
    assert query["rejected"] == 1
    assert query["peak_per_second"] == 3
    assert query["peak_second"] == SECOND
    assert query["per_second"] == {str(SECOND): 3, str(SECOND + 1): 1}
    assert figures["apis"]["stk_push"]["requests"] == 1
    assert figures["apis"]["stk_push"]["rejected"] == 0
    assert figures["settings"]["rate_limit_per_second"] == 2


def test_oauth_is_counted_never_limited_and_each_mint_is_kept_with_its_time(client, daraja, settings, frozen):
    settings.SIMULATOR_RATE_LIMIT_PER_SECOND = 1
    first = daraja.oauth()
    frozen.shift(timedelta(seconds=2))
    second = daraja.oauth()
    refused = daraja.oauth(grant_type="password")

    assert (first.status_code, second.status_code, refused.status_code) == (200, 200, 400)
    figures = stats(client, api="oauth")
    assert figures["apis"]["oauth"]["requests"] == 3
    assert figures["apis"]["oauth"]["rejected"] == 0
    assert figures["oauth"]["tokens_minted"] == 2
    assert figures["oauth"]["minted_at"] == [MOMENT.timestamp(), MOMENT.timestamp() + 2]


def test_requests_with_a_superseded_token_are_counted(client, daraja, frozen):
    old = daraja.login()
    daraja.login()

    daraja.post("mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=old)

    assert stats(client, api="stk_push")["apis"]["stk_push"]["invalid_token"] == 1


def test_token_lifetime_is_configurable(daraja, settings, frozen):
    settings.SIMULATOR_TOKEN_SECONDS = 60
    token = daraja.oauth().json()
    assert token["expires_in"] == "59"

    frozen.shift(timedelta(seconds=59))
    still_valid = daraja.post(
        "mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=token["access_token"]
    )
    frozen.shift(timedelta(seconds=2))
    expired = daraja.post("mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=token["access_token"])

    assert still_valid.status_code == 200
    assert expired.status_code == 404
    assert expired.json()["errorCode"] == "404.001.03"


def test_stk_query_answers_after_the_configured_latency_and_the_push_does_not(daraja, settings, monkeypatch):
    waits = []
    monkeypatch.setattr(traffic, "_sleep", waits.append)
    settings.SIMULATOR_QUERY_LATENCY_MS = 300

    checkout = daraja.push().json()["CheckoutRequestID"]
    assert waits == []
    daraja.query(checkout)

    assert waits == [0.3]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": SECOND, "until": SECOND - 1},
        {"since": SECOND - traffic.STATS_MAX_SECONDS, "until": SECOND},
        {"since": SECOND, "until": SECOND, "api": "balance"},
    ],
)
def test_stats_refuses_a_bad_period_or_api(client, params):
    assert client.get(f"{BASE}/stats", params).status_code == 400


def test_a_sequence_stays_exact_when_its_hint_lags_behind():
    positions = [state.append("bench", n) for n in range(3)]
    state.put("next", "bench", 1)  # a slower appender wrote an older hint last

    positions.append(state.append("bench", 3))

    assert positions == [0, 1, 2, 3]
    assert state.lengths(["bench", "empty"]) == {"bench": 4, "empty": 0}
    assert state.items("bench") == [0, 1, 2, 3]
