import datetime as dt
import json
from decimal import Decimal

import pytest
import responses

from payments.daraja.client import DarajaClient
from payments.daraja.errors import DarajaBusy, DarajaOutcomeUnknown, DarajaRejected
from payments.daraja.pull import PullFormatError, parse_pull_response, pull_row_count
from tests.conftest import FAKE_DARAJA_URL

NAIROBI = dt.timezone(dt.timedelta(hours=3))
QUERY_URL = FAKE_DARAJA_URL + "/pulltransactions/v1/query"
REGISTER_URL = FAKE_DARAJA_URL + "/pulltransactions/v1/register"
# Safaricom's Postman sample, as public client libraries reproduce it.
SAMPLE_ROW = {
    "transactionId": "yzlyrEsRG1",
    "trxDate": "2020-08-05T10:13:00Z",
    "msisdn": 72200000,
    "sender": "UAT2",
    "transactiontype": "c2b-pay-bill-debit",
    "billreference": "37207636392",
    "amount": "168.00",
    "organizationname": "Daraja Pull API Test",
}
EMPTY = {"ResponseRefID": "26178-42530161-2", "ResponseCode": "1001", "Response": [[]]}


def answer(*rows) -> dict:
    return {
        "ResponseRefID": "26178-42530161-2",
        "ResponseCode": "1000",
        "ResponseMessage": "Success",
        "Response": [list(rows)],
    }


def row(**overrides) -> dict:
    return {**SAMPLE_ROW, **overrides}


def query(offset=0):
    return DarajaClient().pull_transactions_query(
        start=dt.datetime(2026, 12, 6, 5, 0, tzinfo=dt.UTC),
        end=dt.datetime(2026, 12, 6, 8, 0, 5, tzinfo=dt.UTC),
        offset=offset,
    )


def test_query_sends_nairobi_dates_and_a_string_offset_with_the_bearer_token(fake_daraja):
    fake_daraja.mock.add(responses.POST, QUERY_URL, json=answer(SAMPLE_ROW))

    body = query(offset=100)

    [sent] = fake_daraja.requests_to("/pulltransactions/v1/query")
    assert json.loads(sent.body) == {
        "ShortCode": "174379",
        "StartDate": "2026-12-06 08:00:00",
        "EndDate": "2026-12-06 11:00:05",
        "OffSetValue": "100",
    }
    assert sent.headers["Authorization"] == f"Bearer {fake_daraja.tokens_issued[0]}"
    assert body["Response"] == [[SAMPLE_ROW]]


def test_query_answers_1001_as_it_came(fake_daraja):
    fake_daraja.mock.add(responses.POST, QUERY_URL, json=EMPTY)

    assert query() == EMPTY


def test_query_refreshes_a_refused_token_once(fake_daraja):
    fake_daraja.mock.add(
        responses.POST,
        QUERY_URL,
        status=404,
        json={"requestId": "1", "errorCode": "404.001.03", "errorMessage": "Invalid Access Token"},
    )
    fake_daraja.mock.add(responses.POST, QUERY_URL, json=EMPTY)

    assert query()["ResponseCode"] == "1001"
    assert fake_daraja.oauth_calls == 2


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            400,
            {"requestId": "r", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid EndDate"},
            DarajaRejected,
        ),
        (500, {"requestId": "r", "errorCode": "500.003.02", "errorMessage": "System is busy."}, DarajaBusy),
        (503, "<html>Service Unavailable</html>", DarajaOutcomeUnknown),
    ],
)
def test_query_errors_use_the_error_hierarchy(fake_daraja, status, body, error):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    fake_daraja.mock.add(responses.POST, QUERY_URL, status=status, **kwargs)

    with pytest.raises(error) as caught:
        query()

    if isinstance(body, dict):
        assert caught.value.error_code == body["errorCode"]


def test_register_sends_the_nominated_number_and_accepts_1000_and_1001(fake_daraja, settings):
    settings.MPESA_PULL_NOMINATED_NUMBER = "0722000000"
    for status, text in (
        ("1000", "Short code Registered Successfully"),
        ("1001", "ShortCode already Registered"),
    ):
        fake_daraja.mock.add(
            responses.POST,
            REGISTER_URL,
            json={
                "ResponseRefID": "18633-7271215-1",
                "Response Status": status,
                "ShortCode": "174379",
                "Response Description": text,
            },
        )

    first = DarajaClient().pull_transactions_register(callback_url="https://shop.example/hooks/pull")
    second = DarajaClient().pull_transactions_register(callback_url="https://shop.example/hooks/pull")

    assert (first["Response Status"], second["Response Status"]) == ("1000", "1001")
    sent = json.loads(fake_daraja.requests_to("/pulltransactions/v1/register")[0].body)
    assert sent == {
        "ShortCode": "174379",
        "RequestType": "Pull",
        "NominatedNumber": "0722000000",
        "CallBackURL": "https://shop.example/hooks/pull",
    }


def test_register_with_another_status_is_rejected(fake_daraja):
    fake_daraja.mock.add(
        responses.POST,
        REGISTER_URL,
        json={"ResponseRefID": "1", "Response Status": "1002", "Response Description": "Invalid ShortCode"},
    )

    with pytest.raises(DarajaRejected, match="Invalid ShortCode") as caught:
        DarajaClient().pull_transactions_register(callback_url="https://shop.example/hooks/pull")

    assert caught.value.error_code == "1002"


# --- parsing ---------------------------------------------------------------------------------------
def test_parses_the_documented_sample():
    [pulled] = parse_pull_response(answer(SAMPLE_ROW))

    assert pulled.receipt == "YZLYRESRG1"
    assert pulled.completed_at == dt.datetime(2020, 8, 5, 10, 13, tzinfo=dt.UTC)
    assert pulled.msisdn == "72200000"  # a number, and partial: kept as text
    assert pulled.amount == Decimal("168.00")
    assert pulled.bill_reference == "37207636392"
    assert pulled.sender == "UAT2"
    assert pulled.transaction_type == "c2b-pay-bill-debit"
    assert pulled.organization_name == "Daraja Pull API Test"
    assert pulled.raw == SAMPLE_ROW


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("2020-08-05T10:13:00Z", dt.datetime(2020, 8, 5, 10, 13, tzinfo=dt.UTC)),
        ("2020-08-05T13:13:00+03:00", dt.datetime(2020, 8, 5, 10, 13, tzinfo=dt.UTC)),
        ("2020-08-05T13:13:00", dt.datetime(2020, 8, 5, 13, 13, tzinfo=NAIROBI)),
        ("2020-08-05 13:13:00", dt.datetime(2020, 8, 5, 13, 13, tzinfo=NAIROBI)),
    ],
)
def test_a_date_with_a_zone_is_read_as_written_and_one_without_as_nairobi_time(written, meant):
    [pulled] = parse_pull_response(answer(row(trxDate=written)))

    assert pulled.completed_at == meant
    assert pulled.completed_at.tzinfo is not None


def test_a_masked_msisdn_is_kept_as_text():
    [pulled] = parse_pull_response(answer(row(msisdn="25470****149")))

    assert pulled.msisdn == "25470****149"


def test_1001_is_no_transactions():
    assert parse_pull_response(EMPTY) == []
    assert pull_row_count(EMPTY) == 0


def test_a_flat_list_of_rows_is_read_too():
    body = {"ResponseCode": "1000", "Response": [SAMPLE_ROW, row(transactionId="QKH94M1Z11")]}

    assert [p.receipt for p in parse_pull_response(body)] == ["YZLYRESRG1", "QKH94M1Z11"]


def test_an_unreadable_row_is_left_out_but_counted_for_the_offset():
    body = answer(row(amount="lots"), row(trxDate="yesterday"), row(transactionId=""), row())

    assert len(parse_pull_response(body)) == 1
    assert pull_row_count(body) == 4


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"requestId": "r", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid EndDate"},
        {"ResponseCode": "1000", "Response": "rows"},
    ],
)
def test_an_error_envelope_or_another_shape_is_not_an_answer(body):
    with pytest.raises(PullFormatError):
        parse_pull_response(body)
