"""The payments app's django-q2 schedules, created or repaired on every `migrate` (post_migrate)."""

from common.schedules import ScheduleSpec, schedule_ensure

PAYMENT_SCHEDULES = (
    ScheduleSpec("payments-status-sweeper", "payments.tasks.reconcile_payments", 1),
    ScheduleSpec("payments-inbox-sweeper", "payments.tasks.reprocess_inbox", 1),
    ScheduleSpec("payments-refund-sweeper", "payments.tasks.reconcile_refunds", 1),
)


def ensure_payment_schedules(sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate receiver of the payments app."""
    for spec in PAYMENT_SCHEDULES:
        schedule_ensure(spec, using=using)
