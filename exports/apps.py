from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from exports.schedules import ensure_export_schedules

        post_migrate.connect(ensure_export_schedules, sender=self, dispatch_uid="exports.schedules")
