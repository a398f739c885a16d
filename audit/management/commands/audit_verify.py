import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import VerificationRun
from audit.verification import audit_verify_run


class Command(BaseCommand):
    help = (
        "Verify the audit trail: every hash link, the signed checkpoints in the sink, and the "
        "personal details against their digests. Exits 1 and names the first broken link if any. "
        "Each run is recorded, for /metrics and the alerts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
        parser.add_argument(
            "--skip-personal", action="store_true", help="check links and checkpoints only (faster)"
        )
        parser.add_argument(
            "--no-seal",
            action="store_true",
            help="check the trail as it stands, without first linking what is pending into the chain",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_verify_run(
            source=VerificationRun.Source.COMMAND,
            personal=not options["skip_personal"],
            seal=not options["no_seal"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"{report.events} events up to #{report.head_sequence} checked in {report.seconds:.2f} s "
                f"({report.events_per_second:,.0f}/s); {report.checkpoints_checked} checkpoints "
                f"(key {report.public_key_id})"
            )
            if report.first_break:
                self.stdout.write(f"first broken link: {report.first_break.reason}")
            for problem in report.checkpoint_problems:
                self.stdout.write(f"checkpoint: {problem.reason}")
            for problem in report.personal_problems:
                self.stdout.write(f"event {problem.sequence}: {problem.reason}")
            if report.personal_problem_count > len(report.personal_problems):
                self.stdout.write(f"... {report.personal_problem_count} personal-detail problems in all")
            for problem in report.tampered_pending:
                self.stdout.write(f"tampered: {problem.reason}")
            if report.tampered_pending_count > len(report.tampered_pending):
                self.stdout.write(f"... {report.tampered_pending_count} tampered unsealed rows in all")
            if report.pending_events:
                self.stdout.write(
                    f"{report.pending_events} events not sealed yet "
                    f"(the oldest waiting {report.pending_oldest_seconds:.1f} s)"
                )
        if not report.ok:
            raise CommandError("the audit trail does not verify", returncode=1)
        if not options["json"]:
            self.stdout.write(self.style.SUCCESS("the audit trail verifies"))
