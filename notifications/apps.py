from django.apps import AppConfig
from django.db.models.signals import post_migrate

SWEEPER_SCHEDULE = "notifications-sweeper"


def ensure_schedules(sender=None, using="default", **kwargs) -> None:
    """The retry sweeper runs every minute; created or repaired on every migrate, never by hand."""
    from common.schedules import ScheduleSpec, schedule_ensure

    schedule_ensure(
        ScheduleSpec(SWEEPER_SCHEDULE, "notifications.tasks.notification_sweep_task", 1), using=using
    )


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from anymail.signals import tracking

        from notifications import receivers  # noqa: F401
        from notifications.tracking import on_email_tracking

        tracking.connect(on_email_tracking, dispatch_uid="notifications.email_tracking")
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="notifications.schedules")
