from django.apps import AppConfig
from django.db.models.signals import post_migrate

SWEEPER_SCHEDULE = "notifications-sweeper"


def ensure_schedules(sender=None, using="default", **kwargs) -> None:
    """The retry sweeper runs every minute; created or repaired on every migrate, never by hand.
    A schedule paused in the admin (repeats = 0) stays paused."""
    from django.utils import timezone
    from django_q.models import Schedule

    fixed = {
        "func": "notifications.tasks.notification_sweep_task",
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
    }
    Schedule.objects.using(using).update_or_create(
        name=SWEEPER_SCHEDULE,
        defaults=fixed,
        create_defaults={**fixed, "repeats": -1, "next_run": timezone.now()},
    )


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from anymail.signals import tracking

        from notifications import receivers  # noqa: F401
        from notifications.tracking import on_email_tracking

        tracking.connect(on_email_tracking, dispatch_uid="notifications.email_tracking")
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="notifications.schedules")
