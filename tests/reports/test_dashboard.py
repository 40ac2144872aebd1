"""The admin index is the finance dashboard: KPI cards, charts and the attention list, from the selectors."""

import datetime as dt
import json

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse

from backoffice.services import api_token_issue
from notifications.models import Notification
from payments.models import CallbackInbox, Payment
from reports import selectors
from reports.periods import Period
from tests.conftest import ApiClient
from tests.reports import dataset

NOV_12_NOON = dt.datetime(2026, 11, 12, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def history(api_user):
    return dataset.build(api_user)


def dashboard(client, **query):
    response = client.get(reverse("admin:index"), query)
    assert response.status_code == 200
    return response


def kpi(response, key):
    return next(card for card in response.context["kpis"] if card.key == key)


def test_the_dashboard_shows_the_same_figures_as_the_api_and_the_selectors(history, admin_client, admin_user):
    response = dashboard(admin_client, **{"from": "2026-11-10", "to": "2026-11-11"})
    api = ApiClient(api_token_issue(username=admin_user.username, scopes=["reports"])[1])
    body = api.get("/api/v1/reports/summary", {"from": "2026-11-10", "to": "2026-11-11"}).json()
    figures = selectors.summary(Period(dt.date(2026, 11, 10), dt.date(2026, 11, 11)))

    assert kpi(response, "collected").value == f"{figures.collected:,.2f}" == "500.00"
    assert body["money"]["collected"] == str(figures.collected)
    assert kpi(response, "attempt_success").value == "40.0%"
    assert body["rates"]["attemptSuccess"] == figures.attempt_success == pytest.approx(0.4)
    assert kpi(response, "technical_success").value == "50.0%"
    assert kpi(response, "order_conversion").value == "33.3%"
    assert kpi(response, "paid_orders").value == str(body["orders"]["paid"]) == "2"
    assert kpi(response, "refunded").value == "100.00"
    assert kpi(response, "in_flight").value == str(body["attempts"]["inFlight"]) == "1"
    html = response.content.decode()
    assert "completed + failed" in html  # the formula is shown with the figure


def test_each_card_compares_with_the_previous_period(history, admin_client):
    response = dashboard(admin_client, **{"from": "2026-11-11", "to": "2026-11-11"})

    collected = kpi(response, "collected")
    assert (collected.value, collected.previous) == ("350.00", "150.00")
    assert collected.change == "+133.3%" and collected.better is True
    assert kpi(response, "refunded").better is False  # more refunds is not good news
    success = kpi(response, "attempt_success")
    assert (success.value, success.previous, success.change) == ("50.0%", "33.3%", "+16.7 pts")


def test_the_charts_carry_the_daily_series_failures_and_hours(history, admin_client):
    response = dashboard(admin_client, **{"from": "2026-11-10", "to": "2026-11-11"})

    daily = json.loads(response.context["daily_chart"]["data"])
    assert daily["labels"] == ["10 Nov", "11 Nov"]
    collected = next(d for d in daily["datasets"] if d["label"] == "Collected (KES)")
    assert collected["data"] == [150.0, 350.0]
    bars = response.context["failure_bars"]
    assert [bar["title"] for bar in bars] == [
        "Cancelled by the customer (1032)",
        "No answer before the deadline",
        "M-Pesa busy (26)",
    ]
    assert bars[0]["description"] == "1 · 33%"
    assert [bar["progress_class"] for bar in bars] == [
        "",
        "bg-red-500 dark:bg-red-500",
        "bg-red-500 dark:bg-red-500",
    ]
    hours = json.loads(response.context["hourly_chart"]["data"])
    assert len(hours["labels"]) == 24 and hours["datasets"][0]["data"][8] == 1


def test_presets_are_nairobi_days(history, admin_client):
    with time_machine.travel(NOV_12_NOON, tick=False):
        response = dashboard(admin_client, period="yesterday")

    assert response.context["period"] == Period(dt.date(2026, 11, 11), dt.date(2026, 11, 11), "yesterday")
    assert kpi(response, "collected").value == "350.00"


def test_a_bad_period_falls_back_with_a_message(admin_client, db):
    response = dashboard(admin_client, **{"from": "2026-11-12", "to": "2026-11-01"})

    assert response.context["period"].name == "last_7_days"
    assert "ends before it starts" in response.content.decode()


def test_needs_attention_counts_and_links_to_the_filtered_lists_and_says_all_clear(history, admin_client):
    CallbackInbox.objects.create(kind="stk_callback", status="unmatched", body="{}", attempts=1)
    response = dashboard(admin_client)

    items = {item.key: item for item in response.context["attention"]}
    assert items["payments_under_review"].count == 1
    assert items["unmatched_callbacks"].count == 1
    assert items["refunds_unknown"].count == 0
    assert "all clear" in response.content.decode()
    listed = admin_client.get(items["payments_under_review"].url)
    assert [p.pk for p in listed.context["cl"].result_list] == [history["A7"].pk]
    listed = admin_client.get(items["unmatched_callbacks"].url)
    assert listed.context["cl"].result_count == 1


def test_every_attention_link_opens_its_filtered_list(history, admin_client):
    Notification.objects.create(
        event="payment_completed", channel="sms", recipient="254708374149", status="rejected", body="x",
        dedupe_key="attention-test",
    )  # fmt: skip
    for item in dashboard(admin_client).context["attention"]:
        listed = admin_client.get(item.url)
        assert listed.status_code == 200, item.url
        assert listed.context["cl"].result_count == item.count, item.key


def test_staff_who_may_not_see_payments_get_no_figures(history, client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(clerk)

    response = dashboard(client)

    assert "kpis" not in response.context
    assert "Collected (KES)" not in response.content.decode()
    assert [item.key for item in response.context["attention"]] == ["notifications_failed"]


def test_the_dashboard_changes_nothing(history, admin_client):
    before = Payment.objects.order_by("pk").values_list("status", "updated_at")
    before = list(before)
    dashboard(admin_client, period="last_30_days")
    assert list(Payment.objects.order_by("pk").values_list("status", "updated_at")) == before
