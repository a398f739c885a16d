from typing import Any

from django.core.management.base import BaseCommand

from audit.checkpoints import audit_checkpoint_write


class Command(BaseCommand):
    help = "Seal the audit chain's head now into the checkpoint sink (beat does it on a schedule)."

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = audit_checkpoint_write()
        if checkpoint is None:
            self.stdout.write("the trail is empty: nothing to seal")
        else:
            self.stdout.write(
                f"sealed event {checkpoint.sequence} ({checkpoint.hash[:16]}...) in {checkpoint.file}"
            )
