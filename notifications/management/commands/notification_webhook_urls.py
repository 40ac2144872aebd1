"""Print the URLs to register with the providers (the SMS one carries the secret path token)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from notifications.channels.email import mailer_name
from notifications.hooks import sms_delivery_report_url


class Command(BaseCommand):
    help = "Print the delivery-report URL for Africa's Talking and the tracking URL for the email service."

    def handle(self, *args, **options):
        self.stdout.write(f"Africa's Talking delivery reports: {sms_delivery_report_url()}")
        esp = mailer_name()
        if esp in ("console", "locmem", "smtp", "test"):
            self.stdout.write(f"Email tracking: none ({esp} mailer).")
            return
        auth = "USER:PASSWORD@" if settings.ANYMAIL.get("WEBHOOK_SECRET") else ""
        base = settings.SITE_BASE_URL.replace("://", f"://{auth}", 1)
        self.stdout.write(f"Email tracking ({esp}): {base}/anymail/{esp}/tracking/")
        if not auth:
            self.stdout.write(
                self.style.WARNING("Set ANYMAIL_WEBHOOK_SECRET so the tracking URL needs a password.")
            )
