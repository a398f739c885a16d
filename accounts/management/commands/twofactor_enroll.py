from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from accounts.services import two_factor_enroll


class Command(BaseCommand):
    help = "Enrol a TOTP authenticator for a user and print its otpauth:// URL once (scan it as a QR code)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user called {options['username']!r}.")
        url = two_factor_enroll(user=user, actor=None)
        self.stdout.write("Add this to an authenticator app; it is shown once:\n" + url)
