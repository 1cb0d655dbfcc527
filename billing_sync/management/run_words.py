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


# fmt: off
# One row a kind of run: title, noun, doing, verb; results_heading, success_message.
RUN_WORDS = {
    SyncRunKind.BACKFILL: RunWords(
        "ZOHO Billing Customer Backfill", "unsynced", "Syncing", "sync",
        "Backfill Results", "All selected customers successfully synced!"),
    SyncRunKind.RETRY_FAILED: RunWords(
        "ZOHO Billing Failed Customer Retry", "failed", "Retrying", "retry",
        "Retry Results", "All failed customers successfully synced!"),
    SyncRunKind.SYNC: RunWords(
        "ZOHO Billing Customer Sync", "new or edited", "Syncing", "sync",
        "Sync Results", "Zoho is in step with every selected customer!"),
}
# fmt: on
# A dry run's bar: it checks, it sends nothing.
CHECKING = "Checking"
