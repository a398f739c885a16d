import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.sealer import DEFAULT_SEAL_INTERVAL, audit_seal_interval, audit_seal_tick
from audit.sealing import audit_seal_pending


class Command(BaseCommand):
    help = (
        "Link the audit events written so far into the hash chain now (every process that writes "
        "does it on its own, every GATEHOUSE_AUDIT_SEAL_INTERVAL seconds). With --loop, keep "
        "sealing on that interval: a sealer of its own, for deployments that turn the "
        "per-process one off."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep sealing until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["loop"]:
            interval = audit_seal_interval() or DEFAULT_SEAL_INTERVAL
            self.stdout.write(f"sealing every {interval:g} s; stop with Ctrl-C or SIGTERM")
            while True:
                audit_seal_tick()
                time.sleep(interval)
        outcome = audit_seal_pending()
        self.stdout.write(
            f"sealed {outcome.sealed} events; the chain's head is event {outcome.head_sequence}"
            + (
                f"; REFUSED {len(outcome.refused)} tampered rows (ids {outcome.refused})"
                if outcome.refused
                else ""
            )
        )
