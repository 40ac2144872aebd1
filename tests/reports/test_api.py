"""`GET /api/v1/reports/summary`: the selectors' figures as JSON, for staff tokens with the reports scope."""

import pytest
from django.contrib.auth.models import Permission

from backoffice.services import api_token_issue
from tests.conftest import ApiClient
from tests.reports import dataset

SUMMARY = "/api/v1/reports/summary"


@pytest.fixture
def finance(django_user_model):
    user = django_user_model.objects.create_user("finance-bot", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_payment"))
    return ApiClient(api_token_issue(username=user.username, scopes=["reports"])[1])


def test_the_summary_gives_every_figure_with_money_as_strings_and_rates_as_numbers(finance, api_user):
    dataset.build(api_user)

    response = finance.get(SUMMARY, {"from": "2026-11-10", "to": "2026-11-11"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"], body["to"], body["timezone"]) == ("2026-11-10", "2026-11-11", "Africa/Nairobi")
    assert body["attempts"] == {"total": 7, "completed": 2, "failed": 3, "inFlight": 1, "underReview": 1}
    assert body["orders"] == {"withMpesaAttempt": 6, "paid": 2}
    assert body["rates"]["attemptSuccess"] == pytest.approx(0.4)
    assert body["rates"]["technicalSuccess"] == pytest.approx(0.5)
    assert body["rates"]["orderConversion"] == pytest.approx(1 / 3)
    assert body["money"] == {
        "currency": "KES",
        "collected": "500.00",
        "refunded": "100.00",
        "net": "400.00",
        "refundsInFlight": "20.00",
        "codAwaiting": "300.00",
    }
    assert body["settledBy"] == {"callback": 2, "query": 2, "staff": 0, "push": 0, "system": 1}
    assert body["timeToResultSeconds"] == {"p50": 28.0, "p90": 60.0}
    assert body["failures"][0] == {
        "class": "customer",
        "resultCode": "1032",
        "reason": "Cancelled by the customer",
        "count": 1,
    }
    assert body["daily"] == [
        {"date": "2026-11-10", "attempts": 3, "completed": 1, "failed": 2, "collected": "150.00",
         "refunded": "0.00", "attemptSuccess": pytest.approx(1 / 3)},
        {"date": "2026-11-11", "attempts": 4, "completed": 1, "failed": 1, "collected": "350.00",
         "refunded": "100.00", "attemptSuccess": 0.5},
    ]  # fmt: skip
    assert "completed + failed" in body["formulas"]["attempt_success"]


def test_nothing_to_divide_is_null(finance, db):
    body = finance.get(SUMMARY, {"from": "2026-11-10", "to": "2026-11-10"}).json()

    assert body["rates"] == {"attemptSuccess": None, "technicalSuccess": None, "orderConversion": None}
    assert body["timeToResultSeconds"] == {"p50": None, "p90": None}


def test_a_storefront_token_is_refused(api_client):
    response = api_client.get(SUMMARY, {"from": "2026-11-10", "to": "2026-11-11"})

    assert response.status_code == 403
    assert response.json()["error"]["required_scope"] == "reports"


def test_a_reports_token_of_a_user_who_may_not_see_payments_is_refused(django_user_model, db):
    django_user_model.objects.create_user("clerk", is_staff=True)
    clerk = ApiClient(api_token_issue(username="clerk", scopes=["reports"])[1])

    response = clerk.get(SUMMARY, {"from": "2026-11-10", "to": "2026-11-11"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-11-31", "to": "2026-12-01"}, "from"),
        ({"from": "2026-11-10", "to": "yesterday"}, "to"),
        ({"from": "2026-11-11", "to": "2026-11-10"}, "to"),
        ({"from": "2025-01-01", "to": "2026-11-10"}, "to"),
    ],
)
def test_a_bad_period_is_a_400_naming_the_field(finance, query, field):
    response = finance.get(SUMMARY, query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]


def test_missing_dates_are_a_validation_error(finance):
    response = finance.get(SUMMARY)

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) >= {"from", "to"}


def test_a_nul_in_a_filter_is_a_400_not_a_database_error(finance):
    response = finance.get(SUMMARY, {"from": "2026-11-10", "to": "2026-11-11", "channel": "shop\x00"})

    assert response.status_code == 400
    assert "channel" in response.json()["error"]["fields"]
