"""The staff roles (backoffice.roles): created once here, then edited by superusers in the admin."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from backoffice.roles import ensure_roles


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations ran; the roles need them now.
    for app_config in apps.get_app_configs():
        original = getattr(app_config, "models_module", None)
        app_config.models_module = True  # create_permissions skips apps without models
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = original
    # Statement reconciliation came later: 0005 grants its permissions.
    ensure_roles(
        apps.get_model("auth", "Group"),
        apps.get_model("auth", "Permission"),
        leave_out=frozenset({"statements"}),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("backoffice", "0003_apitoken_scopes_expires_at"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("audit", "0002_immutable"),
        ("exports", "0001_initial"),
        ("orders", "0005_alter_customer_options"),
        ("payments", "0007_alert_indexes"),
        ("notifications", "0003_alert_events"),
        ("reports", "0002_alerts"),
    ]
    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
