"""Retry every customer whose last Zoho sync failed."""

from __future__ import annotations

from typing import Any

from billing_sync.management.sync_command import SyncCommand
from billing_sync.services.run_report import RunObserver, RunReport
from billing_sync.services.runs import customers_retry_failed


class Command(SyncCommand):
    help = (
        "Retry the customers whose last Zoho sync failed (rate limits, errors, stopped runs). "
        "Waits out a Zoho block up to --max-wait; exits non-zero when any stay failed."
    )
    title = "ZOHO Billing Failed Customer Retry"
    noun = "failed"
    verb = "Retrying"
    action = "retry"
    results_heading = "Retry Results"
    success_message = "All failed customers successfully synced!"

    def run_service(self, options: dict[str, Any], observer: RunObserver) -> RunReport:
        return customers_retry_failed(
            trigger=self.trigger,
            dry_run=options["dry_run"],
            max_wait=options["max_wait"],
            observer=observer,
        )
