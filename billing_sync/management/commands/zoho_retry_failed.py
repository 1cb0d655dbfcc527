"""Retry every customer whose last Zoho sync failed."""

from __future__ import annotations

from billing_sync.management.sync_command import SyncCommand
from billing_sync.models import SyncRunKind
from billing_sync.run.runs import customers_retry_failed


class Command(SyncCommand):
    help = (
        "Retry the customers whose last Zoho sync failed (rate limits, errors, stopped runs). "
        "Waits out a Zoho block up to --max-wait; exits non-zero when any stay failed."
    )
    kind = SyncRunKind.RETRY_FAILED
    service = staticmethod(customers_retry_failed)
