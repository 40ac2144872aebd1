import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from payments.simulator import ledger, pull

from .conftest import NAIROBI
from .test_results import B2C, b2c_body
from .test_stk_callbacks import items_of, pay

REGISTER = "pulltransactions/v1/register"
QUERY = "pulltransactions/v1/query"


@pytest.fixture(autouse=True)
def empty_ledger(simulator_environment):
    cache.clear()


def register_body(**overrides):
    body = {
        "ShortCode": "174379",
        "RequestType": "Pull",
        "NominatedNumber": "0722000000",
        "CallBackURL": "https://shop.example/hooks/pull",
    }
    body.update(overrides)
    return body


def window(start: datetime | None = None, end: datetime | None = None, offset="0", **overrides):
    now = datetime.now(NAIROBI)
    body = {
        "ShortCode": "174379",
        "StartDate": (start or now - timedelta(hours=1)).astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S"),
        "EndDate": (end or now + timedelta(minutes=1)).astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S"),
        "OffSetValue": offset,
    }
    body.update(overrides)
    return body


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.content
    [rows] = response.json()["Response"]
    return rows


def test_register_answers_1000_then_1001_with_safaricoms_keys(daraja):
    first = daraja.post(REGISTER, register_body())
    second = daraja.post(REGISTER, register_body())

    assert first.status_code == 200
    assert first.json()["Response Status"] == "1000"
    assert first.json()["Response Description"] == "Short code Registered Successfully"
    assert first.json()["ShortCode"] == "174379"
    assert re.fullmatch(r"\d{5}-\d{7}-1", first.json()["ResponseRefID"])
    assert second.json()["Response Status"] == "1001"
    assert second.json()["Response Description"] == "ShortCode already Registered"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ShortCode": "600000"}, "ShortCode"),
        ({"RequestType": "pull"}, "RequestType"),
        ({"NominatedNumber": "12345"}, "NominatedNumber"),
        ({"CallBackURL": "not a url"}, "CallBackURL"),
    ],
)
def test_register_validates_its_fields(daraja, overrides, field):
    response = daraja.post(REGISTER, register_body(**overrides))

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.02"
    assert response.json()["errorMessage"] == f"Bad Request - Invalid {field}"


@pytest.mark.parametrize("path", [REGISTER, QUERY])
def test_pull_endpoints_need_a_valid_token(daraja, path):
    daraja.login()

    response = daraja.post(path, register_body() if path == REGISTER else window(), token="not-the-token")

    assert response.status_code == 404
    assert response.json()["errorCode"] == "404.001.03"


def test_query_lists_customer_payments_only_in_time_order(daraja, receiver):
    _, url = pay(daraja, receiver, "254708374149", amount=168)
    receipt = items_of(receiver.wait_for(url)[0])["MpesaReceiptNumber"]
    pay(daraja, receiver, "254700000404", amount=20)  # the callback never comes; the money came
    pay(daraja, receiver, "254700000032", amount=30)  # cancelled: nothing came
    direct = ledger.pay_bill(phone="254712345678", amount_kes=500, account="INV-9")
    body = b2c_body(receiver, PartyA="174379")
    assert daraja.post(B2C, body).status_code == 200

    response = daraja.post(QUERY, window())

    assert response.json()["ResponseCode"] == "1000"
    assert response.json()["ResponseMessage"] == "Success"
    rows = rows_of(response)
    assert [row["transactionId"] for row in rows][0] == receipt
    assert [row["amount"] for row in rows] == ["168.00", "20.00", "500.00"]
    assert rows[2]["transactionId"] == direct["receipt"]
    first = rows[0]
    assert set(first) == {
        "transactionId",
        "trxDate",
        "msisdn",
        "sender",
        "transactiontype",
        "billreference",
        "amount",
        "organizationname",
    }
    assert first["msisdn"] == "25470****149"
    assert first["sender"] == ledger.customer_name("254708374149")
    assert first["transactiontype"] == "c2b-pay-bill-debit"
    assert first["billreference"] == "ORD-1001"
    assert first["organizationname"] == "Simulator Shop Ltd"
    # UTC, written with a Z.
    paid_at = datetime.strptime(first["trxDate"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((paid_at - datetime.now(UTC)).total_seconds()) < 60
    assert rows[1]["msisdn"] == "25470****404"
    assert rows[2]["billreference"] == "INV-9"


def test_query_pages_by_row_offset_until_1001(daraja, monkeypatch):
    monkeypatch.setattr(pull, "PAGE_SIZE", 2)
    receipts = [
        ledger.pay_bill(phone="254712345678", amount_kes=n, account=f"A{n}")["receipt"] for n in (1, 2, 3)
    ]

    first = rows_of(daraja.post(QUERY, window(offset="0")))
    second = rows_of(daraja.post(QUERY, window(offset="2")))
    third = daraja.post(QUERY, window(offset="3"))

    assert [row["transactionId"] for row in first + second] == receipts
    assert third.json()["ResponseCode"] == "1001"
    assert third.json()["Response"] == [[]]


def test_page_size_is_100(daraja):
    for n in range(101):
        ledger.pay_bill(phone="254712345678", amount_kes=n + 1)

    assert len(rows_of(daraja.post(QUERY, window()))) == 100
    assert len(rows_of(daraja.post(QUERY, window(offset=100)))) == 1


def test_query_of_a_period_without_payments_answers_1001(daraja):
    ledger.pay_bill(phone="254712345678", amount_kes=10)
    now = datetime.now(NAIROBI)

    response = daraja.post(QUERY, window(now - timedelta(hours=30), now - timedelta(hours=2)))

    assert response.status_code == 200
    assert response.json()["ResponseCode"] == "1001"
    assert response.json()["Response"] == [[]]


def test_query_accepts_dates_without_seconds_and_single_digit_hours(daraja):
    ledger.pay_bill(phone="254712345678", amount_kes=10)
    now = datetime.now(NAIROBI)
    start = now - timedelta(hours=47)

    response = daraja.post(
        QUERY,
        window(
            StartDate=f"{start:%Y-%m-%d} {start.hour}:{start:%M}",
            EndDate=f"{now + timedelta(minutes=2):%Y-%m-%d %H:%M}",
        ),
    )

    assert len(rows_of(response)) == 1


def test_a_window_over_48_hours_is_refused(daraja):
    now = datetime.now(NAIROBI)

    response = daraja.post(QUERY, window(now - timedelta(hours=48, minutes=1), now))

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.02"
    assert "48 hours" in response.json()["errorMessage"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ShortCode": "600000"}, "ShortCode"),
        ({"StartDate": "2026-12-06T08:00:00"}, "StartDate"),
        ({"EndDate": "06-12-2026 08:00"}, "EndDate"),
        ({"OffSetValue": "-1"}, "OffSetValue"),
        ({"OffSetValue": "ten"}, "OffSetValue"),
    ],
)
def test_query_validates_its_fields(daraja, overrides, field):
    response = daraja.post(QUERY, window(**overrides))

    assert response.status_code == 400
    assert response.json()["errorMessage"] == f"Bad Request - Invalid {field}"


def test_an_end_before_the_start_is_refused(daraja):
    now = datetime.now(NAIROBI)

    response = daraja.post(QUERY, window(now, now - timedelta(hours=1)))

    assert response.json()["errorMessage"] == "Bad Request - Invalid EndDate"
