import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payments.simulator import ledger, statement
from payments.simulator.ids import nairobi_now
from payments.simulator.validation import MAX_AMOUNT_KES, MIN_AMOUNT_KES, MSISDN_RE


def _date(text: str) -> dt.date:
    """YYYY-MM-DD, or `today` / `yesterday` (Nairobi)."""
    named = {"today": 0, "yesterday": 1}
    if text.strip().lower() in named:
        return nairobi_now().date() - dt.timedelta(days=named[text.strip().lower()])
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"Not a date (YYYY-MM-DD, today or yesterday): {text!r}") from None


def _paybill(text: str) -> tuple[str, int, str]:
    phone, _, rest = text.partition(":")
    amount_text, _, account = rest.partition(":")
    if not MSISDN_RE.match(phone):
        raise CommandError(f"--paybill: the phone must be 2547XXXXXXXX or 2541XXXXXXXX, not {phone!r}.")
    if not amount_text.isdigit() or not MIN_AMOUNT_KES <= int(amount_text) <= MAX_AMOUNT_KES:
        raise CommandError(
            f"--paybill: the amount must be whole shillings, {MIN_AMOUNT_KES} to {MAX_AMOUNT_KES:,}."
        )
    if len(account) > 20:
        raise CommandError("--paybill: the account number has at most 20 characters.")
    return phone, int(amount_text), account


class Command(BaseCommand):
    help = (
        "Write the Daraja simulator's account statement (M-PESA org portal layout) for one or more days. "
        "Only with MPESA_ENVIRONMENT=simulator."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--date", help="First day, YYYY-MM-DD, today or yesterday (default: today, Nairobi)."
        )
        parser.add_argument("--to", help="Last day, YYYY-MM-DD, today or yesterday (default: --date).")
        parser.add_argument("--format", choices=statement.FORMATS, default="csv", dest="file_format")
        parser.add_argument(
            "--output", help="File to write (default: statement-<shortcode>-<date>.<format> here)."
        )
        parser.add_argument("--shortcode", help="Whose statement (default: MPESA_SHORTCODE).")
        parser.add_argument(
            "--paybill",
            action="append",
            default=[],
            metavar="PHONE:AMOUNT[:ACCOUNT]",
            help=(
                "First record a customer paying the paybill from the M-PESA menu (not through the shop): "
                "a fresh receipt, now. Repeat for several."
            ),
        )

    def handle(self, *args, date, to, file_format, output, shortcode, paybill, **options):
        if settings.MPESA_ENVIRONMENT != "simulator":
            raise CommandError("simulator_statement works only with MPESA_ENVIRONMENT=simulator.")
        first = _date(date) if date else nairobi_now().date()
        last = _date(to) if to else first
        if last < first:
            raise CommandError("--to is before --date.")
        shortcode = shortcode or str(settings.MPESA_SHORTCODE)
        payments = [_paybill(text) for text in paybill]
        for phone, amount_kes, account in payments:
            entry = ledger.pay_bill(phone=phone, amount_kes=amount_kes, account=account, shortcode=shortcode)
            self.stdout.write(f"Pay Bill payment {entry['receipt']}: KES {entry['paid_in']}")
        path = Path(output or f"statement-{shortcode}-{first.isoformat()}.{file_format}")
        lines = statement.statement_write(
            path, shortcode=shortcode, first=first, last=last, file_format=file_format
        )
        self.stdout.write(f"{path} ({lines} line{'s' if lines != 1 else ''})")
