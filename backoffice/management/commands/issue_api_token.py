from django.core.management.base import BaseCommand, CommandError

from backoffice.exceptions import ApiTokenInvalid
from backoffice.models import ApiScope
from backoffice.services import api_token_issue


class Command(BaseCommand):
    help = (
        "Create an API token for a user (the user is created if needed). Prints only the token: it is "
        "stored hashed and never shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            metavar="SCOPE",
            help=(
                "What the token may do; repeat for several. "
                + "; ".join(f"{scope.value}: {scope.label}" for scope in ApiScope)
                + f". Default: {ApiScope.ORDERS.value}."
            ),
        )
        parser.add_argument(
            "--expires-days", type=int, help="The token stops working after this many days (default: never)."
        )
        parser.add_argument("--name", default="", help="A label to recognise the token by.")
        parser.add_argument(
            "--staff", action="store_true", help="Make a newly created user staff (sees all orders)."
        )

    def handle(self, *args, username, scopes, expires_days, name, staff, **options):
        try:
            token, raw, created = api_token_issue(
                username=username,
                name=name,
                staff=staff,
                scopes=scopes or [ApiScope.ORDERS],
                expires_days=expires_days,
                issued_by="manage.py issue_api_token",
            )
        except ApiTokenInvalid as exc:
            raise CommandError(exc.message) from exc
        if created:
            self.stderr.write(f"Created user {username!r}.")
        self.stdout.write(raw)
