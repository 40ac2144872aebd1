"""The finance dashboard in a real browser: KPI cards and charts drawn with data, light and dark."""

from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from backoffice.demo_history import HistoryWriter

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def history(products, django_user_model):
    storefront = django_user_model.objects.create_user("storefront")
    finance = django_user_model.objects.create_user("finance", is_staff=True)
    HistoryWriter(owner=storefront, staff=finance, now=timezone.now()).run(days=14, attempts=1500)


def test_the_dashboard_draws_its_cards_charts_and_attention_list(history, admin_login, pytestconfig):
    page = admin_login()
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(page.url + "?period=last_7_days")

    cards = page.locator("[data-kpi]")
    expect(cards).to_have_count(7)
    expect(page.locator("[data-kpi=collected]")).to_contain_text("Collected (KES)")
    expect(page.locator("[data-kpi=attempt_success]")).to_contain_text("%")
    # The KPI row fits a laptop screen without scrolling.
    assert page.locator("[data-testid=kpis]").bounding_box()["y"] + 150 < 900
    charts = page.locator("canvas.chart")
    expect(charts).to_have_count(2)
    for index in range(2):
        box = charts.nth(index).bounding_box()
        assert box["width"] > 200 and box["height"] > 200
    # Chart.js drew on the canvas: it is no longer blank.
    painted = page.evaluate(
        """() => [...document.querySelectorAll('canvas.chart')].map(c => {
            const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return pixels.some(value => value !== 0);
        })"""
    )
    assert painted == [True, True]
    expect(page.locator("[data-testid=failures]")).to_contain_text("Cancelled by the customer")
    expect(page.locator("[data-testid=attention]")).to_contain_text("Payments under review")

    output = Path(pytestconfig.getoption("output"))
    output.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(output / "dashboard-light.png"), full_page=True)
    page.evaluate("() => document.documentElement.classList.add('dark')")
    page.wait_for_timeout(200)
    page.screenshot(path=str(output / "dashboard-dark.png"), full_page=True)
    assert (output / "dashboard-dark.png").stat().st_size > 10_000
