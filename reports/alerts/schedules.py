"""The alert evaluation's django-q2 schedule, created or repaired on every `migrate` (post_migrate)."""

from common.schedules import ScheduleSpec, schedule_ensure

ALERT_SCHEDULES = (ScheduleSpec("reports-alerts", "reports.alerts.tasks.evaluate_alerts", 1),)


def ensure_alert_schedules(sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate receiver of the reports app (alerts only; report subscriptions keep their own)."""
    for spec in ALERT_SCHEDULES:
        schedule_ensure(spec, using=using)
