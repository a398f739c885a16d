"""`manage.py bootstrap`: roles, the platform admin and the demo model. Idempotent."""

import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import admin_ensure, role_groups_ensure
from inference.services import demo_embed_model_ensure, demo_model_ensure


class Command(BaseCommand):
    help = (
        "Seed roles, create the platform admin (GATEHOUSE_ADMIN_USERNAME / GATEHOUSE_ADMIN_PASSWORD, "
        "else a generated password printed once) and register the demo model."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--print-urls", action="store_true", help="Print where the console, docs and chat are."
        )
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        role_groups_ensure()
        username = os.environ.get("GATEHOUSE_ADMIN_USERNAME") or "admin"
        try:
            admin = admin_ensure(
                username=username, password=os.environ.get("GATEHOUSE_ADMIN_PASSWORD") or None
            )
        except ValidationError as weak:
            raise CommandError(" ".join(weak.messages)) from weak
        if admin.generated_password:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin '{username}' with password: {admin.generated_password}\n"
                    "It is shown this once and stored only as a hash; "
                    f"change it with `manage.py changepassword {username}`."
                )
            )
        elif admin.created:
            self.stdout.write(f"Created admin '{username}' with the password from GATEHOUSE_ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Admin '{username}' already exists; its password is unchanged.")
        version = demo_model_ensure()
        self.stdout.write(f"Demo model {version} is in production.")
        embed_version = demo_embed_model_ensure()
        self.stdout.write(f"Demo embedding model {embed_version} is in production.")
        if options["print_urls"]:
            base = options["base_url"].rstrip("/")
            ws_base = base.replace("http", "ws", 1)
            self.stdout.write(
                "\nGatehouse is starting:\n"
                f"  console   {base}/admin/\n"
                f"  API docs  {base}/api/docs/\n"
                f"  chat      {ws_base}/ws/chat/\n"
                f"            (Authorization: Bearer <access token from POST {base}/api/auth/token/>)\n"
            )
