"""Keep Zoho Billing in step: create the customers it lacks, send it the edits of the others."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from billing_sync.management.printing import RunPrinter
from billing_sync.management.sync_command import SyncCommand, positive_int
from billing_sync.services.run_report import RunReport
from billing_sync.services.runs import customers_sync


class Command(SyncCommand):
    help = (
        "Keep Zoho Billing in step with the customer table: create (or adopt) every customer "
        "without a Zoho id, as the backfill does, and send Zoho the fields we own of every "
        "customer edited here since Zoho last accepted them (one request each; an unchanged "
        "table costs none). Paced under the Zoho budget; exits non-zero when any is left "
        "unsynced."
    )
    title = "ZOHO Billing Customer Sync"
    noun = "new or edited"
    verb = "Syncing"
    action = "sync"
    results_heading = "Sync Results"
    success_message = "Zoho is in step with every selected customer!"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--limit",
            type=positive_int,
            default=None,
            metavar="N",
            help="Sync at most N customers (oldest first).",
        )

    def run_service(self, options: dict[str, Any], printer: RunPrinter) -> RunReport:
        return customers_sync(
            trigger=self.trigger,
            dry_run=options["dry_run"],
            limit=options["limit"],
            max_wait=options["max_wait"],
            observer=printer,
        )
