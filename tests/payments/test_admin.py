import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from backoffice import roles
from notifications.models import Notification
from orders.models import OrderStatus
from payments.callback_urls import callback_token
from payments.models import CallbackInbox, EventKind, EventSource, InboxStatus, PaymentEvent, PaymentStatus
from tests.admin_support import post_action
from tests.conftest import stk_callback


@pytest.fixture
def paid(fake_daraja, place_order, client):
    _order, payment = place_order()
    path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
    client.post(path, json.dumps(stk_callback(payment.checkout_request_id)), content_type="application/json")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    return payment


@pytest.fixture
def operator_client(client, django_user_model):
    """An Operator (the role that sees the most without the permission to see full phone numbers)."""
    user = django_user_model.objects.create_user("operator", is_staff=True)
    user.groups.add(Group.objects.get(name=roles.OPERATOR))
    client.force_login(user)
    return client


LISTS = (
    "payments_payment",
    "payments_paymentevent",
    "payments_callbackinbox",
    "orders_order",
    "orders_customer",
    "orders_product",
    "notifications_notification",
    "backoffice_apitoken",
)


def detail_pages(paid) -> list[str]:
    return [
        reverse("admin:payments_payment_change", args=[paid.pk]),
        reverse("admin:orders_order_change", args=[paid.order_id]),
        reverse("admin:orders_customer_change", args=[paid.order.customer_id]),
        reverse("admin:payments_callbackinbox_change", args=[CallbackInbox.objects.get().pk]),
        *(reverse("admin:payments_paymentevent_change", args=[event.pk]) for event in paid.events.all()),
        *(
            reverse("admin:notifications_notification_change", args=[pk])
            for pk in Notification.objects.values_list("pk", flat=True)
        ),
    ]


def test_lists_and_pages_show_phone_numbers_masked_without_the_full_phone_permission(operator_client, paid):
    for name in LISTS:
        response = operator_client.get(reverse(f"admin:{name}_changelist"))
        if name == "backoffice_apitoken":
            assert response.status_code == 403  # not an Operator's business
            continue
        assert response.status_code == 200, name
        assert b"254708374149" not in response.content, name
    assert b"2547*****149" in operator_client.get(reverse("admin:payments_payment_changelist")).content
    for url in detail_pages(paid):
        response = operator_client.get(url)
        assert response.status_code == 200, url
        assert b"254708374149" not in response.content, url  # the callback body and event data too
    payment_page = operator_client.get(reverse("admin:payments_payment_change", args=[paid.pk])).content
    assert b"2547*****149" in payment_page


def test_superusers_see_full_phone_numbers(admin_client, paid):
    # orders.view_full_phone, which superusers hold like every permission (Managers and Auditors too).
    for name in LISTS:
        response = admin_client.get(reverse(f"admin:{name}_changelist"))
        assert response.status_code == 200, name
    assert b"254708374149" in admin_client.get(reverse("admin:payments_payment_changelist")).content
    for url in detail_pages(paid):
        assert admin_client.get(url).status_code == 200, url
    payment_page = admin_client.get(reverse("admin:payments_payment_change", args=[paid.pk])).content.decode()
    assert "NLJ7RT61SV" in payment_page
    assert "Ask M-Pesa now" in payment_page
    assert "254708374149" in payment_page


@pytest.mark.parametrize("who", ["superuser", "operator"])
def test_payments_can_be_found_by_receipt_and_full_phone(who, request, paid):
    browser = request.getfixturevalue("admin_client" if who == "superuser" else "operator_client")
    for term in ("NLJ7RT61SV", "254708374149", paid.order.reference):
        response = browser.get(reverse("admin:payments_payment_changelist"), {"q": term})
        assert response.status_code == 200
        assert response.context["cl"].result_count == 1, term


def test_admin_requires_staff_login(client, paid, django_user_model):
    client.force_login(django_user_model.objects.create_user("customer", password="pw-123456789"))

    response = client.get(reverse("admin:payments_payment_change", args=[paid.pk]))

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_ask_mpesa_now_applies_the_stk_query_answer(admin_client, admin_user, fake_daraja, place_order):
    _order, payment = place_order()
    fake_daraja.answer_query("0")

    response, shown = post_action(
        admin_client, reverse("admin:payments_payment_query_now", args=[payment.pk])
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("admin:payments_payment_change", args=[payment.pk])
    assert f"Payment #{payment.pk} is Completed." in shown
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.receipt_pending  # STK Query carries no receipt; the late callback fills it in
    event = payment.events.get(kind=EventKind.RESULT_APPLIED)
    assert (event.source, event.actor) == (EventSource.QUERY, admin_user)
    assert payment.order.status == OrderStatus.CONFIRMED


def test_ask_mpesa_now_while_the_customer_has_not_answered_keeps_the_payment_open(
    admin_client, fake_daraja, place_order
):
    _order, payment = place_order()

    response, _shown = post_action(
        admin_client, reverse("admin:payments_payment_query_now", args=[payment.pk])
    )

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INITIATED
    assert payment.events.last().kind == EventKind.QUERY_PENDING


def test_cash_collected_completes_a_cash_on_delivery_payment(
    admin_client, admin_user, fake_daraja, place_order
):
    _order, payment = place_order(method="cod", phone="")

    response, shown = post_action(
        admin_client, reverse("admin:payments_payment_mark_collected", args=[payment.pk])
    )

    assert response.status_code == 200
    assert "Cash on delivery recorded as collected." in shown
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED
    assert payment.events.last().actor == admin_user


def test_cash_collected_is_neither_offered_nor_accepted_on_an_mpesa_payment(
    admin_client, fake_daraja, place_order
):
    _order, payment = place_order()
    action_url = reverse("admin:payments_payment_mark_collected", args=[payment.pk])

    page = admin_client.get(reverse("admin:payments_payment_change", args=[payment.pk]))
    assert action_url not in page.content.decode()
    assert admin_client.get(action_url).status_code == 403
    assert post_action(admin_client, action_url)[0].status_code == 403
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.INITIATED


def test_payment_page_offers_no_save_button(admin_client, fake_daraja, place_order):
    _order, payment = place_order()

    page = admin_client.get(reverse("admin:payments_payment_change", args=[payment.pk])).content.decode()

    assert 'name="_continue"' not in page
    assert 'name="_save"' not in page


def test_quarantined_callback_can_be_processed_again_by_staff(
    admin_client, client, fake_daraja, place_order, settings
):
    _order, payment = place_order()
    settings.MPESA_CALLBACK_ALLOWED_IPS = ["196.201.214.200"]
    path = reverse("payments:stk-callback", kwargs={"token": callback_token()})
    body = json.dumps(stk_callback(payment.checkout_request_id))
    assert (
        client.post(path, body, content_type="application/json", REMOTE_ADDR="198.51.100.7").status_code
        == 403
    )
    inbox = CallbackInbox.objects.get()

    post_action(admin_client, reverse("admin:payments_callbackinbox_reprocess", args=[inbox.pk]))

    inbox.refresh_from_db()
    assert inbox.status == InboxStatus.PROCESSED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.COMPLETED


def test_history_cannot_be_edited_or_deleted_in_the_admin(admin_client, paid):
    event = paid.events.last()

    response = admin_client.post(
        reverse("admin:payments_paymentevent_delete", args=[event.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert PaymentEvent.objects.filter(pk=event.pk).exists()


def test_identifiers_are_found_exactly_however_they_are_written(admin_client, paid, place_order, fake_daraja):
    place_order(phone="0722000000")
    for term in (" nlj7rt61sv ", "0708 374 149", "+254708374149", paid.order.reference.lower()):
        response = admin_client.get(reverse("admin:payments_payment_changelist"), {"q": term})
        assert [p.pk for p in response.context["cl"].result_list] == [paid.pk], term
    # Anything else is still searched the partial way.
    response = admin_client.get(reverse("admin:payments_payment_changelist"), {"q": "74149"})
    assert paid.pk in [p.pk for p in response.context["cl"].result_list]
