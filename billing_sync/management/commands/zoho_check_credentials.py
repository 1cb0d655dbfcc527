"""Check the Zoho settings end to end and say exactly what is wrong."""

from __future__ import annotations

from typing import Any

from billing_sync.management.base import EXIT_OK, EXIT_SETUP, Ending, ZohoCommand
from billing_sync.management.printing import Printer
from billing_sync.operations.credentials import zoho_credentials_check


class Command(ZohoCommand):
    help = (
        "Check every Zoho setting, refresh an access token and make one read, saying what "
        "is wrong (missing setting, wrong data center, bad secret, wrong organization). "
        "Never prints a secret."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        printer = Printer(self.stdout, self.style)
        if not self.as_json:
            printer.banner("dry", "ZOHO Billing Credentials Check")
        lines = zoho_credentials_check()
        failures = sum(line.failed for line in lines)
        if not self.as_json:
            for line in lines:
                printer.mark({True: "ok", False: "fail", None: "warn"}[line.ok], line.text)
            printer.rule()
            if not failures:
                printer.mark("ok", "Zoho credentials work.")
        self.end(
            Ending(
                EXIT_SETUP if failures else EXIT_OK,
                f"{failures} problem(s) with the Zoho settings.",
                [line.text for line in lines if line.failed],
                values={"checks": [{"ok": line.ok, "text": line.text} for line in lines]},
            )
        )
