"""django-q tasks: thin wrappers around the sync service, enqueued by dotted path.

Scheduled and queued runs never wait for a Zoho block: a task that finds Zoho blocking does
nothing, and the customers stay for the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

from django.conf import settings

from billing_sync.models import SyncTrigger
from billing_sync.services.sync import (
    RunReport,
    customer_sync,
    customers_backfill,
    customers_retry_failed,
)
from billing_sync.zoho.pacing import current_block


def sync_customer_task(customer_id: int) -> str:
    """Sync one customer (queued by a person from the admin)."""
    return _unless_blocked(
        lambda: customer_sync(customer_id=customer_id, trigger=SyncTrigger.ADMIN, max_wait=0)
    )


def retry_failed_task() -> str:
    """Retry failed customers (scheduled)."""
    return _unless_blocked(
        lambda: customers_retry_failed(
            trigger=SyncTrigger.SCHEDULE, max_wait=0, limit=settings.ZOHO_SCHEDULE_BATCH_SIZE
        )
    )


def backfill_task() -> str:
    """Sync customers that are not in Zoho yet (scheduled)."""
    return _unless_blocked(
        lambda: customers_backfill(
            trigger=SyncTrigger.SCHEDULE, max_wait=0, limit=settings.ZOHO_SCHEDULE_BATCH_SIZE
        )
    )


def _unless_blocked(run: Callable[[], RunReport]) -> str:
    """Run the sync and summarise it, or do nothing while Zoho is blocking us."""
    until = current_block()
    if until is not None:
        return f"Zoho is blocking requests until {until.astimezone(UTC):%H:%M:%S} UTC: nothing done"
    return _summary(run())


def _summary(report: RunReport) -> str:
    text = (
        f"run #{report.run.pk}: {report.selected_count} selected, {report.synced_count} synced, "
        f"{report.failed_count} failed, {report.skipped_count} skipped"
    )
    if report.stop_reason:
        text += f"; stopped: {report.stop_reason}"
    return text
