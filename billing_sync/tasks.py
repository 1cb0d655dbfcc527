"""django-q tasks: thin wrappers around the sync service, enqueued by dotted path.

Scheduled and queued runs wait out a Zoho block of up to ZOHO_SCHEDULE_MAX_WAIT_SECONDS in
all (a concurrency block lasts seconds). A task that finds a longer block does nothing and says
until when; one that meets a longer block mid-run stops, and the customers stay for the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from billing_sync.imports.customer_import import ImportObserver, ImportOptions, import_summary
from billing_sync.imports.source import customers_import_source
from billing_sync.models import SyncTrigger
from billing_sync.operations.alerts import alerts_check
from billing_sync.operations.queueing import customers_task_started
from billing_sync.run.report import RunReport
from billing_sync.run.runs import customer_sync, customers_sync, customers_sync_selected
from billing_sync.times import in_utc
from billing_sync.zoho.state import current_block


def sync_customer_task(customer_id: int, trigger: str = SyncTrigger.EDIT) -> str:
    """Sync one customer: queued by its saved edit (operations/queueing.py)."""
    customers_task_started([customer_id])
    return _unless_blocked(
        lambda max_wait: customer_sync(
            customer_id=customer_id, trigger=SyncTrigger(trigger), max_wait=max_wait
        )
    )


def sync_selected_task(customer_ids: list[int], trigger: str = SyncTrigger.ADMIN) -> str:
    """Sync a selection of customers in one run: re-queued by a person from the admin, or
    edited together (an update(), a transaction: operations/queueing.py)."""
    customers_task_started(customer_ids)
    return _unless_blocked(
        lambda max_wait: customers_sync_selected(
            customer_ids=customer_ids, trigger=SyncTrigger(trigger), max_wait=max_wait
        )
    )


def sync_task() -> str:
    """Keep Zoho in step (scheduled): create what it lacks, retry what failed, push edits."""
    return _unless_blocked(
        lambda max_wait: customers_sync(
            trigger=SyncTrigger.SCHEDULE, max_wait=max_wait, limit=settings.ZOHO_SCHEDULE_BATCH_SIZE
        )
    )


def _unless_blocked(run: Callable[[float], RunReport]) -> str:
    """Run the sync and summarise it, or do nothing while Zoho blocks us for longer than we wait.

    A shorter block is waited out by the run itself (its pacing gate), within `max_wait`.
    """
    max_wait = settings.ZOHO_SCHEDULE_MAX_WAIT_SECONDS
    until = current_block()
    if until is not None and until > timezone.now() + timedelta(seconds=max_wait):
        alerts_check()
        return (
            f"Zoho is blocking requests until {in_utc(until)}, longer than "
            f"a scheduled run waits ({max_wait:g} s): nothing done"
        )
    return _summary(run(max_wait))


def _summary(report: RunReport) -> str:
    text = (
        f"run #{report.run.pk}: {report.selected_count} selected, {report.synced_count} synced, "
        f"{report.failed_count} failed, {report.skipped_count} skipped"
    )
    if report.updated_count:
        text += f", {report.updated_count} of the synced with edits sent to Zoho"
    if report.waiting_count:
        text += f", {report.waiting_count} waiting for an earlier create to settle in Zoho"
    if report.stop_reason:
        text += f"; stopped: {report.stop_reason}"
    if report.run.writeback_error:
        text += f"; {report.run.writeback_error}"
    elif report.run.writeback_count is not None:
        text += f"; {report.run.writeback_count} row(s) written back"
    return text


def import_task() -> str:
    """Import the company's database (scheduled as customers-import) and write back to it."""
    record = customers_import_source(
        options=ImportOptions(trigger=SyncTrigger.SCHEDULE), observer=ImportObserver()
    )
    return import_summary(record)
