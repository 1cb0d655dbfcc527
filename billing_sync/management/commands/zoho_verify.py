"""Check, as the runbook did by hand, that every customer is in Zoho exactly once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.core.management.base import CommandParser

from billing_sync.management.base import (
    EXIT_FAILED,
    EXIT_OK,
    Ending,
    ZohoCommand,
    add_max_wait_argument,
)
from billing_sync.management.printing import Printer
from billing_sync.operations.verify import VerifyReport, WrongAccount, zoho_verify


@dataclass(frozen=True)
class Finding:
    """A kind of problem verify finds: the report's list of them, its heading, what one is
    called in `problems`, and one of them as JSON (as text: its str)."""

    name: str
    heading: str
    problem: str
    as_json: Callable[[Any], dict[str, Any]] = asdict

    def rows(self, report: VerifyReport) -> list[Any]:
        return getattr(report, self.name)


def _with_text(row: Any) -> dict[str, Any]:
    return asdict(row) | {"text": str(row)}


def _wrong_account(wrong: WrongAccount) -> dict[str, Any]:
    return {
        "account_number": wrong.account_number,
        "zoho_customer_id": wrong.zoho_customer_id,
        "zoho_account_number": wrong.carried,
        "text": str(wrong),
    }


# In the order they are shown; missing_accounts needs --deep.
FINDINGS = (
    Finding("without_zoho_id", "Customers without a Zoho id", "customer(s) without a Zoho id"),
    Finding("unknown_ids", "Local Zoho ids unknown to Zoho", "local Zoho id(s) unknown to Zoho"),
    Finding("duplicates", "Duplicate customers in Zoho", "duplicate(s) in Zoho", _with_text),
    Finding(
        "drift",
        "Customers whose Zoho record differs from ours",
        "customer(s) whose Zoho record differs from ours",
        _with_text,
    ),
    Finding(
        "missing_accounts",
        "Account numbers missing or wrong in Zoho",
        "account number(s) missing or wrong in Zoho",
        _wrong_account,
    ),
)


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
        findings = [f for f in FINDINGS if report.deep or f.name != "missing_accounts"]
        if not self.as_json:
            _print(printer, report, findings)
        problems = [f"{len(f.rows(report))} {f.problem}" for f in findings if f.rows(report)]
        self.end(
            Ending(
                EXIT_FAILED if problems else EXIT_OK,
                f"{report.problems} problem(s) found.",
                problems,
                values=_document(report, findings),
            )
        )


def _print(p: Printer, report: VerifyReport, findings: list[Finding]) -> None:
    p.line("Local status summary (customers that belong in Zoho):")
    p.line("  zoho_sync_status | count")
    for status, count in report.status_counts:
        p.line(f"  {status:<16} | {count}")
    for finding in findings:
        if finding.name == "unknown_ids":  # what Zoho holds, before what it lacks
            read = f"read in {report.zoho_requests} request(s)"
            p.line(f"Zoho customers: {report.zoho_total} ({read})")
            if report.unlinked_zoho_count:
                p.line(f"  of which not linked to a local customer: {report.unlinked_zoho_count}")
        rows = finding.rows(report)
        p.mark("fail" if rows else "ok", f"{finding.heading}: {len(rows)}")
        for row in rows:
            p.line(f"    {row}")
    if not report.deep:
        p.line("Account numbers in Zoho: not read (use --deep: one request per customer)")
    if report.fix_run is not None:
        run = report.fix_run
        p.line(
            f"Fixed: {report.relinked} relinked; sync run #{run.run.pk}: {run.synced_count} "
            f"synced ({run.updated_count} sent our values), {run.failed_count} failed"
        )
    p.rule()
    if not report.problems:
        p.mark("ok", "All checks passed.")


def _document(report: VerifyReport, findings: list[Finding]) -> dict[str, Any]:
    """The report's findings as JSON values: one object per row."""
    fix = report.fix_run
    return {
        "deep": report.deep,
        "status_counts": [{"status": s, "count": n} for s, n in report.status_counts],
        "zoho": {
            "total": report.zoho_total,
            "requests": report.zoho_requests,
            "unlinked": report.unlinked_zoho_count,
        },
        **{f.name: [f.as_json(row) for row in f.rows(report)] for f in findings},
        "relinkable": [asdict(relink) for relink in report.relinkable] if report.deep else None,
        "fix": None
        if fix is None
        else {
            "relinked": report.relinked,
            "run_id": fix.run.pk,
            "synced": fix.synced_count,
            "updated": fix.updated_count,
            "failed": fix.failed_count,
        },
    }
