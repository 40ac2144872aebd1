from django.conf import settings
from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # The database cache (embedded default) holds the shared Daraja token: create its table with the schema.
    if schema_editor.connection.alias == "default" and "DatabaseCache" in settings.CACHES["default"]["BACKEND"]:
        call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("backoffice", "0001_initial")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
