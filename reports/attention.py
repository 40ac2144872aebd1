"""What needs a person now: each item counts rows in one state and links to the admin list filtered to them.

Shown on the dashboard (zero as "all clear", never hidden), in report emails and in alerts.
"""

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure

from notifications.models import Notification, NotificationStatus
from payments.models import CallbackInbox, InboxStatus, Payment, PaymentStatus, Refund, RefundStatus
from payments.selectors import inbox_gave_up, payments_receipt_pending
from statements.selectors import open_items, payments_missing_from_statement

FAILED_TASKS_WINDOW = dt.timedelta(hours=24)
UNDELIVERABLE = (NotificationStatus.FAILED, NotificationStatus.REJECTED)


@dataclass(frozen=True)
class AttentionItem:
    key: str
    label: str
    help: str
    count: int
    url: str
    permission: str
    severity: str  # "danger": money may be wrong; "warning": money waits for a person


@dataclass(frozen=True)
class _Source:
    key: str
    label: str
    help: str
    rows: object  # () -> QuerySet
    changelist: str
    query: dict
    permission: str
    severity: str = "warning"


def _failed_tasks() -> QuerySet[Failure]:
    return Failure.objects.filter(stopped__gte=timezone.now() - FAILED_TASKS_WINDOW)


# The statement's two items: what we counted that the statement does not show (read by the alert rule of
# the same name too), and the reconciliation exceptions still open.
MISSING_FROM_STATEMENT = _Source(
    "missing_from_statement",
    "Completed but not on the statement",
    "Paid M-Pesa payments in a period an imported M-PESA statement covers, with no line on it.",
    payments_missing_from_statement,
    "admin:statements_reconciliationitem_changelist",
    {"kind__exact": "missing_from_statement", "status": "open"},
    "statements.view_reconciliationitem",
    "danger",
)
OPEN_EXCEPTIONS = _Source(
    "reconciliation_exceptions",
    "Open reconciliation exceptions",
    "Differences between the M-PESA statement and our records: attach, mark as expected or refund.",
    open_items,
    "admin:statements_reconciliationitem_changelist",
    {"status": "open"},
    "statements.view_reconciliationitem",
)


SOURCES = (
    _Source(
        "payments_under_review",
        "Payments under review",
        "A person decides: paid (with the statement's receipt) or not paid.",
        lambda: Payment.objects.filter(status=PaymentStatus.NEEDS_REVIEW),
        "admin:payments_payment_changelist",
        {"status__exact": PaymentStatus.NEEDS_REVIEW},
        "payments.view_payment",
        "danger",
    ),
    _Source(
        "receipts_pending",
        "Receipts pending",
        "Completed on an STK Query answer; the M-Pesa receipt is still to be entered.",
        payments_receipt_pending,
        "admin:payments_payment_changelist",
        {"receipt": "pending"},
        "payments.view_payment",
    ),
    _Source(
        "queries_failing",
        "M-Pesa not answering queries",
        "Attempts kept open because STK Query gets no answer (5xx, Spike Arrest, timeouts).",
        lambda: Payment.objects.filter(query_failing=True, status__in=(PaymentStatus.INITIATED,)),
        "admin:payments_payment_changelist",
        {"query_failing__exact": "1"},
        "payments.view_payment",
    ),
    _Source(
        "unmatched_callbacks",
        "Unmatched callbacks",
        "Callbacks whose CheckoutRequestID matches no payment: attach them to the right one.",
        lambda: CallbackInbox.objects.filter(status=InboxStatus.UNMATCHED),
        "admin:payments_callbackinbox_changelist",
        {"status__exact": InboxStatus.UNMATCHED},
        "payments.view_callbackinbox",
    ),
    _Source(
        "inbox_gave_up",
        "Inbox rows that gave up",
        "Stored callbacks and results that failed every automatic retry.",
        inbox_gave_up,
        "admin:payments_callbackinbox_changelist",
        {"attention": "gave_up"},
        "payments.view_callbackinbox",
        "danger",
    ),
    _Source(
        "refunds_awaiting_approval",
        "Refunds awaiting approval",
        "A second person with the approve permission decides.",
        lambda: Refund.objects.filter(status=RefundStatus.REQUESTED),
        "admin:payments_refund_changelist",
        {"status__exact": RefundStatus.REQUESTED},
        "payments.view_refund",
    ),
    _Source(
        "refunds_unknown",
        "Refunds with unknown outcome",
        "Daraja may or may not have paid out: Transaction Status is asked, or resolve by hand.",
        lambda: Refund.objects.filter(status=RefundStatus.UNKNOWN),
        "admin:payments_refund_changelist",
        {"status__exact": RefundStatus.UNKNOWN},
        "payments.view_refund",
        "danger",
    ),
    _Source(
        "refunds_over_refunded",
        "Over-refunds to recover",
        "A payout went out beyond what was paid: recover it from the customer.",
        lambda: Refund.objects.filter(status=RefundStatus.OVER_REFUNDED),
        "admin:payments_refund_changelist",
        {"status__exact": RefundStatus.OVER_REFUNDED},
        "payments.view_refund",
        "danger",
    ),
    _Source(
        "notifications_failed",
        "Failed notifications",
        "SMS or emails that could not be sent (failed, or refused by the provider).",
        lambda: Notification.objects.filter(status__in=UNDELIVERABLE),
        "admin:notifications_notification_changelist",
        {"status__in": ",".join(UNDELIVERABLE)},
        "notifications.view_notification",
    ),
    _Source(
        "tasks_failed",
        "Failed background tasks (24 h)",
        "Worker tasks that raised an error in the last 24 hours.",
        _failed_tasks,
        "admin:django_q_failure_changelist",
        {},
        "django_q.view_failure",
    ),
    MISSING_FROM_STATEMENT,
    OPEN_EXCEPTIONS,
)


def attention_items(user) -> list[AttentionItem]:
    """The items this user may see (their view permission), each with its count and filtered list."""
    items = []
    for source in SOURCES:
        if not user.has_perm(source.permission):
            continue
        url = reverse(source.changelist)
        if source.query:
            url = f"{url}?{urlencode(source.query)}"
        items.append(
            AttentionItem(
                key=source.key,
                label=source.label,
                help=source.help,
                count=source.rows().count(),
                url=url,
                permission=source.permission,
                severity=source.severity,
            )
        )
    return items
