"""The admin: message list (masked), filters and search, permission-gated resend, template preview, inlines."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from notifications.models import MessageTemplate, Notification, NotificationAttempt, NotificationStatus
from tests.conftest import SUCCESS_PHONE

NS = NotificationStatus
MASKED = "2547*****149"


@pytest.fixture
def paid(initiated, callback):
    callback(amount=10.0, receipt="NLJ7RT61SV")
    initiated.refresh_from_db()
    return initiated


def test_list_masks_recipients_and_filters(client, admin_client, django_user_model, paid):
    url = reverse("admin:notifications_notification_changelist")
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(clerk)

    response = client.get(url)
    assert response.status_code == 200
    assert MASKED in response.content.decode()
    assert SUCCESS_PHONE not in response.content.decode()
    assert "a****@example.com" in response.content.decode()
    # In full only for those who may see customers' numbers (orders.view_full_phone; superusers hold it).
    assert SUCCESS_PHONE in admin_client.get(url).content.decode()

    for query in ("channel__exact=sms", "status__exact=sent", "event__exact=payment_completed"):
        assert client.get(f"{url}?{query}").status_code == 200


@pytest.mark.parametrize("term", ["order", SUCCESS_PHONE, "NLJ7RT61SV"])
def test_search_by_order_reference_phone_or_receipt(admin_client, paid, term):
    term = paid.order.reference if term == "order" else term
    response = admin_client.get(reverse("admin:notifications_notification_changelist"), {"q": term})

    assert response.status_code == 200
    assert response.context["cl"].result_count >= 2


def test_resend_needs_the_permission(client, django_user_model, paid):
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(clerk)
    notification = Notification.objects.filter(channel="sms", event="payment_completed").get()

    response = client.post(
        reverse("admin:notifications_notification_resend", args=[notification.pk]),
        {"_form_submitted": "True"},
    )

    assert response.status_code == 403
    assert Notification.objects.get(pk=notification.pk).resend_count == 0


def test_resend_action_sends_again_and_records_who(
    admin_client, admin_user, paid, django_capture_on_commit_callbacks
):
    notification = Notification.objects.filter(channel="sms", event="payment_completed").get()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:notifications_notification_resend", args=[notification.pk]),
            {"_form_submitted": "True"},
        )

    assert response["HX-Redirect"] == reverse(
        "admin:notifications_notification_change", args=[notification.pk]
    )
    notification.refresh_from_db()
    assert notification.status == NS.SENT and notification.resent_by == admin_user
    assert NotificationAttempt.objects.filter(notification=notification, outcome="sent").count() == 2


def test_bulk_resend(admin_client, paid, django_capture_on_commit_callbacks):
    ids = list(Notification.objects.filter(event="payment_completed").values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:notifications_notification_changelist"),
            {"action": "resend_selected", "_selected_action": ids},
        )

    assert response.status_code == 302
    assert set(Notification.objects.filter(pk__in=ids).values_list("resend_count", flat=True)) == {1}


def test_notification_page_shows_the_attempts(admin_client, paid):
    notification = Notification.objects.filter(channel="sms", event="payment_completed").get()

    response = admin_client.get(reverse("admin:notifications_notification_change", args=[notification.pk]))

    assert response.status_code == 200
    assert "Accepted by the provider" in response.content.decode()


def test_payment_and_order_pages_list_their_messages(admin_client, paid):
    payment_page = admin_client.get(reverse("admin:payments_payment_change", args=[paid.pk])).content.decode()
    order_page = admin_client.get(reverse("admin:orders_order_change", args=[paid.order_id])).content.decode()

    for page in (payment_page, order_page):
        assert "Messages sent" in page or "messages sent" in page
        assert MASKED in page
        assert "Payment completed" in page


def test_template_page_previews_against_a_real_payment_with_sms_size(admin_client, paid):
    template = MessageTemplate.objects.get(event="payment_completed", channel="sms", language="en")

    response = admin_client.get(
        reverse("admin:notifications_messagetemplate_change", args=[template.pk]),
        {"preview_payment": paid.pk},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert f"against payment #{paid.pk}" in page
    assert f"received for order {paid.order.reference}. M-Pesa receipt NLJ7RT61SV" in page
    assert "1 SMS (GSM-7)" in page


def test_email_template_preview_without_payments_uses_sample_data(admin_client, db):
    template = MessageTemplate.objects.get(event="refund_failed", channel="email", language="en")

    response = admin_client.get(reverse("admin:notifications_messagetemplate_change", args=[template.pk]))

    assert response.status_code == 200
    assert "sample data" in response.content.decode()
    assert "srcdoc=" in response.content.decode()


def test_rules_and_templates_lists(admin_client, db):
    assert admin_client.get(reverse("admin:notifications_notificationrule_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:notifications_messagetemplate_changelist")).status_code == 200
