"""Refunds through the staff API (`/api/v1/payments/{id}/refunds`) and the admin (dialog, approve, reject)."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from backoffice.services import api_token_issue
from payments import refunds
from payments.models import PaymentStatus, Refund, RefundStatus
from tests.admin_support import dialog_post
from tests.conftest import ApiClient
from tests.payments import refunds_support as support
from tests.payments.refunds_support import REVERSAL, post_result, reversal_success

paid = support.paid
result_apis = support.result_apis
maker = support.maker
checker = support.checker


def token_for(user) -> ApiClient:
    _token, raw, _ = api_token_issue(username=user.username, scopes=["orders", "refunds"])
    return ApiClient(raw)


@pytest.fixture
def maker_api(maker):
    return token_for(maker)


def refunds_url(payment) -> str:
    return f"/api/v1/payments/{payment.pk}/refunds"


# --- API --------------------------------------------------------------------------------------------
def test_staff_refund_through_the_api(
    paid, maker_api, result_apis, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = maker_api.post_json(
            refunds_url(paid), {"reason": "Out of stock", "note": "Called the customer"}
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "approved"  # as committed; the submit task runs after the response
    assert body["method"] == "reversal"
    assert body["amount"] == 10.0
    assert body["requestedBy"] == "maker"
    assert len(result_apis.reversals) == 1

    post_result(client, reversal_success(result_apis.acks[REVERSAL][0], receipt="SKR1A2B3C4"))
    [listed] = maker_api.get(refunds_url(paid)).json()
    assert listed["status"] == "succeeded"
    assert listed["mpesaTransactionId"] == "SKR1A2B3C4"
    paid.refresh_from_db()
    assert paid.status == PaymentStatus.REFUNDED


def test_customer_tokens_cannot_see_or_make_refunds(paid, api_client, result_apis):
    posted = api_client.post_json(refunds_url(paid), {"reason": "I want my money"})
    listed = api_client.get(refunds_url(paid))

    assert posted.status_code == listed.status_code == 403
    assert posted.json()["error"]["code"] == "forbidden"
    assert not Refund.objects.exists()


def test_staff_without_the_refund_permission_is_refused(paid, staff_api_client, result_apis):
    response = staff_api_client.post_json(refunds_url(paid), {"reason": "x"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_no_token_no_refund(paid, client):
    assert client.post(refunds_url(paid), "{}", content_type="application/json").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"reason": "x", "amount": 11}, 400, "invalid_refund"),
        ({"reason": "x", "amount": 4}, 400, "refund_method_unavailable"),
        ({"reason": ""}, 400, "invalid_refund"),
        ({}, 400, "validation_error"),
    ],
)
def test_refused_requests_use_the_error_shape(paid, maker_api, result_apis, body, status, code):
    response = maker_api.post_json(refunds_url(paid), body)

    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_refund_of_an_unknown_or_unpaid_payment(place_order, fake_daraja, maker_api, result_apis):
    _order, unpaid = place_order()

    assert maker_api.post_json("/api/v1/payments/999999/refunds", {"reason": "x"}).status_code == 404
    response = maker_api.post_json(refunds_url(unpaid), {"reason": "x"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "refund_not_allowed"


def test_a_second_request_while_one_is_in_flight_is_a_conflict(paid, maker_api, result_apis, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 1
    first = maker_api.post_json(refunds_url(paid), {"reason": "x"})

    second = maker_api.post_json(refunds_url(paid), {"reason": "x"})

    assert first.json()["needsApproval"] is True
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "refund_in_progress"
    assert second.json()["error"]["refund_id"] == first.json()["id"]


# --- admin ------------------------------------------------------------------------------------------
def test_refund_dialog_on_the_payment_page(
    admin_client, paid, result_apis, django_capture_on_commit_callbacks
):
    url = reverse("admin:payments_payment_request_refund", args=[paid.pk])
    assert "Refund this payment" in admin_client.get(url).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = dialog_post(admin_client, url, reason="Damaged in transit")

    refund = Refund.objects.get()
    assert response["HX-Redirect"] == reverse("admin:payments_refund_change", args=[refund.pk])
    assert refund.status == RefundStatus.SUBMITTED
    assert len(result_apis.reversals) == 1


def test_refund_dialog_shows_service_refusals_on_the_form(admin_client, paid, result_apis):
    url = reverse("admin:payments_payment_request_refund", args=[paid.pk])

    response = dialog_post(admin_client, url, reason="Too much", amount="50")

    assert "At most KES 10" in response.content.decode()
    assert not Refund.objects.exists()


def test_approve_and_reject_actions_follow_maker_checker(
    client, paid, maker, checker, result_apis, settings, django_capture_on_commit_callbacks
):
    settings.REFUND_APPROVAL_THRESHOLD = 1
    for user in (maker, checker):
        user.user_permissions.add(*Permission.objects.filter(codename__in=["view_refund", "view_payment"]))
    client.force_login(checker)
    with django_capture_on_commit_callbacks(execute=True):
        dialog_post(
            client, reverse("admin:payments_payment_request_refund", args=[paid.pk]), reason="Cancelled"
        )
    refund = Refund.objects.get()
    approve = reverse("admin:payments_refund_approve", args=[refund.pk])

    dialog_post(client, approve)  # the requester cannot approve their own refund
    refund.refresh_from_db()
    assert refund.status == RefundStatus.REQUESTED
    client.force_login(maker)
    assert dialog_post(client, approve).status_code == 403  # no approve permission

    page = client.get(reverse("admin:payments_refund_change", args=[refund.pk]))
    assert page.status_code == 200
    reject = reverse("admin:payments_refund_reject", args=[refund.pk])
    dialog_post(client, reject, note="Not mine to reject")
    refund.refresh_from_db()
    assert refund.status == RefundStatus.REQUESTED
    client.force_login(checker)  # the requester may withdraw their own request
    assert dialog_post(client, reject, note="Customer kept it")["HX-Redirect"]
    refund.refresh_from_db()
    assert refund.status == RefundStatus.REJECTED
    assert result_apis.reversals == []


def test_refund_pages_show_the_reversal_receipt(
    admin_client, paid, maker, result_apis, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="Gone", actor=maker)
    post_result(client, reversal_success(result_apis.acks[REVERSAL][0], receipt="SKR1A2B3C4"))

    for url in (
        reverse("admin:payments_refund_changelist"),
        reverse("admin:payments_refund_change", args=[refund.pk]),
        reverse("admin:payments_payment_change", args=[paid.pk]),
        reverse("admin:payments_refundevent_changelist"),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "SKR1A2B3C4" in response.content.decode() or url.endswith("refundevent/"), url
