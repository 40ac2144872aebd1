"""Every staff action on money, customer messages, alerts and access leaves one audit record, written by
its service in the same transaction: who, the object, the before/after of what changed, and the reason.
A refused action, one that changes nothing, the system's own work and a change that rolls back leave none."""

import datetime as dt
import json
from decimal import Decimal
from io import StringIO

import pytest
import requests
import time_machine
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditAction, AuditEntry
from backoffice.exceptions import ApiTokenPermissionDenied
from backoffice.models import ApiToken
from backoffice.services import api_token_issue, api_token_revoke
from notifications import services as notification_services
from notifications.exceptions import NotificationInFlight
from notifications.models import Notification, NotificationStatus
from orders.exceptions import OrderError
from orders.models import Order, OrderStatus
from orders.services import order_cancel
from orders.signals import order_status_changed
from payments import inbox as inbox_service
from payments import refunds, services
from payments.daraja.results import parse_stk_callback
from payments.exceptions import (
    PaymentPermissionDenied,
    ReceiptInUse,
    RefundPermissionDenied,
    RetryTooSoon,
)
from payments.models import (
    CallbackInbox,
    EventSource,
    InboxStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    RefundStatus,
)
from reports.alerts.services import alert_acknowledge, alert_resolve
from reports.models import Alert, AlertRule, AlertStatus
from tests.admin_support import post_action
from tests.conftest import stk_callback
from tests.payments import refunds_support as support
from tests.payments.refunds_support import REVERSAL, STATUS, pay
from tests.payments.test_exits import post_secret_callback

paid = support.paid
result_apis = support.result_apis
maker = support.maker
checker = support.checker


def clerk(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


def the_record(action: str) -> AuditEntry:
    entries = list(AuditEntry.objects.filter(action=action))
    assert len(entries) == 1, entries
    return entries[0]


def about(entry: AuditEntry, obj) -> bool:
    return entry.content_type.model_class() is type(obj) and entry.object_id == str(obj.pk)


def none_of(action: str) -> bool:
    return not AuditEntry.objects.filter(action=action).exists()


def fail(payment: Payment, code: int = 1032) -> Payment:
    body = stk_callback(payment.checkout_request_id, result_code=code)
    return services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id,
        result=parse_stk_callback(body),
        source=EventSource.CALLBACK,
    )


# --- payments -----------------------------------------------------------------------------------------
def test_asking_mpesa_now_records_who_asked_and_what_the_answer_changed(
    fake_daraja, place_order, django_user_model
):
    _order, payment = place_order()
    desk = clerk(django_user_model, "desk", "query_payment")
    fake_daraja.answer_query("1032", "Request cancelled by user")

    services.payment_query_status(payment_id=payment.pk, actor=desk)

    entry = the_record(AuditAction.PAYMENT_QUERIED)
    assert entry.actor == desk and about(entry, payment)
    assert entry.changes["status"] == {"before": "initiated", "after": "failed"}
    assert entry.changes["result_code"] == {"before": "", "after": "1032"}
    assert entry.data["ResultCode"] == "1032"


def test_the_sweepers_question_is_no_audit_record_and_a_storefronts_is(fake_daraja, place_order, api_user):
    _order, payment = place_order()

    services.payment_query_status(payment_id=payment.pk)  # the sweeper: PaymentEvents say it all
    assert none_of(AuditAction.PAYMENT_QUERIED)

    services.payment_query_status(payment_id=payment.pk, actor=api_user)  # "being processed"
    entry = the_record(AuditAction.PAYMENT_QUERIED)
    assert entry.actor == api_user and about(entry, payment)
    assert entry.changes == {} and entry.data == {"pending": True}


def test_the_storefronts_question_through_the_api_carries_its_address(
    fake_daraja, place_order, api_client, api_user
):
    _order, payment = place_order()

    response = api_client.get(f"/api/v1/payments/mpesa/{payment.pk}/status", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 200
    entry = the_record(AuditAction.PAYMENT_QUERIED)
    assert (entry.actor, entry.ip) == (api_user, "203.0.113.9")


def test_an_unanswered_question_is_recorded_with_the_error(fake_daraja, place_order, django_user_model):
    _order, payment = place_order()
    fake_daraja.query_replies.append(requests.ConnectionError("connection refused"))
    desk = clerk(django_user_model, "desk", "query_payment")

    services.payment_query_status(payment_id=payment.pk, actor=desk)

    entry = the_record(AuditAction.PAYMENT_QUERIED)
    assert entry.changes == {"query_failing": {"before": False, "after": True}}
    assert entry.data["unanswered"]


def test_a_new_prompt_records_the_new_attempt_and_the_one_it_retries(
    fake_daraja, place_order, django_user_model
):
    _order, payment = place_order()
    failed = fail(payment)
    desk = clerk(django_user_model, "desk", "retry_payment")

    with pytest.raises(RetryTooSoon):  # M-Pesa's two-minute rule: refused, nothing recorded
        services.payment_retry(payment_id=failed.pk, source=EventSource.ADMIN, actor=desk)
    assert none_of(AuditAction.PAYMENT_RETRIED)
    with pytest.raises(PaymentPermissionDenied):
        services.payment_retry(
            payment_id=failed.pk, actor=django_user_model.objects.create_user("another-shop")
        )
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=3)):
        new = services.payment_retry(payment_id=failed.pk, source=EventSource.ADMIN, actor=desk)

    entry = the_record(AuditAction.PAYMENT_RETRIED)
    assert entry.actor == desk and about(entry, new)
    assert entry.changes["status"] == {"before": None, "after": PaymentStatus.PENDING}
    assert Decimal(entry.changes["amount"]["after"]) == Decimal("10")
    assert entry.data["retry_of"] == failed.pk
    assert entry.data["phone"] == new.masked_phone and "254708374149" not in json.dumps(entry.data)


def test_cash_collected_records_the_status_the_amount_and_the_note(place_order, django_user_model):
    _order, payment = place_order(method=PaymentMethod.COD)
    courier = clerk(django_user_model, "courier", "collect_payment")

    services.payment_mark_collected(payment_id=payment.pk, actor=courier, note="Paid at the door")

    entry = the_record(AuditAction.CASH_COLLECTED)
    assert entry.actor == courier and about(entry, payment)
    assert entry.changes["status"] == {"before": "pending_delivery", "after": "completed"}
    assert entry.changes["paid_amount"] == {"before": None, "after": "10.00"}
    assert entry.reason == "Paid at the door"


def test_cash_not_collected_records_the_reason_and_a_refusal_records_nothing(place_order, django_user_model):
    _order, payment = place_order(method=PaymentMethod.COD)
    courier = clerk(django_user_model, "courier", "collect_payment")
    viewer = clerk(django_user_model, "viewer", "view_payment")

    with pytest.raises(PaymentPermissionDenied):
        services.payment_mark_not_collected(payment_id=payment.pk, actor=viewer, reason="Refused")
    with pytest.raises(PaymentPermissionDenied):
        services.payment_mark_collected(payment_id=payment.pk, actor=viewer)
    assert not AuditEntry.objects.filter(actor=viewer).exists()

    services.payment_mark_not_collected(payment_id=payment.pk, actor=courier, reason="Refused at door")

    entry = the_record(AuditAction.CASH_NOT_COLLECTED)
    assert entry.actor == courier and about(entry, payment)
    assert entry.changes["status"] == {"before": "pending_delivery", "after": "failed"}
    assert entry.changes["result_desc"]["after"] == "Cash not collected: Refused at door"
    assert entry.reason == "Refused at door"


@pytest.fixture
def under_review(fake_daraja, place_order):
    _order, payment = place_order()
    body = stk_callback(payment.checkout_request_id, amount=3.0, receipt="SGR7REVIEW")
    return services.payment_apply_result(
        checkout_request_id=payment.checkout_request_id, result=parse_stk_callback(body), source="callback"
    )


def test_a_resolved_review_records_the_outcome_and_the_note(under_review, django_user_model):
    reviewer = clerk(django_user_model, "reviewer", "review_payment")

    services.payment_review_resolve(
        payment_id=under_review.pk, actor=reviewer, outcome="paid", note="Statement line 14: KES 10 arrived"
    )

    entry = the_record(AuditAction.REVIEW_RESOLVED)
    assert entry.actor == reviewer and about(entry, under_review)
    assert entry.changes["status"] == {"before": "needs_review", "after": "completed"}
    assert "mpesa_receipt_number" not in entry.changes  # it kept the receipt the callback gave
    assert entry.reason == "Statement line 14: KES 10 arrived"
    assert entry.data == {"outcome": "paid", "review_reason": "amount_mismatch"}


def test_a_review_refused_for_a_receipt_in_use_records_nothing(fake_daraja, place_order, django_user_model):
    fake_daraja.push_replies.append(requests.ReadTimeout("read timed out"))
    _order, unknown = place_order()  # under review, no receipt
    _order, other = place_order()
    pay(other, receipt="SGR7TAKEN1")
    reviewer = clerk(django_user_model, "reviewer", "review_payment")

    with pytest.raises(ReceiptInUse):
        services.payment_review_resolve(
            payment_id=unknown.pk, actor=reviewer, outcome="paid", note="x", receipt="SGR7TAKEN1"
        )

    assert none_of(AuditAction.REVIEW_RESOLVED)
    assert Payment.objects.get(pk=unknown.pk).status == PaymentStatus.NEEDS_REVIEW


def test_an_entered_receipt_records_the_receipt_and_the_note(fake_daraja, place_order, django_user_model):
    _order, payment = place_order()
    fake_daraja.answer_query("0")
    payment = services.payment_query_status(payment_id=payment.pk)
    finance = clerk(django_user_model, "finance", "enter_receipt")

    services.payment_receipt_enter(
        payment_id=payment.pk, actor=finance, receipt="sgr7 late 01", note="Statement 2026-12-01"
    )

    entry = the_record(AuditAction.RECEIPT_ENTERED)
    assert entry.actor == finance and about(entry, payment)
    assert entry.changes == {
        "mpesa_receipt_number": {"before": None, "after": "SGR7LATE01"},
        "receipt_pending": {"before": True, "after": False},
    }
    assert entry.reason == "Statement 2026-12-01"


def test_an_attached_callback_records_the_id_the_payment_took(
    fake_daraja, place_order, client, django_user_model
):
    fake_daraja.push_replies.append(requests.ReadTimeout("read timed out"))
    _order, payment = place_order()
    post_secret_callback(client, stk_callback("ws_CO_ORPHAN00000000001", receipt="SGR7ORPHAN"))
    inbox = CallbackInbox.objects.get(status=InboxStatus.UNMATCHED)
    finance = clerk(django_user_model, "finance", "attach_callback")

    services.callback_attach(inbox_id=inbox.pk, payment_id=payment.pk, actor=finance, note="Same phone")

    entry = the_record(AuditAction.CALLBACK_ATTACHED)
    assert entry.actor == finance and about(entry, payment)
    assert entry.changes["checkout_request_id"] == {"before": None, "after": "ws_CO_ORPHAN00000000001"}
    assert entry.reason == "Same phone" and entry.data["inbox"] == inbox.pk
    # Applying the callback afterwards is Daraja's word: the payment's events, not another record.
    assert AuditEntry.objects.filter(object_id=str(payment.pk), actor=finance).count() == 1


def test_processing_an_inbox_row_again_records_it_from_the_admin_with_the_address(
    admin_client, admin_user, db
):
    row = CallbackInbox.objects.create(
        kind="stk_callback",
        status=InboxStatus.FAILED,
        body="{}",
        attempts=5,
        error="Traceback\nKeyError: 'Body'",
    )
    url = reverse("admin:payments_callbackinbox_reprocess", args=[row.pk])

    response, _notes = post_action(admin_client, url)

    assert response["HX-Redirect"]
    entry = the_record(AuditAction.INBOX_REPROCESSED)
    assert entry.actor == admin_user and about(entry, row)
    assert entry.ip == "127.0.0.1"
    assert entry.changes == {"status": {"before": "failed", "after": "received"}}
    assert entry.data["previous_error"] == "KeyError: 'Body'"


def test_processing_again_needs_the_permission_and_a_processed_row_records_nothing(db, django_user_model):
    row = CallbackInbox.objects.create(kind="stk_callback", status=InboxStatus.PROCESSED, body="{}")
    viewer = clerk(django_user_model, "viewer", "view_callbackinbox")
    operator = clerk(django_user_model, "operator", "reprocess_inbox")

    with pytest.raises(PaymentPermissionDenied):
        inbox_service.inbox_process_again(inbox_id=row.pk, actor=viewer)
    inbox_service.inbox_process_again(inbox_id=row.pk, actor=operator)

    assert none_of(AuditAction.INBOX_REPROCESSED)


# --- orders -------------------------------------------------------------------------------------------
@pytest.fixture
def not_collected(place_order, django_user_model):
    order, payment = place_order(method=PaymentMethod.COD)
    courier = clerk(django_user_model, "courier", "collect_payment", "cancel_order")
    services.payment_mark_not_collected(payment_id=payment.pk, actor=courier, reason="Nobody home")
    return order, courier


def test_a_cancelled_order_records_the_status_and_the_reason(not_collected):
    order, courier = not_collected

    order_cancel(order_id=order.pk, actor=courier, reason="Customer changed their mind")

    entry = the_record(AuditAction.ORDER_CANCELLED)
    assert entry.actor == courier and about(entry, order)
    assert entry.changes["status"] == {"before": OrderStatus.PENDING, "after": OrderStatus.CANCELLED}
    assert entry.changes["cancel_reason"]["after"] == "Cancelled by courier: Customer changed their mind"
    assert entry.reason == "Customer changed their mind"


def test_a_cancellation_that_fails_after_its_record_rolls_the_record_back(not_collected):
    order, courier = not_collected

    def fails(sender, **kwargs):
        raise RuntimeError("a receiver of the cancellation failed")

    order_status_changed.connect(fails, dispatch_uid="test-audit-rollback")
    try:
        with pytest.raises(RuntimeError):
            order_cancel(order_id=order.pk, actor=courier, reason="Customer changed their mind")
    finally:
        order_status_changed.disconnect(dispatch_uid="test-audit-rollback")

    assert Order.objects.get(pk=order.pk).status == OrderStatus.PENDING
    assert none_of(AuditAction.ORDER_CANCELLED)


def test_a_record_rolls_back_with_the_callers_transaction(place_order, django_user_model):
    _order, payment = place_order(method=PaymentMethod.COD)
    courier = clerk(django_user_model, "courier", "collect_payment")

    with pytest.raises(RuntimeError), transaction.atomic():
        services.payment_mark_collected(payment_id=payment.pk, actor=courier)
        raise RuntimeError("the caller failed after the service")

    assert none_of(AuditAction.CASH_COLLECTED)
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.PENDING_DELIVERY


def test_cancelling_without_the_permission_records_nothing(not_collected, django_user_model):
    order, _courier = not_collected

    with pytest.raises(OrderError):
        order_cancel(order_id=order.pk, actor=clerk(django_user_model, "viewer", "view_order"), reason="x")

    assert none_of(AuditAction.ORDER_CANCELLED)


# --- refunds ------------------------------------------------------------------------------------------
def test_a_refund_request_records_what_was_asked_and_why(paid, maker, result_apis, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 1

    refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="Damaged", actor=maker)

    entry = the_record(AuditAction.REFUND_REQUESTED)
    assert entry.actor == maker and about(entry, refund)
    assert entry.changes["status"] == {"before": None, "after": "requested"}
    assert entry.changes["method"] == {"before": None, "after": "reversal"}
    assert Decimal(entry.changes["amount"]["after"]) == Decimal("10")
    assert "approved_by" not in entry.changes
    assert entry.reason == "Damaged" and entry.data == {"payment": paid.pk}


def test_a_request_approved_at_once_is_one_record_naming_the_approval(paid, maker, result_apis):
    refunds.refund_request(payment_id=paid.pk, amount=None, reason="Damaged", actor=maker)

    entry = the_record(AuditAction.REFUND_REQUESTED)
    assert entry.changes["status"]["after"] == "approved"
    assert entry.changes["approved_by"] == {"before": None, "after": maker.username}
    assert none_of(AuditAction.REFUND_APPROVED)


def test_a_refused_request_records_nothing(paid, result_apis, django_user_model):
    with pytest.raises(RefundPermissionDenied):
        refunds.refund_request(
            payment_id=paid.pk, amount=None, reason="x", actor=clerk(django_user_model, "v", "view_refund")
        )

    assert none_of(AuditAction.REFUND_REQUESTED)


@pytest.fixture
def requested(paid, maker, result_apis, settings):
    settings.REFUND_APPROVAL_THRESHOLD = 1
    return refunds.refund_request(payment_id=paid.pk, amount=None, reason="Damaged", actor=maker)


def test_an_approval_records_the_approver_and_the_maker_cannot_approve(requested, maker, checker):
    with pytest.raises(RefundPermissionDenied):
        refunds.refund_approve(refund_id=requested.pk, actor=maker)
    assert none_of(AuditAction.REFUND_APPROVED)

    refunds.refund_approve(refund_id=requested.pk, actor=checker)

    entry = the_record(AuditAction.REFUND_APPROVED)
    assert entry.actor == checker and about(entry, requested)
    assert entry.changes == {
        "status": {"before": "requested", "after": "approved"},
        "approved_by": {"before": None, "after": checker.username},
    }


def test_an_approval_in_the_admin_carries_the_clients_address(requested, client, django_user_model):
    approver = clerk(django_user_model, "approver", "approve_refund", "view_refund")
    client.force_login(approver)

    response, notes = post_action(client, reverse("admin:payments_refund_approve", args=[requested.pk]))

    assert response["HX-Redirect"], notes
    entry = the_record(AuditAction.REFUND_APPROVED)
    assert (entry.actor, entry.ip) == (approver, "127.0.0.1")
    assert about(entry, requested)


def test_a_rejection_records_the_note(requested, checker):
    refunds.refund_reject(refund_id=requested.pk, actor=checker, note="Not eligible: used item")

    entry = the_record(AuditAction.REFUND_REJECTED)
    assert entry.actor == checker and about(entry, requested)
    assert entry.changes == {
        "status": {"before": "requested", "after": "rejected"},
        "rejected_by": {"before": None, "after": checker.username},
    }
    assert entry.reason == "Not eligible: used item"


def test_approving_a_refund_already_approved_is_refused_and_records_nothing_more(requested, checker):
    refunds.refund_approve(refund_id=requested.pk, actor=checker)
    with pytest.raises(Exception, match="Only refunds awaiting approval"):
        refunds.refund_approve(refund_id=requested.pk, actor=checker)

    the_record(AuditAction.REFUND_APPROVED)


@pytest.fixture
def unknown_refund(paid, maker, result_apis, django_capture_on_commit_callbacks):
    """A reversal whose request timed out reading Daraja's answer: outcome unknown."""
    result_apis.replies[REVERSAL].append(requests.ReadTimeout("read timed out"))
    with django_capture_on_commit_callbacks(execute=True):
        refund = refunds.refund_request(payment_id=paid.pk, amount=None, reason="Lost", actor=maker)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.UNKNOWN
    return refund


def test_a_reversal_sent_again_records_it_before_it_is_sent(unknown_refund, checker, maker):
    with pytest.raises(RefundPermissionDenied):
        refunds.refund_resend_reversal(refund_id=unknown_refund.pk, actor=maker)
    assert none_of(AuditAction.REFUND_RESENT)

    refund = refunds.refund_resend_reversal(refund_id=unknown_refund.pk, actor=checker)

    assert refund.status == RefundStatus.SUBMITTED
    entry = the_record(AuditAction.REFUND_RESENT)
    assert entry.actor == checker and about(entry, unknown_refund)
    assert entry.changes == {"status": {"before": "unknown", "after": "submitting"}}


def test_a_refund_resolved_by_hand_records_the_outcome_the_receipt_and_the_note(unknown_refund, checker):
    refunds.refund_resolve(
        refund_id=unknown_refund.pk,
        actor=checker,
        succeeded=True,
        note="Statement line 12",
        transaction_id="SKR5T6Y7U8",
    )

    entry = the_record(AuditAction.REFUND_RESOLVED)
    assert entry.actor == checker and about(entry, unknown_refund)
    assert entry.changes["status"] == {"before": "unknown", "after": "succeeded"}
    assert entry.changes["transaction_id"] == {"before": "", "after": "SKR5T6Y7U8"}
    assert entry.reason == "Statement line 12"
    assert entry.data["paid_out"] is True


def test_asking_about_a_refund_records_the_question_and_the_sweeper_does_not(
    unknown_refund, checker, result_apis, settings
):
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=settings.REFUND_STATUS_INTERVAL + 1)):
        refunds.refunds_sweep()  # the sweeper asks: refund events only
    assert len(result_apis.status_queries) == 1 and none_of(AuditAction.REFUND_QUERIED)

    refund = refunds.refund_check_status(refund_id=unknown_refund.pk, actor=checker, source=EventSource.ADMIN)

    entry = the_record(AuditAction.REFUND_QUERIED)
    assert entry.actor == checker and about(entry, refund)
    ack = result_apis.acks[STATUS][-1]
    assert entry.changes["status_query_conversation_id"]["after"] == ack["ConversationID"]
    assert "status" not in entry.changes and entry.data["query"]


def test_asking_about_a_refund_needs_the_permission(unknown_refund, maker):
    with pytest.raises(RefundPermissionDenied):
        refunds.refund_check_status(refund_id=unknown_refund.pk, actor=maker)

    assert none_of(AuditAction.REFUND_QUERIED)


# --- notifications and alerts ---------------------------------------------------------------------------
def failed_sms() -> Notification:
    return Notification.objects.create(
        dedupe_key="payment_completed:payment-1:sms",
        event="payment_completed",
        channel="sms",
        recipient="254708374149",
        body="Paid",
        status=NotificationStatus.FAILED,
        attempts=3,
        last_error="Africa's Talking: InvalidPhoneNumber",
    )


def test_a_notification_sent_again_records_the_fresh_round(db, django_user_model):
    notification = failed_sms()
    ops = clerk(django_user_model, "ops", "resend_notification")

    notification_services.notification_resend(notification_id=notification.pk, actor=ops)

    entry = the_record(AuditAction.NOTIFICATION_RESENT)
    assert entry.actor == ops and about(entry, notification)
    assert entry.changes == {
        "status": {"before": "failed", "after": "queued"},
        "attempts": {"before": 3, "after": 0},
        "last_error": {"before": "Africa's Talking: InvalidPhoneNumber", "after": ""},
        "resend_count": {"before": 0, "after": 1},
    }
    assert "254708374149" not in entry.object_repr


def test_a_notification_still_in_flight_is_not_sent_again_and_records_nothing(db, django_user_model):
    notification = failed_sms()
    Notification.objects.filter(pk=notification.pk).update(status=NotificationStatus.QUEUED)

    with pytest.raises(NotificationInFlight):
        notification_services.notification_resend(
            notification_id=notification.pk, actor=clerk(django_user_model, "ops", "resend_notification")
        )

    assert none_of(AuditAction.NOTIFICATION_RESENT)


@pytest.fixture
def open_alert(db):
    now = timezone.now()
    rule = AlertRule.objects.order_by("pk").first()
    return Alert.objects.create(rule=rule, title="Success rate 40 %", opened_at=now, last_seen_at=now)


def test_an_acknowledged_alert_records_who(open_alert, django_user_model):
    with pytest.raises(PermissionDenied):
        alert_acknowledge(alert_id=open_alert.pk, actor=clerk(django_user_model, "viewer", "view_alert"))
    assert none_of(AuditAction.ALERT_ACKNOWLEDGED)
    duty = clerk(django_user_model, "duty", "acknowledge_alert")

    alert_acknowledge(alert_id=open_alert.pk, actor=duty)

    entry = the_record(AuditAction.ALERT_ACKNOWLEDGED)
    assert entry.actor == duty and about(entry, open_alert)
    assert entry.changes == {
        "status": {"before": "open", "after": "acknowledged"},
        "acknowledged_by": {"before": None, "after": duty.username},
    }


def test_an_alert_resolved_by_hand_records_the_note(open_alert, django_user_model):
    duty = clerk(django_user_model, "duty", "resolve_alert")

    alert_resolve(alert_id=open_alert.pk, actor=duty, note="Safaricom confirmed an outage")

    entry = the_record(AuditAction.ALERT_RESOLVED)
    assert entry.actor == duty and about(entry, open_alert)
    assert entry.changes["status"] == {"before": "open", "after": AlertStatus.RESOLVED}
    assert entry.changes["resolved_by"] == {"before": None, "after": duty.username}
    assert entry.reason == "Safaricom confirmed an outage"


# --- API tokens -----------------------------------------------------------------------------------------
def test_a_token_issued_at_the_shell_is_recorded_without_the_token_or_its_hash(db):
    out = StringIO()

    call_command(
        "issue_api_token", "kiosk", "--scope", "orders", "--name", "Kiosk", stdout=out, stderr=StringIO()
    )

    raw = out.getvalue().strip()
    token = ApiToken.objects.get(user__username="kiosk")
    entry = the_record(AuditAction.TOKEN_ISSUED)
    assert entry.actor is None and about(entry, token)
    assert entry.data == {"user": "kiosk", "user_created": True, "by": "manage.py issue_api_token"}
    assert entry.changes["key_prefix"] == {"before": None, "after": raw[:10]}
    assert entry.changes["scopes"] == {"before": None, "after": ["orders"]}
    stored = json.dumps([entry.changes, entry.data, entry.object_repr])
    assert raw not in stored and token.key_hash not in stored
    # Recorded once: as issued, not also as an edited token.
    assert not AuditEntry.objects.filter(
        action=AuditAction.CREATED, content_type=entry.content_type, object_id=entry.object_id
    ).exists()


def test_a_token_issued_by_a_person_names_them(db, admin_user):
    token, _raw, _created = api_token_issue(username="kiosk", scopes=["orders"], actor=admin_user)

    entry = the_record(AuditAction.TOKEN_ISSUED)
    assert entry.actor == admin_user and about(entry, token)


def test_a_token_revoked_in_the_admin_is_recorded_once_with_the_address(admin_client, admin_user, db):
    token, _raw, _created = api_token_issue(username="kiosk")
    url = reverse("admin:backoffice_apitoken_revoke", args=[token.pk])

    response, _notes = post_action(admin_client, url)

    assert response["HX-Redirect"]
    entry = the_record(AuditAction.TOKEN_REVOKED)
    assert (entry.actor, entry.ip) == (admin_user, "127.0.0.1")
    assert about(entry, token) and entry.changes["revoked_at"]["before"] is None
    assert not AuditEntry.objects.filter(
        action=AuditAction.CHANGED, content_type=entry.content_type, object_id=entry.object_id
    ).exists()
    api_token_revoke(token_id=token.pk, actor=admin_user)  # again: changes nothing, records nothing
    the_record(AuditAction.TOKEN_REVOKED)


def test_revoking_a_token_needs_the_permission(db, django_user_model):
    token, _raw, _created = api_token_issue(username="kiosk")

    with pytest.raises(ApiTokenPermissionDenied):
        api_token_revoke(token_id=token.pk, actor=clerk(django_user_model, "viewer", "view_apitoken"))

    assert none_of(AuditAction.TOKEN_REVOKED)
