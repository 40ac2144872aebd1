"""django-q2 schedules created or repaired by code (a post_migrate receiver), never by hand.

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


def schedule_ensure(spec: ScheduleSpec, *, using: str = "default"):
    from django_q.models import Schedule

    fixed = {"func": spec.func, "schedule_type": Schedule.MINUTES, "minutes": spec.minutes}
    schedule, _created = Schedule.objects.using(using).update_or_create(
        name=spec.name,
        defaults=fixed,
        create_defaults={**fixed, "repeats": -1, "next_run": timezone.now()},
    )
    return schedule
