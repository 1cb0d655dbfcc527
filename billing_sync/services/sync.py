"""Sync runs: the one idempotent, audited path every entry point uses.

A run selects customers, hands each to a CustomerSyncer (services/syncer.py), and records
itself as a SyncRun. A run that must stop (a Zoho block longer than it may wait, refused
credentials, bad settings) leaves what it had not finished `failed` with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncRun,
    SyncRunKind,
    SyncRunStatus,
    SyncStatus,
)
from billing_sync.selectors import backfill_q, customers_syncable, requeue_q, retry_q
from billing_sync.services.customer_data import customer_validation_errors
from billing_sync.services.matching import ZohoCustomerFinder, lookup_prefers_index
from billing_sync.services.syncer import (
    RUN_STOPPERS,
    CustomerResult,
    CustomerSyncer,
    customer_result,
    record_attempt,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig, zoho_config


class RunObserver:
    """Hears about a run's progress (commands print it); every hook is optional."""

    def run_started(self, run: SyncRun, customers: list[Customer]) -> None:
        """The run has selected its customers."""

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        """Work on one customer begins."""

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        """Work on one customer ended."""

    def block_wait(self, until: datetime, reason: str) -> None:
        """Zoho is blocking us; the run waits until `until`."""


@dataclass
class RunReport:
    """What a run did, for the entry point to show."""

    run: SyncRun
    customers: list[Customer]
    results: list[CustomerResult] = field(default_factory=list)
    stop_reason: str = ""
    duration_seconds: float = 0.0

    @property
    def synced_count(self) -> int:
        return sum(r.synced for r in self.results)

    @property
    def failed_count(self) -> int:
        """Customers that ended failed, counting those a stopped run never reached."""
        unreached = len(self.customers) - len(self.results)
        return sum(r.failed for r in self.results) + unreached

    @property
    def skipped_count(self) -> int:
        return sum(r.outcome == AttemptOutcome.SKIPPED for r in self.results)

    @property
    def ok(self) -> bool:
        """True when every customer worked on ended synced or was skipped on purpose."""
        return not self.stop_reason and self.failed_count == 0


def customers_backfill(
    *,
    trigger: str,
    dry_run: bool = False,
    limit: int | None = None,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Sync every customer that belongs in Zoho and has no Zoho id yet."""
    config = zoho_config()
    return _run(
        SyncRunKind.BACKFILL,
        backfill_q(config.stale_claim_seconds),
        config,
        trigger=trigger,
        dry_run=dry_run,
        limit=limit,
        max_wait=max_wait,
        observer=observer,
    )


def customers_retry_failed(
    *,
    trigger: str,
    dry_run: bool = False,
    limit: int | None = None,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Sync again every customer whose last sync failed (or whose run died)."""
    config = zoho_config()
    return _run(
        SyncRunKind.RETRY_FAILED,
        retry_q(config.stale_claim_seconds),
        config,
        trigger=trigger,
        dry_run=dry_run,
        limit=limit,
        max_wait=max_wait,
        observer=observer,
    )


def customer_sync(
    *,
    customer_id: int,
    trigger: str,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Sync one customer, if it still needs it."""
    config = zoho_config()
    selection = Q(pk=customer_id) & backfill_q(config.stale_claim_seconds)
    return _run(
        SyncRunKind.SINGLE, selection, config, trigger=trigger, max_wait=max_wait, observer=observer
    )


def customers_preview(*, customer_ids: list[int], trigger: str) -> RunReport:
    """What re-queueing these customers would do: checks their data, sends nothing."""
    config = zoho_config()
    selection = Q(pk__in=customer_ids) & requeue_q(config.stale_claim_seconds)
    return _run(SyncRunKind.SELECTED, selection, config, trigger=trigger, dry_run=True)


def _run(
    kind: str,
    selection: Q,
    config: ZohoConfig,
    *,
    trigger: str,
    dry_run: bool = False,
    limit: int | None = None,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    observer = observer or RunObserver()
    started = time.monotonic()
    queryset = customers_syncable().filter(selection).order_by("created_at", "pk")
    customers = list(queryset[:limit] if limit else queryset)
    run = SyncRun.objects.create(
        kind=kind, trigger=trigger, dry_run=dry_run, selected_count=len(customers)
    )
    report = RunReport(run=run, customers=customers)
    observer.run_started(run, customers)
    if dry_run:
        _preview(report, observer)
    elif customers:
        _sync_all(report, selection, config, max_wait, observer)
    report.duration_seconds = time.monotonic() - started
    _finish_run(report)
    return report


def _preview(report: RunReport, observer: RunObserver) -> None:
    """Walk the selection as a run would, checking the data; send nothing, change nothing."""
    total = len(report.customers)
    for index, customer in enumerate(report.customers, 1):
        observer.customer_started(index, total, customer)
        errors = customer_validation_errors(customer)
        message = "; ".join(errors) if errors else "would sync"
        record_attempt(
            report.run, customer, AttemptOutcome.DRY_RUN, error=message if errors else ""
        )
        result = customer_result(customer, AttemptOutcome.DRY_RUN, error="; ".join(errors))
        report.results.append(result)
        observer.customer_finished(index, total, result)


def _sync_all(
    report: RunReport,
    selection: Q,
    config: ZohoConfig,
    max_wait: float | None,
    observer: RunObserver,
) -> None:
    client = ZohoClient(config, max_wait=max_wait, on_block_wait=observer.block_wait)
    finder = ZohoCustomerFinder(client, use_index=lookup_prefers_index(len(report.customers)))
    syncer = CustomerSyncer(run=report.run, client=client, finder=finder, config=config)
    total = len(report.customers)
    try:
        for index, customer in enumerate(report.customers, 1):
            observer.customer_started(index, total, customer)
            try:
                result = syncer.sync(customer, selection)
            except RUN_STOPPERS as exc:
                report.stop_reason = str(exc)
                result = customer_result(customer, AttemptOutcome.FAILED, error=report.stop_reason)
                report.results.append(result)
                observer.customer_finished(index, total, result)
                _fail_unfinished(report, report.customers[index - 1 :], selection)
                return
            report.results.append(result)
            observer.customer_finished(index, total, result)
    finally:
        report.run.request_count = client.request_count
        client.close()


def _fail_unfinished(report: RunReport, customers: list[Customer], selection: Q) -> None:
    """A stopped run leaves what it had not finished failed, with the reason, for a retry."""
    ids = [customer.pk for customer in customers]
    unfinished = Customer.objects.filter(pk__in=ids).filter(
        Q(zoho_claimed_by=report.run, zoho_sync_status=SyncStatus.SYNCING) | selection
    )
    unfinished.update(
        zoho_sync_status=SyncStatus.FAILED,
        zoho_last_error=report.stop_reason,
        zoho_claimed_at=None,
        zoho_claimed_by=None,
    )


def _finish_run(report: RunReport) -> None:
    run = report.run
    run.synced_count = report.synced_count
    run.failed_count = report.failed_count
    run.skipped_count = report.skipped_count
    run.status = SyncRunStatus.STOPPED if report.stop_reason else SyncRunStatus.COMPLETED
    run.stop_reason = report.stop_reason
    run.finished_at = timezone.now()
    run.save()
