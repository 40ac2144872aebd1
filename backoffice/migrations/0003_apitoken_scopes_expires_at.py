from django.conf import settings
from django.db import migrations, models
from django.db.models import Q

import backoffice.models

# Before scopes, any staff token could call the refund endpoints, and the user's permission decided.
REFUND_PERMISSIONS = ("add_refund", "view_refund")


def scopes_for_existing_tokens(apps, schema_editor):
    """Nothing breaks on upgrade: every token keeps the storefront's `orders`; tokens of staff who may
    request or see refunds also get `refunds`. No token gets an expiry."""
    db = schema_editor.connection.alias
    api_token = apps.get_model("backoffice", "ApiToken")
    permission = apps.get_model("auth", "Permission")
    user = apps.get_model(settings.AUTH_USER_MODEL)
    api_token.objects.using(db).update(scopes=["orders"])
    refund_permissions = permission.objects.using(db).filter(
        content_type__app_label="payments", codename__in=REFUND_PERMISSIONS
    )
    refunders = user.objects.using(db).filter(
        Q(is_superuser=True)
        | Q(user_permissions__in=refund_permissions)
        | Q(groups__permissions__in=refund_permissions),
        is_staff=True,
    )
    api_token.objects.using(db).filter(user__in=refunders.values("pk")).update(scopes=["orders", "refunds"])


class Migration(migrations.Migration):
    dependencies = [
        ("backoffice", "0002_cache_table"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(blank=True, help_text="Empty: never expires.", null=True),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="scopes",
            field=models.JSONField(
                default=list,
                help_text="What the token may do.",
                validators=[backoffice.models.validate_scopes],
            ),
        ),
        migrations.RunPython(scopes_for_existing_tokens, migrations.RunPython.noop),
    ]
