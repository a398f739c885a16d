"""`manage.py encryption_status`: master keys, data keys, and what each data key still seals."""

from typing import Any

from django.core.management.base import BaseCommand

from encryption.selectors import encryption_status


class Command(BaseCommand):
    help = "Show the master keys configured, the data keys stored, and how many rows and files each seals."

    def handle(self, *args: Any, **options: Any) -> None:
        status = encryption_status()
        self.stdout.write(
            f"master keys: {', '.join(status.master_keys)} (primary {status.primary_master_key})"
        )
        unused = [key for key in status.master_keys if key not in status.master_keys_in_use]
        if unused and len(status.master_keys) > 1:
            self.stdout.write(
                f"no data key needs: {', '.join(k for k in unused if k != status.primary_master_key) or '-'}"
            )
        for key in status.data_keys:
            state = f"retired {key.retired_at:%Y-%m-%d %H:%M}" if key.retired_at else "current"
            self.stdout.write(
                f"data key {key.id}: {state}, created {key.created_at:%Y-%m-%d %H:%M}, wrapped under "
                f"{key.master_key_id}; seals {key.rows} rows and {key.files} files"
            )
        if status.plain_rows or status.plain_files:
            self.stdout.write(
                self.style.WARNING(
                    f"not encrypted: {status.plain_rows} rows and {status.plain_files} files "
                    "(`manage.py encryption_rotate --no-new-data-key --wait` encrypts them)"
                )
            )
