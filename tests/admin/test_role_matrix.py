"""Who may do what in the admin, walked rather than listed: the four roles × every registered model admin's
list and pages, every Unfold action on every object it can apply to, and every bulk action.

The expectation for each pair is derived, not typed: a probe user holding every permission runs the admin's
own checks (the action's declared permissions, its has_*_permission methods, has_view_permission) and notes
which permissions they ask for; a role may act when the check applies at all and backoffice/roles.py grants
the role every permission asked for. The admin's answer for the role's real user must agree (an object-level
rule, such as not approving one's own refund, is the only difference, and is named). Then the HTTP layer
must agree with both: a refused page or action answers 403, a refused POST with a valid CSRF token changes no
row, and an allowed one is not refused. A hand-written floor of key expectations keeps a broken walk from
passing. Last, the services are called directly with each role's user: they refuse on their own.
"""

import re
from copy import copy

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from backoffice import roles
from backoffice.exceptions import ApiTokenPermissionDenied
from backoffice.models import ApiToken
from backoffice.services import api_token_revoke
from notifications.exceptions import NotificationPermissionDenied
from notifications.models import Notification
from notifications.services import notification_resend
from orders.exceptions import OrderError
from orders.models import Order, OrderStatus
from orders.services import order_cancel
from payments import refunds, services
from payments.exceptions import PaymentPermissionDenied
from payments.inbox import inbox_process_again
from payments.models import (
    CallbackInbox,
    EventSource,
    InboxStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from reports.alerts.services import alert_acknowledge, alert_resolve
from reports.models import Alert, AlertRule, ReportSubscription
from reports.report_services import report_subscription_save, report_subscription_send_now
from statements.models import ItemKind, ReconciliationItem
from tests.admin.test_no_change_on_get import CRAFTED, snapshot, world  # noqa: F401 (the fixture)
from tests.payments.refunds_support import pay

VIEWER, OPERATOR, MANAGER, AUDITOR = roles.VIEWER, roles.OPERATOR, roles.MANAGER, roles.AUDITOR
OBJECTS_PER_MODEL = 40
# Where the admin refuses someone holding every permission its check asks for: an object-level rule, and
# the only one. A Manager is never offered Approve on a refund they requested (maker-checker).
OBJECT_LEVEL_REFUSALS = {
    "payments_refund_approve": lambda user, pk: Refund.objects.filter(pk=pk, requested_by=user).exists(),
}


# --- the people and the objects ---------------------------------------------------------------------
@pytest.fixture
def people(db, django_user_model):
    """One staff user per role, in the group migration 0004 created, plus a second Manager."""
    made = {}
    for role, perms in roles.ROLES.items():
        group = Group.objects.get(name=role)
        granted = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert granted == perms, role
        user = django_user_model.objects.create_user(role.lower(), is_staff=True)
        user.groups.add(group)
        made[role] = django_user_model.objects.get(pk=user.pk)  # fresh permission cache
    second = django_user_model.objects.create_user("manager2", is_staff=True)
    second.groups.add(Group.objects.get(name=MANAGER))
    made["manager2"] = django_user_model.objects.get(pk=second.pk)
    return made


@pytest.fixture
def scene(world, people, place_order, django_capture_on_commit_callbacks):  # noqa: F811
    """The objects of test_no_change_on_get's world, plus a refund the Manager requested, one paid payment
    with nothing refunded yet, an open alert and a report subscription, named for the floor below."""
    with django_capture_on_commit_callbacks(execute=True):
        _order, to_pay = place_order()
        own = pay(to_pay, receipt="SGR7MANAGER")
        manager_refund = refunds.refund_request(
            payment_id=own.pk, amount=None, reason="Asked by the Manager", actor=people[MANAGER]
        )
        _order, to_pay = place_order()
        spare_paid = pay(to_pay, receipt="SGR7SPARE01")
    now = timezone.now()
    alert = Alert.objects.create(
        rule=AlertRule.objects.order_by("pk").first(),
        title="Success rate low",
        opened_at=now,
        last_seen_at=now,
    )
    subscription = report_subscription_save(
        subscription=ReportSubscription(name="Daily", extra_emails="cfo@example.com")
    )
    assert manager_refund.status == RefundStatus.REQUESTED
    return {
        "initiated": Payment.objects.filter(status=PaymentStatus.INITIATED).first(),
        "failed": Payment.objects.filter(status=PaymentStatus.FAILED).first(),
        "cod": Payment.objects.get(status=PaymentStatus.PENDING_DELIVERY),
        "review": Payment.objects.get(status=PaymentStatus.NEEDS_REVIEW),
        "receipt_pending": Payment.objects.get(receipt_pending=True),
        "spare_paid": spare_paid,
        "requested": Refund.objects.filter(status=RefundStatus.REQUESTED).exclude(pk=manager_refund.pk).get(),
        "manager_refund": manager_refund,
        "unknown": Refund.objects.get(status=RefundStatus.UNKNOWN),
        "unmatched": CallbackInbox.objects.get(status=InboxStatus.UNMATCHED),
        "failed_inbox": CallbackInbox.objects.get(status=InboxStatus.FAILED),
        "notification": Notification.objects.order_by("pk").first(),
        "open_order": Order.objects.filter(status=OrderStatus.PENDING).order_by("pk").first(),
        "alert": alert,
        "subscription": subscription,
        "token": ApiToken.objects.order_by("pk").first(),
        "unrecorded": ReconciliationItem.objects.get(kind=ItemKind.UNRECORDED_LINE),
    }


# --- deriving what a role may do --------------------------------------------------------------------
def request_for(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def probed(check, probe_user) -> tuple[bool, frozenset[str]]:
    """Run an admin check as someone holding every permission: does it apply here, and what does it ask?"""
    asked: set[str] = set()
    probe = copy(probe_user)
    probe.has_perm = lambda perm, obj=None: asked.add(perm) or True
    return bool(check(request_for(probe))), frozenset(asked)


def derived(check, probe_user, role) -> bool:
    applies, asked = probed(check, probe_user)
    # A check that lets anyone through asks for no permission: then nothing stops a Viewer either.
    assert asked or not applies, "an admin check that asks for no permission"
    return applies and asked <= roles.ROLES[role]


def model_admins():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def url_or_none(name, *args):
    try:
        return reverse(f"admin:{name}", args=args)
    except NoReverseMatch:
        return None


def unfold_actions(model_admin):
    """(action, needs an object) for every list, row and detail action."""
    if not hasattr(model_admin, "_get_base_actions_detail"):
        return []
    return [
        *((action, False) for action in model_admin._get_base_actions_list()),
        *((action, False) for action in model_admin._get_base_actions_row()),
        *((action, True) for action in model_admin._get_base_actions_detail()),
    ]


def unfold_allows(model_admin, action, object_id):
    """The check Unfold's action view makes (detail actions with their object, the others without)."""
    return lambda request: model_admin._filter_unfold_actions_by_permissions(request, [action], object_id)


def bulk_allows(model_admin, action):
    """Django runs a bulk action from the changelist, for those who may see it and pass its permissions."""
    return lambda request: (
        model_admin.has_view_or_change_permission(request)
        and bool(model_admin._filter_actions_by_permissions(request, [action]))
    )


class Walk:
    """Each role's signed-in browser (CSRF enforced) and what it was allowed: {(role, what, pk): bool}."""

    def __init__(self, people, probe_user):
        self.people = people
        self.probe_user = probe_user
        self.outcomes: dict[tuple[str, str, object], bool] = {}
        self.browsers = {}
        for role in roles.ROLES:
            browser = Client(enforce_csrf_checks=True)
            browser.force_login(people[role])
            browser.get(reverse("admin:index"))
            self.browsers[role] = browser
        self.before = snapshot()

    def csrf(self, role) -> str:
        return self.browsers[role].cookies["csrftoken"].value

    def expect(self, role, what, pk, check) -> bool:
        """The admin's answer for the role, checked against roles.py through the probe."""
        allowed = bool(check(request_for(self.people[role])))
        expected = derived(check, self.probe_user, role)
        if expected and not allowed:
            rule = OBJECT_LEVEL_REFUSALS.get(what)
            assert rule and rule(self.people[role], pk), (role, what, pk, "refused though roles.py grants it")
        assert allowed <= expected, (role, what, pk, "allowed though roles.py does not grant it")
        self.outcomes[(role, what, pk)] = allowed
        return allowed

    def post_refused(self, role, url, data):
        response = self.browsers[role].post(
            url, {**data, "csrfmiddlewaretoken": self.csrf(role)}, HTTP_HX_REQUEST="true"
        )
        assert snapshot() == self.before, f"{role}: a refused POST {url} changed the database"
        return response

    def post_allowed(self, role, url, data):
        """The POST runs, then everything it did is rolled back, so the next pair starts from the same rows."""
        with transaction.atomic():
            response = self.browsers[role].post(
                url, {**data, "csrfmiddlewaretoken": self.csrf(role)}, HTTP_HX_REQUEST="true"
            )
            transaction.set_rollback(True)
        assert snapshot() == self.before, f"{role}: POST {url} outlived its rollback"
        return response


@pytest.fixture
def walk(scene, people, django_user_model):
    probe_user = django_user_model.objects.create_user("probe", is_staff=True)
    return Walk(people, probe_user)


def walk_pages(walk: Walk):
    for model, model_admin in model_admins():
        opts = model._meta
        changelist = url_or_none(f"{opts.app_label}_{opts.model_name}_changelist")
        if changelist is None:
            continue
        for role in roles.ROLES:
            allowed = walk.expect(role, f"{opts.app_label}_{opts.model_name}_changelist", None,
                                  model_admin.has_view_or_change_permission)  # fmt: skip
            status = walk.browsers[role].get(changelist).status_code
            assert status == (200 if allowed else 403), (role, changelist, status)
            visible = model_admin.get_queryset(request_for(walk.people[role])) if allowed else None
            for obj in model.objects.all()[:3]:
                change = url_or_none(f"{opts.app_label}_{opts.model_name}_change", obj.pk)
                if change is None:
                    continue
                may_view = walk.expect(
                    role,
                    f"{opts.app_label}_{opts.model_name}_change",
                    obj.pk,
                    lambda request, obj=obj: model_admin.has_view_or_change_permission(request, obj),
                )
                status = walk.browsers[role].get(change).status_code
                # A record outside the role's queryset (another person's audit record) is "not found": 302.
                found = may_view and visible.filter(pk=obj.pk).exists()
                assert status == (403 if not may_view else 200 if found else 302), (role, change, status)


def walk_unfold_actions(walk: Walk):
    for model, model_admin in model_admins():
        pks = list(model.objects.values_list("pk", flat=True)[:OBJECTS_PER_MODEL])
        for action, on_object in unfold_actions(model_admin):
            for pk in pks if on_object else [None]:
                url = reverse(f"admin:{action.action_name}", args=[pk] if on_object else [])
                check = unfold_allows(model_admin, action, str(pk) if on_object else None)
                for role in roles.ROLES:
                    allowed = walk.expect(role, action.action_name, pk, check)
                    shown = walk.browsers[role].get(url).status_code
                    if allowed:
                        posted = walk.post_allowed(role, url, CRAFTED).status_code
                        assert shown != 403 and posted != 403 and max(shown, posted) < 500, (role, url)
                    else:
                        posted = walk.post_refused(role, url, CRAFTED).status_code
                        assert shown == posted == 403, (role, url, shown, posted)


def walk_bulk_actions(walk: Walk):
    for model, model_admin in model_admins():
        opts = model._meta
        changelist = url_or_none(f"{opts.app_label}_{opts.model_name}_changelist")
        if changelist is None or model_admin.actions is None:
            continue
        pks = [str(pk) for pk in model.objects.values_list("pk", flat=True)[:OBJECTS_PER_MODEL]]
        if not pks:
            continue
        for action in model_admin._get_base_actions():
            name = action.name
            form = {"action": name, "_selected_action": pks, "index": "0", "post": "yes"}
            for role in roles.ROLES:
                allowed = walk.expect(role, f"{opts.app_label}_{opts.model_name}.{name}", None,
                                      bulk_allows(model_admin, action))  # fmt: skip
                if allowed:
                    assert walk.post_allowed(role, changelist, form).status_code != 403, (role, name)
                else:
                    walk.post_refused(role, changelist, form)


@pytest.mark.django_db
def test_every_role_may_use_exactly_what_its_permissions_grant_in_the_admin(walk, scene, people):
    walk_pages(walk)
    walk_unfold_actions(walk)
    walk_bulk_actions(walk)
    outcome = walk.outcomes

    def may(role, what, obj=None):
        return outcome[(role, what, None if obj is None else obj.pk)]

    # The floor: key expectations written by hand (the walk must have reached them, and agree).
    for role in roles.ROLES:
        assert walk.browsers[role].get(reverse("admin:index")).status_code == 200  # the dashboard
        for what in ("payments_payment", "payments_refund", "orders_order", "orders_customer"):
            assert may(role, f"{what}_changelist"), (role, what)
        for what in ("auth_user", "auth_group", "axes_accessattempt", "axes_accesslog", "django_q_schedule"):
            assert not may(role, f"{what}_changelist"), (role, what)
        assert may(role, "audit_auditentry_changelist"), role
    assert not may(VIEWER, "payments_callbackinbox_changelist")
    assert not may(VIEWER, "notifications_notification_changelist")
    assert may(OPERATOR, "payments_callbackinbox_changelist")
    assert may(AUDITOR, "backoffice_apitoken_changelist") and may(
        AUDITOR, "notifications_messagetemplate_changelist"
    )

    requested, own = scene["requested"], scene["manager_refund"]
    assert not may(VIEWER, "payments_refund_approve", requested)
    assert not may(VIEWER, "payments_payment_query_now", scene["initiated"])
    assert not may(VIEWER, "payments_payment_retry", scene["failed"])
    assert may(OPERATOR, "payments_payment_query_now", scene["initiated"])
    assert may(OPERATOR, "payments_payment_retry", scene["failed"])
    assert may(OPERATOR, "payments_payment_mark_collected", scene["cod"])
    assert may(OPERATOR, "payments_callbackinbox_reprocess", scene["failed_inbox"])
    assert may(OPERATOR, "notifications_notification_resend", scene["notification"])
    assert may(OPERATOR, "reports_alert_acknowledge", scene["alert"])
    assert not may(OPERATOR, "payments_refund_approve", requested)
    assert not may(OPERATOR, "payments_payment_request_refund", scene["spare_paid"])
    assert not may(OPERATOR, "payments_payment_resolve_review", scene["review"])
    assert not may(OPERATOR, "reports_alert_resolve", scene["alert"])
    assert may(MANAGER, "payments_refund_approve", requested)
    assert not may(MANAGER, "payments_refund_approve", own)  # never their own request
    assert may(MANAGER, "payments_refund_reject", own)  # withdrawing it is fine
    assert may(MANAGER, "payments_payment_request_refund", scene["spare_paid"])
    assert may(MANAGER, "payments_payment_resolve_review", scene["review"])
    assert may(MANAGER, "payments_payment_enter_receipt", scene["receipt_pending"])
    assert may(MANAGER, "payments_callbackinbox_attach", scene["unmatched"])
    assert may(MANAGER, "payments_refund_resolve", scene["unknown"])
    assert may(MANAGER, "orders_order_cancel", scene["open_order"])
    assert may(MANAGER, "reports_alert_resolve", scene["alert"])
    assert may(MANAGER, "reports_reportsubscription_send_now", scene["subscription"])
    assert not may(MANAGER, "backoffice_apitoken_revoke", scene["token"])
    assert may(MANAGER, "statements_statementimport_import_statement")
    assert may(MANAGER, "statements_reconciliationitem_mark_expected", scene["unrecorded"])
    assert may(MANAGER, "statements_reconciliationitem_attach_payment", scene["unrecorded"])
    assert not may(
        MANAGER, "statements_reconciliationitem_open_refund", scene["unrecorded"]
    )  # not paid twice
    assert may(OPERATOR, "statements_reconciliationitem_changelist")
    assert not may(OPERATOR, "statements_statementimport_import_statement")
    assert not may(OPERATOR, "statements_reconciliationitem_mark_expected", scene["unrecorded"])
    assert not may(VIEWER, "statements_statementline_changelist")
    # The Auditor reads and exports (full exports are theirs), and does nothing else.
    acted = [
        key
        for key, allowed in outcome.items()
        if key[0] == AUDITOR and allowed and not key[1].endswith(("_changelist", "_change", "export_list"))
    ]
    assert not acted, f"the Auditor may act: {acted}"
    assert may(AUDITOR, "payments_payment_export_list") and not may(VIEWER, "payments_payment_export_list")
    assert sum(1 for role, *_ in outcome if role == AUDITOR) > 100  # the walk really walked


@pytest.mark.django_db
def test_a_viewer_and_an_auditor_see_no_action_on_payment_and_refund_pages(walk, scene, people):
    pages = {
        "payments_payment": [scene["initiated"], scene["failed"], scene["spare_paid"], scene["review"]],
        "payments_refund": [scene["requested"], scene["unknown"]],
    }
    for role in (VIEWER, AUDITOR):
        for what, objects in pages.items():
            model_admin = admin.site._registry[type(objects[0])]
            for obj in objects:
                html = (
                    walk.browsers[role].get(reverse(f"admin:{what}_change", args=[obj.pk])).content.decode()
                )
                assert str(obj.pk) in html
                for action in model_admin._get_base_actions_detail():
                    assert reverse(f"admin:{action.action_name}", args=[obj.pk]) not in html, (role, action)
    # An Operator does see the ones that are theirs (the check above is not vacuous).
    html = walk.browsers[OPERATOR].get(reverse("admin:payments_payment_change", args=[scene["failed"].pk]))
    assert reverse("admin:payments_payment_retry", args=[scene["failed"].pk]) in html.content.decode()


# A Kenyan mobile number written out in full (masked ones have asterisks in the middle); a word of its own,
# so that the digits inside a random hex id (a provider's message id) are not taken for one.
FULL_PHONE = re.compile(r"(?<![\w])(?:\+?254|0)[17]\d{8}(?![\w])")


@pytest.mark.django_db
def test_no_list_or_page_shows_a_full_phone_number_to_a_role_without_the_full_phone_permission(walk, scene):
    for role in roles.ROLES:
        sees_full = "orders.view_full_phone" in roles.ROLES[role]
        shown = set()
        for model, model_admin in model_admins():
            opts = model._meta
            request = request_for(walk.people[role])
            if not model_admin.has_view_or_change_permission(request):
                continue
            pages = [reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")]
            pages += [
                url
                for pk in model_admin.get_queryset(request).values_list("pk", flat=True)[:12]
                if (url := url_or_none(f"{opts.app_label}_{opts.model_name}_change", pk))
            ]
            for url in pages:
                found = FULL_PHONE.findall(walk.browsers[role].get(url).content.decode())
                assert sees_full or not found, (role, url, found)
                shown.update(found)
        assert ("254708374149" in shown) == sees_full, role


# --- the services refuse on their own -----------------------------------------------------------------
REFUSALS = (PaymentPermissionDenied, OrderError, PermissionDenied, NotificationPermissionDenied,
            ApiTokenPermissionDenied)  # fmt: skip


def service_calls(scene):
    """(permission roles.py must grant, the call), one per staff action; the objects are in a state where
    the call could succeed, so a refusal is about the person."""
    s = {name: obj.pk for name, obj in scene.items()}
    return [
        ("payments.query_payment", lambda u: services.payment_query_status(payment_id=s["initiated"], source=EventSource.QUERY, actor=u)),
        ("payments.retry_payment", lambda u: services.payment_retry(payment_id=s["failed"], source=EventSource.ADMIN, actor=u)),
        ("payments.collect_payment", lambda u: services.payment_mark_collected(payment_id=s["cod"], actor=u, note="")),
        ("payments.collect_payment", lambda u: services.payment_mark_not_collected(payment_id=s["cod"], actor=u, reason="Refused at the door")),
        ("payments.review_payment", lambda u: services.payment_review_resolve(payment_id=s["review"], actor=u, outcome="not_paid", note="Not on the statement")),
        ("payments.enter_receipt", lambda u: services.payment_receipt_enter(payment_id=s["receipt_pending"], actor=u, receipt="SGR7ENTER01", note="Statement")),
        ("payments.attach_callback", lambda u: services.callback_attach(inbox_id=s["unmatched"], payment_id=s["initiated"], actor=u, note="Same phone")),
        ("payments.reprocess_inbox", lambda u: inbox_process_again(inbox_id=s["failed_inbox"], actor=u)),
        ("payments.add_refund", lambda u: refunds.refund_request(payment_id=s["spare_paid"], amount=None, reason="Returned", actor=u)),
        ("payments.approve_refund", lambda u: refunds.refund_approve(refund_id=s["requested"], actor=u)),
        ("payments.approve_refund", lambda u: refunds.refund_reject(refund_id=s["requested"], actor=u, note="No")),
        ("payments.query_payment", lambda u: refunds.refund_check_status(refund_id=s["unknown"], actor=u, source=EventSource.ADMIN)),
        ("payments.resolve_refund", lambda u: refunds.refund_resend_reversal(refund_id=s["unknown"], actor=u)),
        ("payments.resolve_refund", lambda u: refunds.refund_resolve(refund_id=s["unknown"], actor=u, succeeded=False, note="Not on the statement")),
        ("orders.cancel_order", lambda u: order_cancel(order_id=s["open_order"], actor=u, reason="Customer called")),
        ("notifications.resend_notification", lambda u: notification_resend(notification_id=s["notification"], actor=u)),
        ("reports.acknowledge_alert", lambda u: alert_acknowledge(alert_id=s["alert"], actor=u)),
        ("reports.resolve_alert", lambda u: alert_resolve(alert_id=s["alert"], actor=u, note="Safaricom outage over")),
        ("backoffice.change_apitoken", lambda u: api_token_revoke(token_id=s["token"], actor=u)),
        ("reports.change_reportsubscription", lambda u: report_subscription_send_now(subscription_id=s["subscription"], actor=u)),
    ]  # fmt: skip


def refused_by_the_service(call, user) -> bool:
    try:
        with transaction.atomic():
            call(user)
            transaction.set_rollback(True)
    except REFUSALS as exc:
        # An OrderError other than "forbidden" is about the order's state: the permission check passed.
        return not isinstance(exc, OrderError) or exc.code == "forbidden"
    except Exception:  # any other refusal is about the object's state: the person passed
        return False
    return False


@pytest.mark.django_db
def test_the_services_refuse_what_a_role_may_not_do_whoever_calls_them(scene, people):
    before = snapshot()
    for perm, call in service_calls(scene):
        for role in roles.ROLES:
            refused = refused_by_the_service(call, people[role])
            assert refused == (perm not in roles.ROLES[role]), (
                role,
                perm,
                "refused" if refused else "allowed",
            )
    assert snapshot() == before

    # Maker-checker: the Manager who requested a refund cannot approve it; a second Manager can.
    own = scene["manager_refund"].pk
    with pytest.raises(PaymentPermissionDenied, match="second person"):
        refunds.refund_approve(refund_id=own, actor=people[MANAGER])
    assert refunds.refund_approve(refund_id=own, actor=people["manager2"]).status == RefundStatus.APPROVED
