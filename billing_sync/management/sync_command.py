"""What the backfill and retry commands share: options, error handling, exit codes."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_sync.management.printing import Printer, RunPrinter
from billing_sync.models import SyncTrigger
from billing_sync.services.run_report import RunReport
from billing_sync.zoho.errors import ZohoConfigError

EXIT_FAILED_CUSTOMERS = 1
EXIT_BAD_CONFIG = 2


def non_negative_seconds(value: str) -> float:
    """argparse type for --max-wait."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return seconds


def positive_int(value: str) -> int:
    """argparse type for --limit."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


class SyncCommand(BaseCommand):
    """Base for commands that run the sync service and print the runbook's report."""

    trigger = SyncTrigger.COMMAND
    title = ""
    noun = ""
    verb = ""
    action = ""
    results_heading = ""
    success_message = ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List what would be synced and check the data; send nothing to Zoho.",
        )
        parser.add_argument(
            "--max-wait",
            type=non_negative_seconds,
            default=None,
            metavar="SECONDS",
            help="Longest total wait for a Zoho rate-limit block to end before stopping "
            "(default: ZOHO_MAX_WAIT_SECONDS; 0 stops at the first block).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        printer = RunPrinter(
            Printer(self.stdout, self.style),
            title=self.title,
            noun=self.noun,
            verb=self.verb,
            action=self.action,
            dry_run=options["dry_run"],
        )
        printer.header()
        try:
            report = self.run_service(options, printer)
        except ZohoConfigError as exc:
            raise CommandError(str(exc), returncode=EXIT_BAD_CONFIG) from exc
        if options["dry_run"] or not report.selected_count:
            return
        printer.results(report, heading=self.results_heading)
        if report.stop_needs_setup:
            raise CommandError(
                f"Zoho refused this set-up: fix what the run says above, then rerun "
                f"(run #{report.run.pk}).",
                returncode=EXIT_BAD_CONFIG,
            )
        if not report.ok:
            raise CommandError(
                f"{report.failed_count + report.waiting_count} customer(s) not synced "
                f"(run #{report.run.pk}).",
                returncode=EXIT_FAILED_CUSTOMERS,
            )
        printer.p.mark("ok", self.success_message)

    def run_service(self, options: dict[str, Any], printer: RunPrinter) -> RunReport:
        """Call the sync service for this command."""
        raise NotImplementedError
