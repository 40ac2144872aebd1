"""`manage.py send_report --frequency daily|weekly|monthly [--date YYYY-MM-DD] [--to EMAIL ...]
[--format csv|xlsx|both]`: build and email one report now (for trying it, and for cron users)."""

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from reports.models import Frequency, ReportFormat, RunStatus, RunTrigger
from reports.periods import nairobi_today
from reports.permissions import can_see_figures
from reports.report_periods import report_period
from reports.report_services import report_send


def figures_staff_emails() -> list[str]:
    """Active staff who may see the figures and have an address: who gets it without --to."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="").order_by("pk")
    return list(dict.fromkeys(user.email for user in users if can_see_figures(user)))


class Command(BaseCommand):
    help = (
        "Email the report of the last complete day, week (Monday-Sunday) or month before --date "
        "(default: today in Africa/Nairobi) now."
    )

    def add_arguments(self, parser):
        parser.add_argument("--frequency", required=True, choices=Frequency.values)
        parser.add_argument(
            "--date",
            type=dt.date.fromisoformat,
            help="The report covers the period ending before this Nairobi date (YYYY-MM-DD; default today).",
        )
        parser.add_argument(
            "--to",
            nargs="+",
            metavar="EMAIL",
            help="Recipients (default: active staff with an address who may view payments).",
        )
        parser.add_argument(
            "--format", dest="file_format", choices=ReportFormat.values, default=ReportFormat.BOTH
        )

    def handle(self, *args, frequency, date=None, to=None, file_format=ReportFormat.BOTH, **options):
        period = report_period(frequency, before=date or nairobi_today())
        recipients = to or figures_staff_emails()
        if not recipients:
            raise CommandError(
                "Nobody to send it to: give --to EMAIL, or give a staff user an email address."
            )
        interactive = self.stderr.isatty()
        bars = []

        def progress_factory(name: str, total: int):
            bar = tqdm(total=total, unit=" rows", desc=name, disable=not interactive, file=self.stderr._out)
            bars.append(bar)
            return bar.update

        try:
            run = report_send(
                period=period,
                frequency=frequency,
                to=recipients,
                file_format=file_format,
                trigger=RunTrigger.COMMAND,
                progress_factory=progress_factory,
            )
        finally:
            for bar in bars:
                bar.close()
        if run.status != RunStatus.SENT:
            raise CommandError(f"The report for {period.label} was not sent: {run.error}")
        files = ", ".join(
            f"{item['name']} ({item['rows']:,} rows, {'linked' if item['stored'] else 'attached'})"
            for item in run.attachments
        )
        self.stdout.write(f"Report for {period.label} sent to {len(recipients)} recipient(s): {files}.")
