"""The exports app's django-q2 schedule, created or repaired on every `migrate` (post_migrate)."""

from common.schedules import ScheduleSpec, schedule_ensure

EXPORT_SCHEDULES = (ScheduleSpec("exports-expiry", "exports.tasks.expire_exports", 10),)


def ensure_export_schedules(sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate receiver of the exports app."""
    for spec in EXPORT_SCHEDULES:
        schedule_ensure(spec, using=using)
