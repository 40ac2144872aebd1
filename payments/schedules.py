"""The payments app's django-q2 schedules, created or repaired on every `migrate` (post_migrate), never by hand.

`schedule_ensure` is idempotent (update_or_create on the unique name). It sets what the code depends on
(function, interval) and leaves what operators may change in the admin alone: a schedule paused there
(repeats = 0) stays paused.
"""

from dataclasses import dataclass

from django.utils import timezone


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    minutes: int


PAYMENT_SCHEDULES = (
    ScheduleSpec("payments-status-sweeper", "payments.tasks.reconcile_payments", 1),
    ScheduleSpec("payments-inbox-sweeper", "payments.tasks.reprocess_inbox", 1),
    ScheduleSpec("payments-refund-sweeper", "payments.tasks.reconcile_refunds", 1),
)


def schedule_ensure(spec: ScheduleSpec, *, using: str = "default"):
    from django_q.models import Schedule

    schedule, _created = Schedule.objects.using(using).update_or_create(
        name=spec.name,
        defaults={"func": spec.func, "schedule_type": Schedule.MINUTES, "minutes": spec.minutes},
        create_defaults={
            "func": spec.func,
            "schedule_type": Schedule.MINUTES,
            "minutes": spec.minutes,
            "repeats": -1,
            "next_run": timezone.now(),
        },
    )
    return schedule


def ensure_payment_schedules(sender=None, using: str = "default", **kwargs) -> None:
    """post_migrate receiver of the payments app."""
    for spec in PAYMENT_SCHEDULES:
        schedule_ensure(spec, using=using)
