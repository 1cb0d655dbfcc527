"""Sync every customer that belongs in Zoho Billing and has no Zoho id yet."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from billing_sync.management.sync_command import SyncCommand, positive_int
from billing_sync.services.run_report import RunObserver, RunReport
from billing_sync.services.runs import customers_backfill


class Command(SyncCommand):
    help = (
        "Create or adopt a Zoho Billing customer for every customer without a Zoho id "
        "(internal_test accounts and those needing attention are left alone). Paced under "
        "the Zoho budget; exits non-zero when any customer is left unsynced."
    )
    title = "ZOHO Billing Customer Backfill"
    noun = "unsynced"
    verb = "Syncing"
    action = "sync"
    results_heading = "Backfill Results"
    success_message = "All selected customers successfully synced!"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--limit",
            type=positive_int,
            default=None,
            metavar="N",
            help="Sync at most N customers (oldest first).",
        )

    def run_service(self, options: dict[str, Any], observer: RunObserver) -> RunReport:
        return customers_backfill(
            trigger=self.trigger,
            dry_run=options["dry_run"],
            limit=options["limit"],
            max_wait=options["max_wait"],
            observer=observer,
        )
