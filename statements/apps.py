from django.apps import AppConfig
from django.db.models.signals import post_migrate


class StatementsConfig(AppConfig):
    name = "statements"
    verbose_name = "Statement reconciliation"

    def ready(self) -> None:
        from statements.schedules import ensure_statement_schedules

        post_migrate.connect(ensure_statement_schedules, sender=self, dispatch_uid="statements.schedules")
