"""Check, as the runbook did by hand, that every customer is in Zoho exactly once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_sync.management.printing import Printer
from billing_sync.management.sync_command import (
    EXIT_BAD_CONFIG,
    EXIT_FAILED_CUSTOMERS,
    non_negative_seconds,
)
from billing_sync.services.verify import VerifyReport, zoho_verify
from billing_sync.zoho.errors import ZohoConfigError, ZohoError


class Command(BaseCommand):
    help = (
        "Verify the sync: local status summary, customers without a Zoho id, and against "
        "Zoho: total, local ids Zoho does not know, duplicate customers. --deep also reads "
        "every Zoho customer to check account numbers. Exits non-zero on any problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--deep",
            action="store_true",
            help="Also read each Zoho customer (one request each, paced) to check that every "
            "account number is present exactly once.",
        )
        parser.add_argument(
            "--max-wait",
            type=non_negative_seconds,
            default=None,
            metavar="SECONDS",
            help="Longest wait for a Zoho rate-limit block (default: ZOHO_MAX_WAIT_SECONDS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        printer = Printer(self.stdout, self.style)
        printer.banner("dry", "ZOHO Billing Verification")
        try:
            report = zoho_verify(deep=options["deep"], max_wait=options["max_wait"])
        except ZohoConfigError as exc:
            raise CommandError(str(exc), returncode=EXIT_BAD_CONFIG) from exc
        except ZohoError as exc:
            raise CommandError(f"Could not read Zoho: {exc}") from exc
        self._print(printer, report)
        printer.rule()
        if report.problems:
            raise CommandError(
                f"{report.problems} problem(s) found.", returncode=EXIT_FAILED_CUSTOMERS
            )
        printer.mark("ok", "All checks passed.")

    def _print(self, p: Printer, report: VerifyReport) -> None:
        p.line("Local status summary (customers that belong in Zoho):")
        p.line("  zoho_sync_status | count")
        for status, count in report.status_counts:
            p.line(f"  {status:<16} | {count}")
        self._section(
            p,
            "Customers without a Zoho id",
            [
                f"{email} - {account} ({status})"
                for email, account, status in report.without_zoho_id
            ],
        )
        p.line(f"Zoho customers: {report.zoho_total} (read in {report.zoho_requests} request(s))")
        if report.unlinked_zoho_count:
            p.line(f"  of which not linked to a local customer: {report.unlinked_zoho_count}")
        self._section(
            p,
            "Local Zoho ids unknown to Zoho",
            [f"{account}: {zoho_id}" for account, zoho_id in report.unknown_ids],
        )
        self._section(p, "Duplicate customers in Zoho", report.duplicates)
        if report.deep:
            self._section(p, "Account numbers missing or wrong in Zoho", report.missing_accounts)
        else:
            p.line("Account numbers in Zoho: not read (use --deep: one request per customer)")

    def _section(self, p: Printer, title: str, rows: list[str]) -> None:
        marker = "fail" if rows else "ok"
        p.mark(marker, f"{title}: {len(rows)}")
        for row in rows:
            p.line(f"    {row}")
