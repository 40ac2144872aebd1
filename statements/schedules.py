"""The statements app's django-q2 schedule, created, repaired or removed on every `migrate` (post_migrate)."""

from django.conf import settings

from common.schedules import ScheduleSpec, schedule_ensure

PULL_SCHEDULE = "statements-pull-transactions"


def statement_schedules() -> tuple[ScheduleSpec, ...]:
    # Read at call time: the interval and the switch are settings.
    return (
        ScheduleSpec(
            PULL_SCHEDULE, "statements.tasks.pull_statement_task", settings.MPESA_PULL_INTERVAL_MINUTES
        ),
    )


def ensure_statement_schedules(sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate receiver of the statements app: the pull runs only while it is enabled."""
    if settings.MPESA_PULL_TRANSACTIONS_ENABLED:
        for spec in statement_schedules():
            schedule_ensure(spec, using=using)
        return
    from django_q.models import Schedule

    Schedule.objects.using(using).filter(name=PULL_SCHEDULE).delete()
