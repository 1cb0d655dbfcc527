"""Check, as the runbook did by hand, that every customer is in Zoho exactly once."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.core.management.base import CommandParser

from billing_sync.management.base import EXIT_FAILED, ZohoCommand, add_max_wait_argument
from billing_sync.management.printing import Printer
from billing_sync.services.verify import VerifyReport, zoho_verify


class Command(ZohoCommand):
    help = (
        "Verify the sync: local status summary, customers without a Zoho id, and against "
        "Zoho: total, local ids Zoho does not know, duplicate customers, and drift (fields "
        "Zoho holds otherwise than we do). --deep also reads every Zoho customer to check "
        "account numbers; --fix sends our values, relinks and creates what it can, then checks "
        "again. Exits non-zero while any problem remains."
    )

    echoed_options = ("deep",)

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--deep",
            action="store_true",
            help="Also read each Zoho customer (one request each, paced) to check that every "
            "account number is present exactly once.",
        )
        parser.add_argument(
            "--fix",
            action="store_true",
            help="Repair what our data decides: send our values to drifted customers and to "
            "those lacking our account number, relink customers whose account number Zoho "
            "holds (with --deep), create those Zoho lacks; then check again.",
        )
        add_max_wait_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        printer = Printer(self.stdout, self.style)
        if not self.as_json:
            printer.banner("dry", "ZOHO Billing Verification")
        report = zoho_verify(deep=options["deep"], fix=options["fix"], max_wait=options["max_wait"])
        exit_code = EXIT_FAILED if report.problems else 0
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
        self._section(p, "Customers whose Zoho record differs from ours", report.drift)
        if report.deep:
            self._section(p, "Account numbers missing or wrong in Zoho", report.missing_accounts)
        else:
            p.line("Account numbers in Zoho: not read (use --deep: one request per customer)")
        if report.fix_run is not None:
            run = report.fix_run
            p.line(
                f"Fixed: {report.relinked} relinked; sync run #{run.run.pk}: {run.synced_count} "
                f"synced ({run.updated_count} sent our values), {run.failed_count} failed"
            )

    def _section(self, p: Printer, title: str, rows: list[Any]) -> None:
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
        "duplicates": [
            {**asdict(duplicate), "text": str(duplicate)} for duplicate in report.duplicates
        ],
        "missing_accounts": (
            [
                {
                    "account_number": wrong.account_number,
                    "zoho_customer_id": wrong.zoho_customer_id,
                    "zoho_account_number": wrong.carried,
                    "text": str(wrong),
                }
                for wrong in report.missing_accounts
            ]
            if report.deep
            else None
        ),
        "drift": [{**asdict(drift), "text": str(drift)} for drift in report.drift],
        "relinkable": ([asdict(relink) for relink in report.relinkable] if report.deep else None),
        "fix": _fix_document(report),
    }


def _fix_document(report: VerifyReport) -> dict[str, Any] | None:
    run = report.fix_run
    if run is None:
        return None
    return {
        "relinked": report.relinked,
        "run_id": run.run.pk,
        "synced": run.synced_count,
        "updated": run.updated_count,
        "failed": run.failed_count,
    }


def verify_problems(report: VerifyReport) -> list[str]:
    """One sentence per kind of problem found."""
    counted = [
        (len(report.without_zoho_id), "customer(s) without a Zoho id"),
        (len(report.unknown_ids), "local Zoho id(s) unknown to Zoho"),
        (len(report.duplicates), "duplicate(s) in Zoho"),
        (len(report.missing_accounts), "account number(s) missing or wrong in Zoho"),
        (len(report.drift), "customer(s) whose Zoho record differs from ours"),
    ]
    return [f"{count} {what}" for count, what in counted if count]
