from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def ensure_staff_roles(sender, using="default", **kwargs) -> None:
    """A role missing after `migrate` or `flush` (deleted by mistake, or a database emptied by `flush`) is
    created again with its default permissions. Existing roles, edited or not, are left as they are."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    from backoffice.roles import ensure_roles

    # post_migrate runs app by app; the roles need every app's permissions, not only those made so far.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    ensure_roles(Group, Permission)


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from backoffice import checks  # noqa: F401
        from backoffice.audit_tracking import track_edits

        track_edits()
        post_migrate.connect(ensure_staff_roles, sender=self, dispatch_uid="backoffice.roles")
