"""`manage.py encryption_rotate`: start a new data key; the background pass moves content to it."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from encryption import tasks
from encryption.services import data_key_rotate, encryption_maintain


class Command(BaseCommand):
    help = (
        "Start a new data key for encryption at rest, then re-encrypt what older keys sealed: in the "
        "background (queued for a worker), or here with --wait. After putting a new master key first "
        "in GATEHOUSE_ENCRYPTION_KEYS, run it without --new-data-key to re-wrap and re-encrypt at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-new-data-key",
            dest="new_data_key",
            action="store_false",
            help="Do not start a new data key; only re-wrap and re-encrypt what is due.",
        )
        parser.add_argument("--wait", action="store_true", help="Re-encrypt here and print what was done.")

    def handle(self, *args: Any, new_data_key: bool, wait: bool, **options: Any) -> None:
        if new_data_key:
            key = data_key_rotate()
            self.stdout.write(f"data key {key.pk} is now current (wrapped under {key.master_key_id}).")
        if wait:
            self.stdout.write(json.dumps(encryption_maintain(full_pass=True), indent=2, sort_keys=True))
        else:
            tasks.encryption_maintain.delay()
            self.stdout.write("re-encryption queued; `manage.py encryption_status` shows its progress.")
