"""Four people, four roles: a Manager requests a refund, a second Manager approves it, the Auditor finds both
steps in the audit trail, and a Viewer sees no action and cannot act by posting to an action URL."""

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from audit.models import AuditEntry
from backoffice import roles
from payments.models import Refund, RefundStatus
from tests.conftest import order_body, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people(django_user_model):
    made = {}
    for username, role in (
        ("manager", roles.MANAGER),
        ("manager2", roles.MANAGER),
        ("auditor", roles.AUDITOR),
        ("viewer", roles.VIEWER),
    ):
        user = django_user_model.objects.create_user(username, password=f"{username}-pw-1", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        made[username] = user
    return made


@pytest.fixture
def sign_in(browser, live_server):
    contexts = []

    def open_as(username: str, base_url: str):
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{base_url}/admin/login/?next=/admin/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", f"{username}-pw-1")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base_url}/admin/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def test_a_refund_is_requested_approved_and_traced_by_four_roles(
    daraja, products, api_client, people, sign_in, settings
):
    settings.REFUND_APPROVAL_THRESHOLD = 1  # every refund needs a second person
    response = api_client.post_json("/api/v1/orders", order_body(product_id=products[0].pk))
    payment_id = response.json()["payment"]["id"]
    wait_for(lambda: api_client.get(f"/api/v1/payments/{payment_id}/status").json()["status"] == "completed")
    payment_page = f"{daraja.url}/admin/payments/payment/{payment_id}/change/"

    # The Manager requests the refund; it waits for someone else's approval.
    manager = sign_in("manager", daraja.url)
    manager.goto(payment_page)
    manager.locator("a:has-text('Refund')").last.click()
    manager.fill("input[name=reason]", "Customer returned the kikoy")
    manager.get_by_role("button", name="Request refund").click()
    manager.wait_for_url(f"{daraja.url}/admin/payments/refund/*/change/")
    refund = Refund.objects.get(payment_id=payment_id)
    assert refund.status == RefundStatus.REQUESTED
    expect(manager.get_by_role("link", name="Approve")).to_have_count(0)  # never one's own request

    # Meanwhile the Viewer sees the payment but no action, and a direct POST to an action URL is refused.
    viewer = sign_in("viewer", daraja.url)
    viewer.goto(payment_page)
    expect(viewer.locator("body")).to_contain_text(f"{payment_id}")
    for name in ("Refund", "Ask M-Pesa now", "Send a new prompt"):
        expect(viewer.get_by_role("link", name=name)).to_have_count(0)
    viewer.goto(f"{daraja.url}/admin/payments/refund/{refund.pk}/change/")
    expect(viewer.get_by_role("link", name="Approve")).to_have_count(0)
    token = next(c["value"] for c in viewer.context.cookies() if c["name"] == "csrftoken")
    forged = viewer.request.post(
        f"{daraja.url}/admin/payments/refund/{refund.pk}/approve/",
        form={"_form_submitted": "on", "csrfmiddlewaretoken": token},
        headers={"HX-Request": "true", "X-CSRFToken": token, "Referer": f"{daraja.url}/admin/"},
    )
    assert forged.status in (302, 403), forged.status
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.REQUESTED
    assert not AuditEntry.objects.filter(actor=people["viewer"], action="refund_approved").exists()

    # A second Manager approves it; it is sent to M-Pesa.
    approver = sign_in("manager2", daraja.url)
    approver.goto(f"{daraja.url}/admin/payments/refund/{refund.pk}/change/")
    approver.get_by_role("link", name="Approve").click()
    approver.get_by_role("button", name="Approve").click()
    expect(approver.locator("body")).to_contain_text("approved")
    wait_for(lambda: Refund.objects.get(pk=refund.pk).status == RefundStatus.SUCCEEDED)

    # The Auditor sees both steps, who took them and why, on the refund's timeline and in the trail.
    auditor = sign_in("auditor", daraja.url)
    auditor.goto(f"{daraja.url}/admin/payments/refund/{refund.pk}/change/")
    timeline = auditor.locator("#audit-timeline")
    expect(timeline).to_contain_text("Requested a refund")
    expect(timeline).to_contain_text("Approved a refund")
    expect(timeline).to_contain_text("manager2")
    expect(timeline).to_contain_text("Customer returned the kikoy")
    expect(auditor.get_by_role("link", name="Approve")).to_have_count(0)
    auditor.goto(f"{daraja.url}/admin/audit/auditentry/?actor__id__exact={people['manager2'].pk}")
    expect(auditor.locator("#result_list")).to_contain_text("Approved a refund")
