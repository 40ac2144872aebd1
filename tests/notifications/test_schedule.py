"""The retry sweeper's schedule exists after migrate, once, and an operator's pause survives migrate."""

import pytest
from django_q.models import Schedule

from notifications.apps import SWEEPER_SCHEDULE, ensure_schedules

pytestmark = pytest.mark.django_db


def test_sweeper_runs_every_minute_after_migrate():
    schedule = Schedule.objects.get(name=SWEEPER_SCHEDULE)

    assert schedule.func == "notifications.tasks.notification_sweep_task"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1
    assert schedule.repeats == -1


def test_creating_it_again_is_harmless_and_keeps_a_pause():
    Schedule.objects.filter(name=SWEEPER_SCHEDULE).update(repeats=0, func="something.else")

    ensure_schedules()
    ensure_schedules()

    schedule = Schedule.objects.get(name=SWEEPER_SCHEDULE)
    assert Schedule.objects.filter(name=SWEEPER_SCHEDULE).count() == 1
    assert schedule.func == "notifications.tasks.notification_sweep_task"
    assert schedule.repeats == 0


def test_sweeper_task_runs():
    from notifications.tasks import notification_sweep_task

    assert notification_sweep_task() == {"due": 0, "recovered": 0}
