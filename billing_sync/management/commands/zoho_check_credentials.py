"""Check the Zoho settings end to end and say exactly what is wrong."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing_sync.management.printing import Printer
from billing_sync.management.sync_command import EXIT_BAD_CONFIG
from billing_sync.services.credentials import zoho_credentials_check


class Command(BaseCommand):
    help = (
        "Check every Zoho setting, refresh an access token and make one read, saying what "
        "is wrong (missing setting, wrong data center, bad secret, wrong organization). "
        "Never prints a secret."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        printer = Printer(self.stdout, self.style)
        printer.banner("dry", "ZOHO Billing Credentials Check")
        lines = zoho_credentials_check()
        for line in lines:
            printer.mark({True: "ok", False: "fail", None: "warn"}[line.ok], line.text)
        printer.rule()
        failures = sum(line.failed for line in lines)
        if failures:
            raise CommandError(
                f"{failures} problem(s) with the Zoho settings.", returncode=EXIT_BAD_CONFIG
            )
        printer.mark("ok", "Zoho credentials work.")
