"""`manage.py spend_alerts`: raise the spend alerts due now (Celery beat does it every minute
in production; without beat, run this from cron)."""

from typing import Any

from django.core.management.base import BaseCommand

from spend.alerts import spend_alerts_check


class Command(BaseCommand):
    help = "Raise the spend alerts due now (budgets at 80% and 100%, team spikes) and send them."

    def handle(self, *args: Any, **options: Any) -> None:
        raised = spend_alerts_check()
        self.stdout.write(f"{len(raised)} alert(s) raised")
