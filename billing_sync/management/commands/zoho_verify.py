"""Check, as the runbook did by hand, that every customer is in Zoho exactly once."""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import CommandError, CommandParser

from billing_sync.management.json_output import ZohoCommand
from billing_sync.management.printing import Printer
from billing_sync.management.sync_command import (
    EXIT_BAD_CONFIG,
    EXIT_FAILED_CUSTOMERS,
    non_negative_seconds,
)
from billing_sync.services.verify import VerifyReport, zoho_verify
from billing_sync.zoho.errors import ZohoConfigError, ZohoError

# How the report words a duplicate and a wrong account number (see verify.py).
DUPLICATE = re.compile(r"^(?P<by>email|account) (?P<value>.+): \d+ Zoho customers \((?P<ids>.*)\)$")
MISSING_ACCOUNT = re.compile(
    r"^account (?P<account>.+): Zoho customer (?P<zoho_id>\S+) carries (?P<found>.+)$"
)


class Command(ZohoCommand):
    help = (
        "Verify the sync: local status summary, customers without a Zoho id, and against "
        "Zoho: total, local ids Zoho does not know, duplicate customers. --deep also reads "
        "every Zoho customer to check account numbers. Exits non-zero on any problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
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

    def empty_document(self) -> dict[str, Any]:
        return {
            "deep": bool(self.options.get("deep")),
            "status_counts": [],
            "without_zoho_id": [],
            "zoho": None,
            "unknown_ids": [],
            "duplicates": [],
            "missing_accounts": None,
        }

    def handle(self, *args: Any, **options: Any) -> None:
        printer = Printer(self.stdout, self.style)
        if not self.as_json:
            printer.banner("dry", "ZOHO Billing Verification")
        try:
            report = zoho_verify(deep=options["deep"], max_wait=options["max_wait"])
        except ZohoConfigError as exc:
            raise CommandError(str(exc), returncode=EXIT_BAD_CONFIG) from exc
        except ZohoError as exc:
            raise CommandError(f"Could not read Zoho: {exc}") from exc
        exit_code = EXIT_FAILED_CUSTOMERS if report.problems else 0
        if not self.as_json:
            self._print(printer, report)
            printer.rule()
            if not exit_code:
                printer.mark("ok", "All checks passed.")
        self.end(
            exit_code,
            f"{report.problems} problem(s) found.",
            verify_problems(report),
            **verify_document(report),
        )

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


def verify_document(report: VerifyReport) -> dict[str, Any]:
    """The report's findings as JSON values: one object per row."""
    return {
        "deep": report.deep,
        "status_counts": [
            {"status": status, "count": count} for status, count in report.status_counts
        ],
        "without_zoho_id": [
            {"email": email, "account_number": account, "status": status}
            for email, account, status in report.without_zoho_id
        ],
        "zoho": {
            "total": report.zoho_total,
            "requests": report.zoho_requests,
            "unlinked": report.unlinked_zoho_count,
        },
        "unknown_ids": [
            {"account_number": account, "zoho_customer_id": zoho_id}
            for account, zoho_id in report.unknown_ids
        ],
        "duplicates": [_duplicate(text) for text in report.duplicates],
        "missing_accounts": (
            [_missing_account(text) for text in report.missing_accounts] if report.deep else None
        ),
    }


def _duplicate(text: str) -> dict[str, Any]:
    found = DUPLICATE.match(text)
    if found is None:
        return {"by": None, "value": None, "zoho_customer_ids": [], "text": text}
    return {
        "by": "account_number" if found["by"] == "account" else "email",
        "value": found["value"],
        "zoho_customer_ids": found["ids"].split(", "),
        "text": text,
    }


def _missing_account(text: str) -> dict[str, Any]:
    found = MISSING_ACCOUNT.match(text)
    if found is None:
        return {
            "account_number": None,
            "zoho_customer_id": None,
            "zoho_account_number": None,
            "text": text,
        }
    carried = found["found"]
    return {
        "account_number": found["account"],
        "zoho_customer_id": found["zoho_id"],
        "zoho_account_number": None if carried == "none" else carried,
        "text": text,
    }


def verify_problems(report: VerifyReport) -> list[str]:
    """One sentence per kind of problem found."""
    counted = [
        (len(report.without_zoho_id), "customer(s) without a Zoho id"),
        (len(report.unknown_ids), "local Zoho id(s) unknown to Zoho"),
        (len(report.duplicates), "duplicate(s) in Zoho"),
        (len(report.missing_accounts), "account number(s) missing or wrong in Zoho"),
    ]
    return [f"{count} {what}" for count, what in counted if count]
