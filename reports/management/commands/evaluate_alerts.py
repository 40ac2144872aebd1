"""Evaluate every alert rule now, as the minute's schedule does (for trying rules, and as a cron fallback
when no django-q2 cluster runs: the cluster cannot tell you it has stopped)."""

from django.core.management.base import BaseCommand

from reports.alerts.selectors import active_alerts
from reports.alerts.services import alert_evaluate_all


class Command(BaseCommand):
    help = "Evaluate every alert rule now: open, remind, clear and resolve alerts, and queue their messages."

    def handle(self, *args, **options):
        done = alert_evaluate_all()
        summary = ", ".join(f"{what} {count}" for what, count in sorted(done.items())) or "nothing to do"
        self.stdout.write(f"Alert rules evaluated: {summary}.")
        for alert in active_alerts():
            self.stdout.write(
                f"  #{alert.pk} [{alert.get_status_display()}] {alert.rule.name}: {alert.title}"
            )
