"""A run command's words, one row per kind of run: how its report names the run and its
customers (the backfill, the retry and the sync share everything else)."""

from __future__ import annotations

from dataclasses import dataclass

from billing_sync.models import SyncRunKind


@dataclass(frozen=True)
class RunWords:
    """How a run's report names it."""

    title: str  # the banner
    noun: str  # its customers: "Found 3 unsynced customer(s):"
    doing: str  # leads each customer's block ("[1/3] Syncing: ...") and labels the bar
    verb: str  # "DRY RUN: Would sync these customers", "Starting sync..."
    results_heading: str  # over the totals
    success_message: str  # when every customer ended synced


RUN_WORDS = {
    SyncRunKind.BACKFILL: RunWords(
        title="ZOHO Billing Customer Backfill",
        noun="unsynced",
        doing="Syncing",
        verb="sync",
        results_heading="Backfill Results",
        success_message="All selected customers successfully synced!",
    ),
    SyncRunKind.RETRY_FAILED: RunWords(
        title="ZOHO Billing Failed Customer Retry",
        noun="failed",
        doing="Retrying",
        verb="retry",
        results_heading="Retry Results",
        success_message="All failed customers successfully synced!",
    ),
    SyncRunKind.SYNC: RunWords(
        title="ZOHO Billing Customer Sync",
        noun="new or edited",
        doing="Syncing",
        verb="sync",
        results_heading="Sync Results",
        success_message="Zoho is in step with every selected customer!",
    ),
}
# A dry run's bar: it checks, it sends nothing.
CHECKING = "Checking"
