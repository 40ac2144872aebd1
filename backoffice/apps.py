from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def ensure_staff_roles(sender, **kwargs) -> None:
    """A role missing after `migrate` or `flush` (deleted by mistake, or a database emptied by `flush`) is
    created again with its default permissions. Existing roles, edited or not, are left as they are."""
    from django.contrib.auth.models import Group, Permission

    from backoffice.roles import ensure_roles

    ensure_roles(Group, Permission)


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from backoffice import checks  # noqa: F401
        from backoffice.audit_tracking import track_edits

        track_edits()
        # post_migrate is sent app by app, in INSTALLED_APPS order, and auth creates each app's permissions
        # on it (its receiver was connected first). The roles need every app's permissions: they are ensured
        # on the signal of the last app with models, after auth's receiver made that app's permissions.
        last = [config for config in apps.get_app_configs() if config.models_module is not None][-1]
        post_migrate.connect(ensure_staff_roles, sender=last, dispatch_uid="backoffice.roles")
