from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReportsConfig(AppConfig):
    name = "reports"

    def ready(self) -> None:
        from reports.alerts.schedules import ensure_alert_schedules

        post_migrate.connect(ensure_alert_schedules, sender=self, dispatch_uid="reports.alert_schedules")
