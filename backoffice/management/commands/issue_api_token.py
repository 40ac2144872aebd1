from django.core.management.base import BaseCommand

from backoffice.services import api_token_issue


class Command(BaseCommand):
    help = "Create an API token for a user (the user is created if needed). Prints only the token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label to recognise the token by.")
        parser.add_argument(
            "--staff", action="store_true", help="Make a newly created user staff (sees all orders)."
        )

    def handle(self, *args, username, name, staff, **options):
        token, raw, created = api_token_issue(username=username, name=name, staff=staff)
        if created:
            self.stderr.write(f"Created user {username!r}.")
        self.stdout.write(raw)
