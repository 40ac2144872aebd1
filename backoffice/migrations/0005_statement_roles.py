"""The roles' permissions in statement reconciliation (backoffice.roles), added to the existing groups."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from backoffice.roles import roles_grant_app


def grant(apps, schema_editor):
    app_config = apps.get_app_config("statements")
    original = getattr(app_config, "models_module", None)
    app_config.models_module = True  # create_permissions skips apps without models
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = original
    roles_grant_app(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), "statements")


class Migration(migrations.Migration):
    dependencies = [
        ("backoffice", "0004_roles"),
        ("statements", "0001_initial"),
    ]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
