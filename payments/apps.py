from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from payments.schedules import ensure_payment_schedules

        post_migrate.connect(ensure_payment_schedules, sender=self, dispatch_uid="payments.schedules")
