"""Every state a payment can stop in has a way out: review, receipt pending, cash not collected, unmatched
callbacks and inbox rows that exhausted their attempts. Each exit is a staff action with a permission the
service checks itself, a note where a person decides, and a dialog in the admin that acts only on POST."""

import datetime as dt
import json

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.urls import reverse

from orders.models import OrderStatus
from orders.services import order_cancel, order_cancel_if_unpaid
from payments import services
from payments.callback_urls import callback_token
from payments.daraja.results import parse_stk_callback
from payments.exceptions import (
    IllegalTransition,
    PaymentInvalid,
    PaymentPermissionDenied,
    ReceiptInUse,
)
from payments.models import (
    CallbackInbox,
    EventKind,
    InboxStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ReviewReason,
)
from payments.selectors import callback_candidates, inbox_needing_attention
from tests.admin_support import dialog_post, post_action
from tests.conftest import stk_callback
from tests.payments.refunds_support import pay


def clerk(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


def post_secret_callback(client, body: dict):
    path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def reviewer(django_user_model):
    return clerk(django_user_model, "reviewer", "review_payment", "view_payment")


@pytest.fixture
def under_review(fake_daraja, place_order):
    """Paid KES 3 for a KES 10 order: the success went to review with its receipt kept."""
    _order, payment = place_order()
    body = stk_callback(payment.checkout_request_id, amount=3.0, receipt="SGR7REVIEW")
    payment = services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id, result=parse_stk_callback(body), source="callback"
    )
    assert (payment.status, payment.review_reason) == (
        PaymentStatus.NEEDS_REVIEW,
        ReviewReason.AMOUNT_MISMATCH,
    )
    return payment


# --- payments under review -------------------------------------------------------------------------
def test_review_resolved_as_paid_completes_the_payment_and_confirms_the_order(under_review, reviewer):
    payment = services.payment_review_resolve(
        payment_id=under_review.pk, actor=reviewer, outcome="paid", note="Statement line 14: KES 10 arrived"
    )

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.mpesa_receipt_number == "SGR7REVIEW"
    assert payment.order.status == OrderStatus.CONFIRMED
    event = payment.events.get(kind=EventKind.REVIEW_RESOLVED)
    assert event.actor == reviewer and "Statement line 14" in event.message
    assert event.data["review_reason"] == ReviewReason.AMOUNT_MISMATCH


def test_review_resolved_as_not_paid_fails_the_attempt_and_the_order_stays_payable(under_review, reviewer):
    payment = services.payment_review_resolve(
        payment_id=under_review.pk, actor=reviewer, outcome="not_paid", note="Nothing on the statement"
    )

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.order.status == OrderStatus.PENDING


def test_resolving_a_review_needs_a_note_a_permission_and_a_review(under_review, reviewer, django_user_model):
    with pytest.raises(PaymentInvalid):
        services.payment_review_resolve(payment_id=under_review.pk, actor=reviewer, outcome="paid", note="  ")
    viewer = clerk(django_user_model, "viewer", "view_payment")
    with pytest.raises(PaymentPermissionDenied):
        services.payment_review_resolve(payment_id=under_review.pk, actor=viewer, outcome="paid", note="x")
    with pytest.raises(PaymentPermissionDenied):
        services.payment_review_resolve(payment_id=under_review.pk, actor=None, outcome="paid", note="x")
    services.payment_review_resolve(payment_id=under_review.pk, actor=reviewer, outcome="paid", note="ok")
    with pytest.raises(IllegalTransition):
        services.payment_review_resolve(payment_id=under_review.pk, actor=reviewer, outcome="paid", note="ok")


def test_a_push_whose_outcome_is_unknown_is_resolved_as_paid_with_the_statement_receipt(
    fake_daraja, place_order, reviewer
):
    fake_daraja.push_replies.append(requests.ReadTimeout("read timed out"))
    _order, payment = place_order()
    assert payment.review_reason == ReviewReason.PUSH_OUTCOME_UNKNOWN and not payment.mpesa_receipt_number

    with pytest.raises(PaymentInvalid, match="receipt"):
        services.payment_review_resolve(payment_id=payment.pk, actor=reviewer, outcome="paid", note="paid")
    payment = services.payment_review_resolve(
        payment_id=payment.pk, actor=reviewer, outcome="paid", note="On the statement", receipt=" sgr7stmt01 "
    )

    assert (payment.status, payment.mpesa_receipt_number) == (PaymentStatus.COMPLETED, "SGR7STMT01")


def test_a_receipt_that_belongs_to_another_payment_cannot_resolve_a_review(
    fake_daraja, place_order, reviewer
):
    _order, other = place_order()
    pay(other, receipt="SGR7TAKEN1")
    fake_daraja.push_replies.append(requests.ReadTimeout("read timed out"))
    _order, payment = place_order()

    with pytest.raises(ReceiptInUse):
        services.payment_review_resolve(
            payment_id=payment.pk, actor=reviewer, outcome="paid", note="x", receipt="SGR7TAKEN1"
        )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.NEEDS_REVIEW and not payment.mpesa_receipt_number


def test_the_review_dialog_resolves_on_post_and_explains_a_refusal_in_the_form(
    under_review, client, reviewer
):
    client.force_login(reviewer)
    url = reverse("admin:payments_payment_resolve_review", args=[under_review.pk])

    assert client.get(url).status_code == 200
    under_review.refresh_from_db()
    assert under_review.status == PaymentStatus.NEEDS_REVIEW

    refused = dialog_post(client, url, outcome="paid", note="ok", receipt="SGR7OTHER9")
    assert "M-Pesa reported receipt SGR7REVIEW" in refused.content.decode()
    response, notes = post_action(client, url, outcome="paid", note="Statement line 3")
    assert response["HX-Redirect"] and any("resolved: completed" in n for n in notes)
    under_review.refresh_from_db()
    assert under_review.status == PaymentStatus.COMPLETED


# --- receipt pending ----------------------------------------------------------------------------------
@pytest.fixture
def receipt_pending(fake_daraja, place_order):
    _order, payment = place_order()
    fake_daraja.answer_query("0")
    payment = services.payment_query_status(payment_id=payment.pk)
    assert (payment.status, payment.receipt_pending) == (PaymentStatus.COMPLETED, True)
    return payment


def test_staff_enter_the_receipt_of_a_payment_completed_by_query(receipt_pending, django_user_model):
    finance = clerk(django_user_model, "finance", "enter_receipt")

    payment = services.payment_receipt_enter(
        payment_id=receipt_pending.pk, actor=finance, receipt="sgr7 late 01", note="Statement 2026-12-01"
    )

    payment.refresh_from_db()
    assert (payment.mpesa_receipt_number, payment.receipt_pending) == ("SGR7LATE01", False)
    event = payment.events.get(kind=EventKind.RECEIPT_ENTERED)
    assert event.actor == finance and "Statement 2026-12-01" in event.message
    with pytest.raises(IllegalTransition):
        services.payment_receipt_enter(payment_id=payment.pk, actor=finance, receipt="SGR7LATE02")


def test_an_entered_receipt_is_unique_well_formed_and_needs_the_permission(
    receipt_pending, fake_daraja, place_order, django_user_model
):
    _order, other = place_order()
    pay(other, receipt="SGR7TAKEN1")
    finance = clerk(django_user_model, "finance", "enter_receipt")

    with pytest.raises(ReceiptInUse):
        services.payment_receipt_enter(payment_id=receipt_pending.pk, actor=finance, receipt="SGR7TAKEN1")
    with pytest.raises(PaymentInvalid):
        services.payment_receipt_enter(payment_id=receipt_pending.pk, actor=finance, receipt="not a receipt!")
    with pytest.raises(PaymentPermissionDenied):
        services.payment_receipt_enter(
            payment_id=receipt_pending.pk,
            actor=clerk(django_user_model, "v", "view_payment"),
            receipt="SGR7X1234",
        )
    receipt_pending.refresh_from_db()
    assert receipt_pending.receipt_pending and not receipt_pending.mpesa_receipt_number


def test_the_payment_list_filters_completed_payments_still_waiting_for_a_receipt(
    receipt_pending, fake_daraja, place_order, admin_client
):
    _order, paid = place_order()
    pay(paid, receipt="SGR7WITHRC")

    page = admin_client.get(reverse("admin:payments_payment_changelist"), {"receipt": "pending"})

    listed = [row.pk for row in page.context["cl"].result_list]
    assert listed == [receipt_pending.pk]


# --- cash on delivery not collected ---------------------------------------------------------------
@pytest.fixture
def courier(django_user_model):
    return clerk(django_user_model, "courier-desk", "collect_payment", "cancel_order")


def test_cash_not_collected_fails_the_payment_and_the_order_closes_when_its_window_does(
    place_order, courier, settings
):
    order, payment = place_order(method=PaymentMethod.COD)
    assert order.status == OrderStatus.CONFIRMED

    payment = services.payment_mark_not_collected(
        payment_id=payment.pk, actor=courier, reason="Refused at door"
    )

    payment.refresh_from_db()
    order.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED and "Refused at door" in payment.result_desc
    assert payment.events.get(kind=EventKind.NOT_COLLECTED).actor == courier
    assert order.status == OrderStatus.PENDING and order.payment_due_at is not None
    later = order.payment_due_at + dt.timedelta(minutes=1)
    assert order_cancel_if_unpaid(order_id=order.pk, now=later)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_cash_not_collected_needs_a_reason_and_the_permission(place_order, courier, django_user_model):
    _order, payment = place_order(method=PaymentMethod.COD)

    with pytest.raises(PaymentInvalid):
        services.payment_mark_not_collected(payment_id=payment.pk, actor=courier, reason=" ")
    with pytest.raises(PaymentPermissionDenied):
        services.payment_mark_not_collected(
            payment_id=payment.pk, actor=clerk(django_user_model, "v", "view_payment"), reason="x"
        )
    with pytest.raises(PaymentPermissionDenied):
        services.payment_mark_collected(
            payment_id=payment.pk, actor=clerk(django_user_model, "w", "view_payment")
        )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING_DELIVERY


def test_staff_cancel_an_order_whose_cash_was_not_collected_but_never_a_paid_one(
    place_order, fake_daraja, courier
):
    order, payment = place_order(method=PaymentMethod.COD)
    with pytest.raises(Exception, match="pending delivery"):
        order_cancel(order_id=order.pk, actor=courier, reason="Customer changed their mind")
    services.payment_mark_not_collected(payment_id=payment.pk, actor=courier, reason="Nobody home")

    order = order_cancel(order_id=order.pk, actor=courier, reason="Customer changed their mind")

    assert order.status == OrderStatus.CANCELLED and "courier-desk" in order.cancel_reason
    paid_order, attempt = place_order()
    pay(attempt)
    with pytest.raises(Exception, match="completed"):
        order_cancel(order_id=paid_order.pk, actor=courier, reason="x")


def test_the_not_collected_dialog_asks_for_the_reason(place_order, client, courier):
    _order, payment = place_order(method=PaymentMethod.COD)
    client.force_login(courier)
    url = reverse("admin:payments_payment_mark_not_collected", args=[payment.pk])

    refused = dialog_post(client, url, reason="")
    assert refused.status_code == 200 and "HX-Redirect" not in refused
    response, notes = post_action(client, url, reason="Refused the parcel")

    assert response["HX-Redirect"] and notes == ["Cash on delivery recorded as not collected."]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED


# --- unmatched callbacks and inbox rows that need a person ------------------------------------------
@pytest.fixture
def timed_out_push(fake_daraja, place_order):
    """The push timed out on our side, but reached the phone: its CheckoutRequestID never reached us."""
    fake_daraja.push_replies.append(requests.ReadTimeout("read timed out"))
    _order, payment = place_order()
    assert payment.status == PaymentStatus.NEEDS_REVIEW and payment.checkout_request_id is None
    return payment


def test_an_unmatched_success_is_shown_with_its_candidate_and_attached_by_staff(
    timed_out_push, fake_daraja, place_order, client, django_user_model
):
    _other_order, elsewhere = place_order(phone="0722000000")  # another phone: not a candidate
    post_secret_callback(client, stk_callback("ws_CO_ORPHAN00000000001", receipt="SGR7ORPHAN"))
    inbox = CallbackInbox.objects.get(status=InboxStatus.UNMATCHED)

    assert list(callback_candidates(inbox)) == [timed_out_push]
    assert inbox in inbox_needing_attention()

    finance = clerk(django_user_model, "finance", "attach_callback", "view_callbackinbox")
    payment = services.callback_attach(
        inbox_id=inbox.pk, payment_id=timed_out_push.pk, actor=finance, note="Same phone"
    )

    assert payment.status == PaymentStatus.COMPLETED
    assert (payment.checkout_request_id, payment.mpesa_receipt_number) == (
        "ws_CO_ORPHAN00000000001",
        "SGR7ORPHAN",
    )
    assert payment.order.status == OrderStatus.CONFIRMED
    assert payment.events.get(kind=EventKind.CALLBACK_ATTACHED).actor == finance
    inbox.refresh_from_db()
    assert inbox.status == InboxStatus.PROCESSED and inbox not in inbox_needing_attention()
    assert elsewhere.pk not in [p.pk for p in callback_candidates(inbox)]


def test_attaching_needs_the_permission_and_never_moves_a_callback_onto_a_paid_payment(
    timed_out_push, fake_daraja, place_order, client, django_user_model
):
    post_secret_callback(client, stk_callback("ws_CO_ORPHAN00000000002", receipt="SGR7ORPHN2"))
    inbox = CallbackInbox.objects.get(status=InboxStatus.UNMATCHED)
    _order, paid = place_order()
    pay(paid, receipt="SGR7PAIDAL")
    finance = clerk(django_user_model, "finance", "attach_callback")

    with pytest.raises(PaymentPermissionDenied):
        services.callback_attach(
            inbox_id=inbox.pk,
            payment_id=timed_out_push.pk,
            actor=clerk(django_user_model, "v", "view_payment"),
        )
    with pytest.raises(IllegalTransition):
        services.callback_attach(inbox_id=inbox.pk, payment_id=paid.pk, actor=finance)

    inbox.refresh_from_db()
    assert inbox.status == InboxStatus.UNMATCHED
    assert Payment.objects.get(pk=paid.pk).checkout_request_id != "ws_CO_ORPHAN00000000002"


def test_the_attach_dialog_offers_the_candidates_and_attaches_on_post(timed_out_push, client, admin_client):
    post_secret_callback(client, stk_callback("ws_CO_ORPHAN00000000003", receipt="SGR7ORPHN3"))
    inbox = CallbackInbox.objects.get(status=InboxStatus.UNMATCHED)
    url = reverse("admin:payments_callbackinbox_attach", args=[inbox.pk])

    dialog = admin_client.get(url).content.decode()
    assert f"#{timed_out_push.pk} · order {timed_out_push.order.reference}" in dialog
    response, _notes = post_action(admin_client, url, candidate=str(timed_out_push.pk))

    assert response["HX-Redirect"] == reverse("admin:payments_payment_change", args=[timed_out_push.pk])
    timed_out_push.refresh_from_db()
    assert timed_out_push.status == PaymentStatus.COMPLETED


def test_an_inbox_row_that_exhausted_its_attempts_needs_attention_and_shows_in_the_admin(admin_client, db):
    tired = CallbackInbox.objects.create(
        kind="stk_callback", status=InboxStatus.FAILED, body="{}", attempts=django_settings.INBOX_MAX_ATTEMPTS
    )
    fresh = CallbackInbox.objects.create(
        kind="stk_callback", status=InboxStatus.FAILED, body="{}", attempts=1
    )

    assert list(inbox_needing_attention()) == [tired]
    page = admin_client.get(reverse("admin:payments_callbackinbox_changelist"), {"attention": "needed"})
    assert [row.pk for row in page.context["cl"].result_list] == [tired.pk]
    assert fresh.pk not in [row.pk for row in page.context["cl"].result_list]


# --- services check permissions themselves ----------------------------------------------------------
def test_asking_mpesa_now_is_for_staff_with_the_permission_or_the_storefront_that_owns_the_order(
    fake_daraja, place_order, django_user_model, api_user
):
    _order, payment = place_order()
    stranger = django_user_model.objects.create_user("another-shop")

    with pytest.raises(PaymentPermissionDenied):
        services.payment_query_status(payment_id=payment.pk, actor=stranger)
    with pytest.raises(PaymentPermissionDenied):
        services.payment_query_status(
            payment_id=payment.pk, actor=clerk(django_user_model, "v", "view_payment")
        )
    assert not fake_daraja.queries

    services.payment_query_status(payment_id=payment.pk, actor=api_user)
    services.payment_query_status(payment_id=payment.pk, actor=clerk(django_user_model, "q", "query_payment"))
    assert len(fake_daraja.queries) == 2


def test_an_attached_callback_with_another_amount_moves_a_timed_out_push_to_an_amount_review(
    timed_out_push, client, django_user_model
):
    post_secret_callback(client, stk_callback("ws_CO_ORPHAN00000000004", amount=9.0, receipt="SGR7ORPHN4"))
    inbox = CallbackInbox.objects.get(status=InboxStatus.UNMATCHED)
    finance = clerk(django_user_model, "finance", "attach_callback")

    payment = services.callback_attach(inbox_id=inbox.pk, payment_id=timed_out_push.pk, actor=finance)

    assert (payment.status, payment.review_reason) == (
        PaymentStatus.NEEDS_REVIEW,
        ReviewReason.AMOUNT_MISMATCH,
    )
    assert (payment.paid_amount, payment.mpesa_receipt_number) == (9, "SGR7ORPHN4")
    inbox.refresh_from_db()
    assert (inbox.status, inbox.error) == (InboxStatus.PROCESSED, "")
