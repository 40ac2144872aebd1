"""No state change on GET: every admin action URL of every registered model admin, walked, not listed.

A world with objects in every state an action applies to is built through the real services; then every
action URL (list, detail and row actions of every model admin, for every object of its model), and every
bulk action through the changelist, is requested with GET, also with crafted parameters that a forged
link would carry. Not one row of any table may change, and nothing may be sent to Daraja.
"""

import io
import json

import pytest
import requests
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from notifications.models import Notification
from payments import refunds, services
from payments.callback_urls import callback_token
from payments.models import (
    CallbackInbox,
    InboxStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from statements.imports import statement_import
from statements.models import ImportSource, ItemKind, ItemStatus, ReconciliationItem
from tests.conftest import stk_callback
from tests.payments.refunds_support import FakeResultApis, pay
from tests.statements.statement_files import customer_payment, statement_csv

# What a forged link would add: everything the dialogs' forms ask for.
CRAFTED = {
    "_form_submitted": "on",
    "outcome": "paid",
    "receipt": "SGR7ABC123",
    "note": "crafted",
    "reason": "crafted",
    "amount": "10",
    "candidate": "1",
    "payment_id": "1",
    "transaction_id": "SGR7ABC124",
    "post": "yes",
}


@pytest.fixture
def world(fake_daraja, place_order, admin_user, client, settings, django_capture_on_commit_callbacks):
    """Objects in every state some admin action applies to."""
    settings.REFUND_APPROVAL_THRESHOLD = 1
    result_apis = FakeResultApis(fake_daraja.mock)
    hook = reverse("payments:stk-callback", kwargs={"token": callback_token()})

    def callback(body):
        client.post(hook, json.dumps(body), content_type="application/json")

    with django_capture_on_commit_callbacks(execute=True):
        _order, initiated = place_order()  # initiated, queryable
        _order, to_pay = place_order()
        paid = pay(to_pay)  # completed with a receipt: refundable
        _order, failed = place_order()
        callback(stk_callback(failed.checkout_request_id, result_code=1032))  # failed: retryable
        _order, reviewed = place_order()
        callback(stk_callback(reviewed.checkout_request_id, amount=3.0, receipt="SGR7REVIEW"))  # under review
        _order, by_query = place_order()
        fake_daraja.answer_query("0")
        services.payment_query_status(payment_id=by_query.pk)  # completed, receipt pending
        place_order(method=PaymentMethod.COD, phone="")  # pending delivery
        # Requested by someone else, so that the admin walking the URLs could approve it.
        requested = refunds.refund_request(
            payment_id=paid.pk, amount=None, reason="Damaged", actor=_second_approver()
        )
        _order, to_refund = place_order()
        unknown_payment = pay(to_refund, receipt="SGR7UNKNWN")
        result_apis.replies["/mpesa/reversal/v1/request"].append(requests.ReadTimeout("read timed out"))
        refunds.refund_request(payment_id=unknown_payment.pk, amount=None, reason="Lost", actor=admin_user)
        refunds.refund_approve(refund_id=Refund.objects.latest("pk").pk, actor=_second_approver())
        callback(stk_callback("ws_CO_NOBODY0000000001", receipt="SGR7ORPHAN"))  # unmatched success
        CallbackInbox.objects.create(kind="stk_callback", status=InboxStatus.FAILED, body="{}", attempts=1)
        _import_statement(paid)  # a statement line matched, one nobody recorded: an open exception
    assert ReconciliationItem.objects.filter(kind=ItemKind.UNRECORDED_LINE, status=ItemStatus.OPEN).exists()
    assert Payment.objects.filter(status=PaymentStatus.NEEDS_REVIEW).exists()
    assert Payment.objects.filter(receipt_pending=True).exists()
    assert Refund.objects.filter(status=RefundStatus.UNKNOWN).exists()
    assert Refund.objects.get(pk=requested.pk).status == RefundStatus.REQUESTED
    assert CallbackInbox.objects.filter(status=InboxStatus.UNMATCHED).exists()
    assert Notification.objects.exists()
    assert initiated.checkout_request_id
    return result_apis


def _import_statement(paid: Payment) -> None:
    at = timezone.localtime(paid.completed_at)
    lines = [
        customer_payment(paid.mpesa_receipt_number, paid.amount, at=at),
        customer_payment("SGR7PAYBL01", 750, at=at, other_party="254708374149 - MARY WANJIKU"),
    ]
    statement_import(
        fileobj=io.BytesIO(statement_csv(lines)),
        file_name="statement.csv",
        actor=None,
        source=ImportSource.COMMAND,
    )


def _second_approver():
    user, _ = get_user_model().objects.get_or_create(username="approver2", defaults={"is_staff": True})
    user.user_permissions.add(*Permission.objects.filter(codename__in=["approve_refund", "add_refund"]))
    return get_user_model().objects.get(pk=user.pk)


def snapshot() -> dict:
    """Every row of every table (sessions aside: logging in writes them)."""
    tables = {}
    for model in apps.get_models():
        if model._meta.label in ("sessions.Session",):
            continue
        fields = [f.attname for f in model._meta.concrete_fields]
        tables[model._meta.label] = sorted(map(repr, model.objects.values_list(*fields)))
    return tables


def action_urls() -> list[str]:
    """Every Unfold action URL of every registered model admin, for every object of its model."""
    urls = []
    for model, model_admin in admin.site._registry.items():
        if not hasattr(model_admin, "_get_base_actions_detail"):
            continue
        pks = list(model.objects.values_list("pk", flat=True)[:50])
        for action in model_admin._get_base_actions_list():
            urls.append(reverse(f"admin:{action.action_name}"))
        for action in [*model_admin._get_base_actions_detail(), *model_admin._get_base_actions_row()]:
            urls.extend(reverse(f"admin:{action.action_name}", args=[pk]) for pk in pks)
    return urls


def bulk_action_urls() -> list[tuple[str, dict]]:
    """Django's own bulk actions, which run from the changelist: the GET a forged link would make."""
    found = []
    for model, model_admin in admin.site._registry.items():
        try:
            changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        except NoReverseMatch:
            continue
        pks = [str(pk) for pk in model.objects.values_list("pk", flat=True)[:50]]
        for name in model_admin.get_actions(_request_for_actions()):
            found.append((changelist, {"action": name, "_selected_action": pks, "index": "0", "post": "yes"}))
    return found


def _request_for_actions():
    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.filter(is_superuser=True).first()
    return request


@pytest.mark.django_db
def test_no_admin_action_changes_anything_on_get(world, admin_client, fake_daraja):
    urls = action_urls()
    names = {url.rstrip("/").rsplit("/", 1)[-1] for url in urls}
    # The walk finds the actions by itself; these are only a floor, so a broken walk cannot pass.
    assert {
        "approve",
        "reject",
        "resend_reversal",
        "resolve",
        "check_status",
        "query_now",
        "mark_collected",
        "mark_not_collected",
        "resolve_review",
        "enter_receipt",
        "retry",
        "reprocess",
        "attach",
        "resend",
        "cancel",
        "request_refund",
        "import",
        "mark_expected",
        "attach_payment",
    } <= names, names
    before = snapshot()
    calls_before = len(fake_daraja.mock.calls)

    for url in urls:
        for params in ({}, CRAFTED):
            response = admin_client.get(url, params)
            assert response.status_code in (200, 403, 404), (url, response.status_code)
            assert snapshot() == before, f"GET {url} {params} changed the database"
    for url, params in bulk_action_urls():
        admin_client.get(url, params)
        assert snapshot() == before, f"GET {url} {params} ran a bulk action"

    assert len(fake_daraja.mock.calls) == calls_before  # nothing was sent anywhere


@pytest.mark.django_db
def test_a_crafted_link_never_approves_a_refund_and_a_post_needs_the_csrf_token(world, admin_user):
    refund = Refund.objects.get(status=RefundStatus.REQUESTED)
    url = reverse("admin:payments_refund_approve", args=[refund.pk])
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)  # not the requester: maker and checker differ

    page = browser.get(url, CRAFTED)
    assert page.status_code == 200
    assert 'method="post"' in page.content.decode() and "csrfmiddlewaretoken" in page.content.decode()
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.REQUESTED

    forged = browser.post(url, {"_form_submitted": "on"})  # another site's form: no CSRF token
    assert forged.status_code == 403
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.REQUESTED

    token = (
        page.cookies["csrftoken"].value if "csrftoken" in page.cookies else browser.cookies["csrftoken"].value
    )
    confirmed = browser.post(url, {"_form_submitted": "on", "csrfmiddlewaretoken": token})
    assert confirmed.status_code == 200 and confirmed["HX-Redirect"]
    assert Refund.objects.get(pk=refund.pk).status != RefundStatus.REQUESTED
