from typing import Any

from django.core.management.base import BaseCommand

from audit.checkpoints import key_id, public_key_base64, public_key_pem, signing_key


class Command(BaseCommand):
    help = (
        "Print the audit signing key's public half: its id, the base64 form that "
        "GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS takes after a rotation, and PEM for offline verification."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        public = signing_key().public_key()
        self.stdout.write(
            f"key id: {key_id(public)}\nbase64: {public_key_base64(public)}\n{public_key_pem()}"
        )
