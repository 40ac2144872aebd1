"""Daraja Pull Transactions by hand: register the shortcode once, or pull the last hours now."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payments.daraja.client import get_client
from payments.daraja.errors import DarajaError
from statements.pull import MAX_WINDOW_HOURS, statement_pull


class Command(BaseCommand):
    help = (
        "Pull the last hours of C2B transactions from Daraja into the statement store and reconcile them "
        "(what the schedule does every MPESA_PULL_INTERVAL_MINUTES), or --register the shortcode once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--hours",
            type=int,
            help=f"Hours back from now (default MPESA_PULL_LOOKBACK_HOURS; at most {MAX_WINDOW_HOURS}).",
        )
        parser.add_argument(
            "--register",
            action="store_true",
            help="Register MPESA_SHORTCODE for Pull Transactions (once), with MPESA_PULL_NOMINATED_NUMBER.",
        )
        parser.add_argument(
            "--callback-url",
            help="The CallBackURL Daraja asks for when registering (default: MPESA_CALLBACK_BASE_URL).",
        )

    def handle(self, *args, hours=None, register=False, callback_url=None, **options):
        if register:
            self._register(callback_url or settings.MPESA_CALLBACK_BASE_URL)
            return
        if not settings.MPESA_PULL_TRANSACTIONS_ENABLED:
            raise CommandError("Pull Transactions is off: set MPESA_PULL_TRANSACTIONS_ENABLED=true.")
        if hours is not None and not 1 <= hours <= MAX_WINDOW_HOURS:
            raise CommandError(f"--hours takes 1 to {MAX_WINDOW_HOURS}.")
        counts = statement_pull(hours=hours)
        self.stdout.write(json.dumps(counts, sort_keys=True, default=str))
        if counts.get("errors"):
            raise CommandError("Daraja did not answer every page: nothing was stored (see the log).")

    def _register(self, callback_url: str) -> None:
        if not settings.MPESA_PULL_NOMINATED_NUMBER:
            raise CommandError("Set MPESA_PULL_NOMINATED_NUMBER (the number registered with the shortcode).")
        try:
            answer = get_client().pull_transactions_register(callback_url=callback_url)
        except DarajaError as exc:
            raise CommandError(f"Daraja refused the registration: {exc}") from exc
        self.stdout.write(
            f"{settings.MPESA_SHORTCODE}: {answer.get('Response Description', '')} "
            f"({answer.get('Response Status', '')})"
        )
