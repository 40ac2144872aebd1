"""The staff roles, named as in Safaricom's M-PESA business portal so finance teams recognise them.

Each role is a Group, created by a migration and editable by superusers afterwards (the migration never
overwrites a group that exists). Superusers administer users, roles, API tokens and settings; no role does.

Who may do what is decided by these permissions, checked by the services themselves (payments.permissions);
the admin only hides what a role may not use.
"""

from django.db.models import Q

VIEWER = "Viewer"
OPERATOR = "Operator"
MANAGER = "Manager"
AUDITOR = "Auditor"

# Read payments, orders, refunds and the dashboard (which needs payments.view_payment). Phone numbers are
# masked. Audit records: only their own.
_VIEWER = {
    "orders.view_order",
    "orders.view_orderitem",
    "orders.view_product",
    "orders.view_customer",
    "payments.view_payment",
    "payments.view_paymentevent",
    "payments.view_refund",
    "payments.view_refundevent",
    "reports.view_alert",
    "audit.view_auditentry",
}
_STATEMENT_READING = {
    "statements.view_statementimport",
    "statements.view_statementline",
    "statements.view_reconciliationrun",
    "statements.view_reconciliationitem",
}
# Day-to-day operations that ask or retry, never decide about money.
_OPERATOR = (
    _VIEWER
    | {
        "payments.query_payment",
        "payments.retry_payment",
        "payments.collect_payment",
        "payments.view_callbackinbox",
        "payments.reprocess_inbox",
        "notifications.view_notification",
        "notifications.view_notificationattempt",
        "notifications.resend_notification",
        "reports.acknowledge_alert",
    }
    | _STATEMENT_READING
)
# Decisions about money, exports, and the reports and alerts the team receives.
_MANAGER = _OPERATOR | {
    "payments.add_refund",
    "payments.approve_refund",
    "payments.resolve_refund",
    "payments.review_payment",
    "payments.enter_receipt",
    "payments.attach_callback",
    "orders.cancel_order",
    "orders.view_full_phone",
    "exports.export_lists",
    "exports.view_export",
    "reports.resolve_alert",
    "reports.view_alertrule",
    "reports.add_alertrule",
    "reports.change_alertrule",
    "reports.delete_alertrule",
    "reports.view_reportsubscription",
    "reports.add_reportsubscription",
    "reports.change_reportsubscription",
    "reports.delete_reportsubscription",
    "reports.view_reportrun",
    "reports.view_reportfile",
    "audit.view_all_auditentry",
    "statements.import_statement",
    "statements.resolve_reconciliationitem",
}
# Reads everything, including the whole audit trail and full exports; changes nothing.
_AUDITOR = {
    "orders.view_order",
    "orders.view_orderitem",
    "orders.view_product",
    "orders.view_customer",
    "orders.view_full_phone",
    "payments.view_payment",
    "payments.view_paymentevent",
    "payments.view_refund",
    "payments.view_refundevent",
    "payments.view_callbackinbox",
    "notifications.view_notification",
    "notifications.view_notificationattempt",
    "notifications.view_messagetemplate",
    "notifications.view_notificationrule",
    "reports.view_alert",
    "reports.view_alertrule",
    "reports.view_reportsubscription",
    "reports.view_reportrun",
    "reports.view_reportfile",
    "backoffice.view_apitoken",
    "exports.export_lists",
    "exports.view_export",
    "audit.view_auditentry",
    "audit.view_all_auditentry",
} | _STATEMENT_READING

ROLES: dict[str, frozenset[str]] = {
    VIEWER: frozenset(_VIEWER),
    OPERATOR: frozenset(_OPERATOR),
    MANAGER: frozenset(_MANAGER),
    AUDITOR: frozenset(_AUDITOR),
}


def _permissions(permission_model, perms: set[str] | frozenset[str]) -> list:
    wanted = Q()
    for perm in perms:
        app_label, codename = perm.split(".", 1)
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    found = list(permission_model.objects.filter(wanted).select_related("content_type")) if perms else []
    if len(found) != len(perms):
        have = {f"{p.content_type.app_label}.{p.codename}" for p in found}
        raise LookupError(f"Roles name permissions that do not exist: {sorted(set(perms) - have)}")
    return found


def ensure_roles(
    group_model, permission_model, *, replace: bool = False, leave_out: frozenset[str] = frozenset()
) -> None:
    """Create the role groups that do not exist (with `replace`, reset every role to its definition).

    Takes the models as arguments so that a migration can pass its historical ones; `leave_out` names apps
    whose permissions a later migration grants (`roles_grant_app`), for migrations that run before them.
    """
    for name, perms in ROLES.items():
        group, created = group_model.objects.get_or_create(name=name)
        if not (created or replace):
            continue
        kept = {perm for perm in perms if perm.split(".", 1)[0] not in leave_out}
        group.permissions.set(_permissions(permission_model, kept))


def roles_grant_app(group_model, permission_model, app_label: str) -> None:
    """Give the existing role groups what their definition grants in an app added after they were made."""
    for name, perms in ROLES.items():
        group = group_model.objects.filter(name=name).first()
        if group is None:
            continue
        group.permissions.add(
            *_permissions(permission_model, {perm for perm in perms if perm.startswith(f"{app_label}.")})
        )
