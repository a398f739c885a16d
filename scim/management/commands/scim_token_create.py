from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from scim.services import scim_token_create


class Command(BaseCommand):
    help = "Make a SCIM token for an identity provider's provisioning and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the token is for (okta, entra-id, ...).")
        parser.add_argument("--by", metavar="USERNAME", help="The admin making it, for the audit trail.")

    def handle(self, *args: Any, **options: Any) -> None:
        created_by = None
        if options["by"]:
            created_by = User.objects.filter(username=options["by"]).first()
            if created_by is None:
                raise CommandError(f"No user called {options['by']!r}.")
        try:
            token, raw = scim_token_create(name=options["name"], created_by=created_by)
        except ValidationError as refused:
            raise CommandError(" ".join(refused.messages)) from None
        self.stdout.write(
            f"SCIM token {token.name!r}, shown only this once; give it to the identity provider "
            f"as the bearer token for /scim/v2:\n{raw}"
        )
