"""Finance staff find an order paid by M-Pesa in the admin, with its payment history, in a real browser."""

import pytest
from playwright.sync_api import expect

from tests.conftest import order_body, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_paid_order_shows_receipt_and_history_in_admin(daraja, products, api_client, admin_login):
    response = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk))
    assert response.status_code == 201
    payment_id = response.json()["payment"]["id"]
    order_reference = response.json()["order"]["reference"]

    def receipt():
        return api_client.get(f"/api/v1/payments/{payment_id}/status").json()["mpesaReceiptNumber"]

    receipt_number = wait_for(receipt)

    page = admin_login()
    page.goto(f"{daraja.url}/admin/payments/payment/")
    row = page.locator("#result_list tbody tr").first
    expect(row).to_contain_text(receipt_number)
    expect(row).to_contain_text("Completed")
    # In full: superusers hold orders.view_full_phone (roles without it see 2547*****149, tests/admin).
    expect(row).to_contain_text("254708374149")

    page.goto(f"{daraja.url}/admin/payments/payment/{payment_id}/change/")
    expect(page.locator("body")).to_contain_text("STK push accepted")
    expect(page.locator("body")).to_contain_text(f"Paid, receipt {receipt_number}")

    page.goto(f"{daraja.url}/admin/orders/order/?q={order_reference}")
    expect(page.locator("#result_list")).to_contain_text("Confirmed")


def test_staff_ask_mpesa_now_from_the_payment_page(daraja, products, api_client, admin_login):
    # The simulator never sends this number's callback: only a query can settle it.
    response = api_client.post_json(
        "/api/v1/orders", order_body(phone="254700000404", product_id=products[0].pk)
    )
    payment_id = response.json()["payment"]["id"]
    assert response.json()["payment"]["status"] == "initiated"

    page = admin_login()
    page.goto(f"{daraja.url}/admin/payments/payment/{payment_id}/change/")
    page.get_by_role("link", name="Ask M-Pesa now").click()
    # A confirmation dialog: the query is sent only by its POST.
    page.get_by_role("button", name="Ask M-Pesa").click()
    expect(page.locator("body")).to_contain_text("is Completed")
