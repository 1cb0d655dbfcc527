"""Create the django-q schedules: the sync, and the import from the company's database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from billing_sync.management.base import Ending, ZohoCommand
from billing_sync.operations.schedules import schedules_ensure, schedules_list


class Command(ZohoCommand):
    help = (
        "Create or update, by name, the schedule that keeps Zoho in step (the sync service, "
        "every ZOHO_SYNC_EVERY_MINUTES: creates what Zoho lacks, retries what failed, pushes "
        "local edits) and, with a source database (CUSTOMER_SOURCE_URL and "
        "CUSTOMER_SOURCE_QUERY), customers-import (import_customers --source, as often); "
        "running it twice leaves the same set. A worker (manage.py qcluster) runs them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--list", action="store_true", help="Only show the schedules and their next run."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["list"]:
            schedules_ensure()
            if not self.as_json:
                self.stdout.write(self.style.SUCCESS("Schedules are in place:"))
        schedules = schedules_list()
        missing = [] if schedules else ["No Zoho schedules yet: run `manage.py zoho_schedule`."]
        if not self.as_json:
            for problem in missing:
                self.stdout.write(problem)
            for schedule in schedules:
                next_run = timezone.localtime(schedule.next_run).strftime("%Y-%m-%d %H:%M:%S %Z")
                self.stdout.write(
                    f"  {schedule.name}: {schedule.func} every {schedule.minutes} minute(s), "
                    f"next run {next_run}"
                )
        self.end(
            Ending(
                problems=missing,
                values={
                    "ensured": not options["list"],
                    "schedules": [
                        {
                            "name": schedule.name,
                            "func": schedule.func,
                            "minutes": schedule.minutes,
                            "next_run": schedule.next_run,
                        }
                        for schedule in schedules
                    ],
                },
            )
        )
