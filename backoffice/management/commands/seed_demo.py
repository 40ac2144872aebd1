"""Demo data for the embedded default: staff logins (one per role), a catalogue, a storefront API token."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from backoffice import roles
from backoffice.demo_history import HistoryWriter, history_present
from backoffice.demo_statement import statement_history
from backoffice.models import ApiScope
from backoffice.services import api_token_issue
from orders.models import Product
from reports.periods import NAIROBI

PRODUCTS = [
    ("DEMO-001", "Test item", "A one-shilling-scale item for trying payments.", Decimal("10.00")),
    ("TEA-500", "Kericho Gold tea 500 g", "Loose black tea.", Decimal("450.00")),
    ("COF-250", "AA coffee beans 250 g", "Nyeri AA, medium roast.", Decimal("1200.00")),
    ("HONEY-1", "Baringo honey 1 kg", "Raw honey.", Decimal("950.00")),
    ("KIKOY-1", "Cotton kikoy", "Hand-woven, 1.5 m.", Decimal("1850.50")),
]
# (username = password, role group or None for the superuser, what the login is for)
STAFF = [
    ("admin", None, "Superuser: users, roles, API tokens, settings, and everything else"),
    ("viewer", roles.VIEWER, "Viewer: reads payments, orders, refunds, the dashboard; phones masked"),
    ("operator", roles.OPERATOR, "Operator: Viewer plus ask M-Pesa, new prompt, resend, cash collected"),
    ("manager", roles.MANAGER, "Manager: Operator plus refunds, reviews, receipts, exports, reports"),
    ("manager2", roles.MANAGER, "Manager: the second approver of a manager's refund"),
    ("auditor", roles.AUDITOR, "Auditor: reads everything, the audit trail too; changes nothing"),
]
# The staff member the demo history's refunds and cash collections name.
HISTORY_STAFF = "manager"


class Command(BaseCommand):
    help = "Create demo logins, products and a storefront API token (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--token-file", help="Write a fresh storefront API token to this file.")
        parser.add_argument(
            "--history",
            type=int,
            default=0,
            metavar="DAYS",
            help="Also write DAYS days of business history (skipped when history is already there).",
        )
        parser.add_argument(
            "--attempts",
            type=int,
            metavar="N",
            help="Payment attempts in the history (default: 150 a day).",
        )
        parser.add_argument(
            "--seed", type=int, default=7, help="Random seed of the history (same seed, same story)."
        )
        parser.add_argument(
            "--logins-file", default="var/demo_logins.txt", help="Where to write the demo logins."
        )

    def handle(self, *args, token_file=None, logins_file=None, history=0, attempts=None, seed=7, **options):
        self.base_data(token_file=token_file, logins_file=logins_file)
        if history:
            self.history(days=history, attempts=attempts or history * 150, seed=seed)

    def history(self, *, days: int, attempts: int, seed: int) -> None:
        if days < 1 or days > 3660 or attempts < 1:
            raise CommandError("--history takes 1 to 3660 days and --attempts a positive number.")
        users = get_user_model()
        storefront = users.objects.get(username="storefront")
        if history_present(storefront):
            self.stdout.write("Demo history is already there; not adding more.")
            return
        writer = HistoryWriter(
            owner=storefront, staff=users.objects.get(username=HISTORY_STAFF), now=timezone.now(), seed=seed
        )
        interactive = self.stderr.isatty()
        with tqdm(total=attempts, unit=" attempts", disable=not interactive, file=self.stderr._out) as bar:
            counts = writer.run(days=days, attempts=attempts, progress=bar.update)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # fresh statistics, so the planner uses the report indexes
        first_day = writer.now.astimezone(NAIROBI).date() - dt.timedelta(days=days - 1)
        statement = statement_history(
            owner=storefront,
            start=dt.datetime.combine(first_day, dt.time(0), tzinfo=NAIROBI),
            end=writer.now,
        )
        self.stdout.write(
            f"Demo history: {days} days, {counts.orders:,} orders, {counts.attempts:,} payment attempts, "
            f"{counts.events:,} events, {counts.refunds:,} refunds, {statement.lines_new:,} statement lines "
            "(imported and reconciled)."
        )

    @transaction.atomic
    def base_data(self, *, token_file=None, logins_file=None):
        for sku, name, description, price in PRODUCTS:
            Product.objects.update_or_create(
                sku=sku,
                defaults={"name": name, "description": description, "price": price, "is_active": True},
            )
        # The migration made the role groups; a group deleted since is made again (edited ones are kept).
        roles.ensure_roles(Group, Permission)
        users = get_user_model()
        lines = []
        for username, role, purpose in STAFF:
            user, created = users.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created:
                user.set_password(username)
            user.is_staff = True
            user.is_superuser = role is None
            user.save()
            if role is not None:
                user.groups.add(Group.objects.get(name=role))
            lines.append(f"{username} / {username}  ({purpose})")
        # The storefront places orders and follows payments; it never refunds.
        _token, raw, _ = api_token_issue(
            username="storefront", name="demo storefront", scopes=[ApiScope.ORDERS]
        )
        users.objects.filter(username="storefront").update(email="customer@example.com")
        if token_file:
            path = Path(token_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(raw + "\n")
            path.chmod(0o600)
        if logins_file:
            path = Path(logins_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
        self.stdout.write(f"Demo catalogue: {len(PRODUCTS)} products (product 1 costs KES 10.00).")
        self.stdout.write("Demo logins (change them before exposing this anywhere):")
        for line in lines:
            self.stdout.write(f"  {line}")
        self.stdout.write(f"Storefront API token for user 'storefront': {raw}")
