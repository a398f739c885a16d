from typing import Any

from django.core.management.base import BaseCommand

from inference.services import demo_model_ensure


class Command(BaseCommand):
    help = "Build the demo model offline (SPEC §7), record its manifest, register and promote demo-tiny."

    def handle(self, *args: Any, **options: Any) -> None:
        version = demo_model_ensure()
        self.stdout.write(f"{version} is in production ({len(version.manifest)} files verified by SHA-256).")
