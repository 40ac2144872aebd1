from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from backoffice import checks  # noqa: F401
        from backoffice.audit_tracking import track_edits

        track_edits()
