"""Ship the default message templates (English and Swahili) and switch every event and channel on."""

from django.db import migrations

from notifications.defaults import DEFAULT_EMAIL, DEFAULT_RULES, DEFAULT_SMS


def seed(apps, schema_editor):
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    NotificationRule = apps.get_model("notifications", "NotificationRule")
    for (event, language), body in DEFAULT_SMS.items():
        MessageTemplate.objects.get_or_create(
            event=event, channel="sms", language=language, defaults={"body": body}
        )
    for (event, language), (subject, body) in DEFAULT_EMAIL.items():
        MessageTemplate.objects.get_or_create(
            event=event, channel="email", language=language, defaults={"subject": subject, "body": body}
        )
    for event, channel in DEFAULT_RULES:
        NotificationRule.objects.get_or_create(event=event, channel=channel, defaults={"enabled": True})


def unseed(apps, schema_editor):
    apps.get_model("notifications", "MessageTemplate").objects.all().delete()
    apps.get_model("notifications", "NotificationRule").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
