"""A refund requested from the payment page is submitted to M-Pesa and shows its reversal receipt."""

import pytest
from playwright.sync_api import expect

from payments.models import Refund, RefundStatus
from tests.conftest import order_body, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_refund_from_the_payment_page_succeeds_with_reversal_receipt(
    daraja, products, api_client, admin_login
):
    response = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk))
    payment_id = response.json()["payment"]["id"]
    wait_for(lambda: api_client.get(f"/api/v1/payments/{payment_id}/status").json()["status"] == "completed")

    page = admin_login()
    page.goto(f"{daraja.url}/admin/payments/payment/{payment_id}/change/")
    page.locator("a:has-text('Refund')").last.click()
    page.fill("input[name=reason]", "Item out of stock")
    page.get_by_role("button", name="Request refund").click()
    page.wait_for_url(f"{daraja.url}/admin/payments/refund/*/change/")

    refund = wait_for(lambda: Refund.objects.filter(status=RefundStatus.SUCCEEDED).first())
    page.reload()
    body = page.locator("body")
    expect(body).to_contain_text("Succeeded")
    expect(body).to_contain_text(refund.transaction_id)
    expect(body).to_contain_text("Item out of stock")
    # A settled refund offers no approve/reject/resend actions.
    expect(page.get_by_role("link", name="Approve")).to_have_count(0)
    expect(page.get_by_role("link", name="Send reversal again")).to_have_count(0)

    page.goto(f"{daraja.url}/admin/payments/payment/{payment_id}/change/")
    expect(page.locator("body")).to_contain_text("Refunded")
