"""A Manager imports the M-PESA statement in a real browser: the run shows its totals and the one payment
nobody recorded, which they resolve with "Mark as expected"."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import expect

from backoffice import roles
from payments.models import Payment
from statements.models import ItemKind, ItemStatus, ReconciliationItem, Resolution
from tests.conftest import order_body, wait_for
from tests.statements.statement_files import customer_payment, statement_csv

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def manager(django_user_model):
    user = django_user_model.objects.create_user("manager", password="manager-pw-1", is_staff=True)
    user.groups.add(Group.objects.get(name=roles.MANAGER))
    return user


def test_a_manager_imports_a_statement_and_marks_the_unrecorded_payment_as_expected(
    daraja, products, api_client, manager, page, tmp_path
):
    response = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk))
    payment_id = response.json()["payment"]["id"]
    wait_for(lambda: Payment.objects.get(pk=payment_id).mpesa_receipt_number)
    paid = Payment.objects.get(pk=payment_id)
    at = timezone.localtime(paid.completed_at)
    statement = tmp_path / "statement.csv"
    statement.write_bytes(
        statement_csv(
            [
                customer_payment(paid.mpesa_receipt_number, paid.amount, at=at),
                customer_payment(
                    "SGR7PAYBL01",
                    Decimal("750"),
                    at=at - dt.timedelta(minutes=2),
                    other_party="254712345678 - MARY WANJIKU",
                ),
            ],
            period=(at - dt.timedelta(hours=1), at + dt.timedelta(hours=1)),
        )
    )

    page.goto(f"{daraja.url}/admin/login/?next=/admin/")
    page.fill("input[name=username]", "manager")
    page.fill("input[name=password]", "manager-pw-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{daraja.url}/admin/")

    page.goto(f"{daraja.url}/admin/statements/statementimport/")
    page.get_by_role("link", name="Import statement").click()
    page.set_input_files("input[name=file]", str(statement))
    page.get_by_role("button", name="Import and reconcile").click()

    # The run: the success message, its totals, the identities, and the exception by kind.
    expect(page.locator("body")).to_contain_text("2 lines read, 2 new, 0 already known")
    totals = page.locator("[data-testid=run-totals]")
    expect(totals).to_contain_text("Statement: paid in")
    expect(totals).to_contain_text("KES 750.00")
    expect(page.locator("[data-testid=run-identities]")).to_contain_text(
        "Difference explained to the shilling"
    )
    page.locator("[data-testid=run-items]").get_by_role("link", name="Received but not recorded").click()

    row = page.locator("#result_list tbody tr").first
    expect(row).to_contain_text("SGR7PAYBL01")
    row.locator("a").first.click()
    page.get_by_role("link", name="Mark as expected").click()
    page.fill("textarea[name=note]", "Paybill payment at the counter")
    page.get_by_role("button", name="Mark as expected").click()

    expect(page.locator("body")).to_contain_text("Exception marked as expected.")
    expect(page.locator("body")).to_contain_text("Resolved by staff")
    item = ReconciliationItem.objects.get(kind=ItemKind.UNRECORDED_LINE)
    assert (item.status, item.resolution, item.resolved_by) == (
        ItemStatus.RESOLVED,
        Resolution.EXPECTED,
        manager,
    )
