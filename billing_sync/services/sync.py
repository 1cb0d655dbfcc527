"""Sync runs: the one idempotent, audited path every entry point uses.

A run selects customers, reads them a chunk at a time in a fixed order, has a CustomerSyncer
(services/syncer.py) claim them a group at a time and sync each, and records itself as a
SyncRun with counts. Customers whose earlier create has not settled in Zoho yet wait until the
end of the run, and are looked for then if the run may wait that long (`max_wait`). A run that
must stop (a Zoho block longer than it may wait, refused credentials, an organization that
refuses us, bad settings) leaves what it had not finished `failed` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncAttempt,
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
    AccountNumberNotKept,
    CustomerResult,
    CustomerSyncer,
    customer_result,
    new_attempt,
    released_columns,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig, zoho_config
from billing_sync.zoho.errors import ZohoConfigError

# Customers read from the database at a time.
CHUNK_SIZE = 200


class RunObserver:
    """Hears about a run's progress (commands print it); every hook is optional."""

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        """The run has selected its customers (`run.selected_count`); `customers` streams them."""

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        """Work on one customer begins."""

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        """Work on one customer ended."""

    def block_wait(self, until: datetime, reason: str) -> None:
        """Zoho is blocking us; the run waits until `until`."""

    def customer_waiting(self, index: int, total: int, customer: Customer, until: datetime) -> None:
        """An earlier create of this customer may still be settling in Zoho until `until`:
        the run comes back to it at its end."""

    def settle_wait(self, until: datetime) -> None:
        """The run waits until `until` for the customer's earlier create to settle."""


class ResultCollector(RunObserver):
    """Keeps every customer's result: for runs over a few customers (an admin selection)."""

    def __init__(self) -> None:
        self.results: list[CustomerResult] = []

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        self.results.append(result)


@dataclass
class RunReport:
    """What a run did, for the entry point to show: counts only, so any size of run fits."""

    run: SyncRun
    selected_count: int
    finished_count: int = 0
    synced_count: int = 0
    skipped_count: int = 0
    # Customers that ended failed, counting those a stopped run never reached.
    failed_count: int = 0
    unreached_count: int = 0
    # Left for a later run: an earlier create may still be settling in Zoho.
    waiting_count: int = 0
    stop_reason: str = ""
    # Whether the stop needs a person to change a setting or the organization (exit 2).
    stop_needs_setup: bool = False
    duration_seconds: float = 0.0

    def add(self, result: CustomerResult) -> None:
        """Count one customer's result."""
        self.finished_count += 1
        self.synced_count += result.synced
        self.failed_count += result.failed
        self.waiting_count += result.waiting
        self.skipped_count += result.outcome == AttemptOutcome.SKIPPED

    @property
    def attempted_count(self) -> int:
        """Customers the run worked on or left failed unreached, less those it skipped or left
        waiting."""
        return self.finished_count + self.unreached_count - self.skipped_count - self.waiting_count

    @property
    def ok(self) -> bool:
        """True when every customer worked on ended synced or was skipped on purpose."""
        return not self.stop_reason and self.failed_count == 0 and self.waiting_count == 0


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


def customers_preview(
    *, customer_ids: list[int], trigger: str, observer: RunObserver | None = None
) -> RunReport:
    """What re-queueing these customers would do: checks their data, sends nothing."""
    config = zoho_config()
    selection = Q(pk__in=customer_ids) & requeue_q(config.stale_claim_seconds)
    return _run(
        SyncRunKind.SELECTED, selection, config, trigger=trigger, dry_run=True, observer=observer
    )


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
    selected = RunSelection.take(customers_syncable().filter(selection), limit)
    run = SyncRun.objects.create(
        kind=kind, trigger=trigger, dry_run=dry_run, selected_count=selected.count
    )
    report = RunReport(run=run, selected_count=selected.count)
    observer.run_started(run, selected.customers())
    if dry_run:
        _preview(report, selected, observer)
    elif selected.count:
        _sync_all(report, selected, selection, config, max_wait, observer)
    report.duration_seconds = time.monotonic() - started
    _finish_run(report)
    return report


@dataclass(frozen=True)
class RunSelection:
    """A run's customers, read a chunk at a time in (created_at, pk) order up to a last key.

    The last key is fixed when the run starts, so customers added later wait for the next run;
    the selection is asked again for every chunk, so customers another process took meanwhile
    drop out.
    """

    queryset: QuerySet[Customer]
    count: int
    last_key: tuple[datetime, int] | None

    @classmethod
    def take(cls, queryset: QuerySet[Customer], limit: int | None) -> RunSelection:
        """The selection as it stands now, limited to its first `limit` customers."""
        count = queryset.count()
        if limit is not None:
            count = min(count, limit)
        keys = queryset.values_list("created_at", "pk")
        last = None
        if count and count == limit:
            last = keys.order_by("created_at", "pk")[limit - 1 : limit].first()
        if count and last is None:  # no limit, or another process took some since the count
            last = keys.order_by("-created_at", "-pk").first()
        return cls(queryset=queryset, count=count, last_key=last)

    def chunks(self) -> Iterator[list[Customer]]:
        """The customers in order, CHUNK_SIZE at a time (never the whole selection in memory)."""
        if self.last_key is None:
            return
        queryset = self.queryset.filter(_key_at_most(self.last_key)).order_by("created_at", "pk")
        after: tuple[datetime, int] | None = None
        while True:
            page = queryset.filter(_key_after(after)) if after else queryset
            customers = list(page[:CHUNK_SIZE])
            if not customers:
                return
            yield customers
            after = (customers[-1].created_at, customers[-1].pk)

    def customers(self) -> Iterator[Customer]:
        """The customers one by one, read lazily."""
        for chunk in self.chunks():
            yield from chunk

    def rest(self, after: Customer) -> QuerySet[Customer]:
        """The customers after `after`, up to the last key."""
        if self.last_key is None:
            return self.queryset.none()
        key = (after.created_at, after.pk)
        return self.queryset.filter(_key_after(key), _key_at_most(self.last_key))


def _key_after(key: tuple[datetime, int]) -> Q:
    created_at, pk = key
    return Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(pk__gt=pk))


def _key_at_most(key: tuple[datetime, int]) -> Q:
    created_at, pk = key
    return Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(pk__lte=pk))


def _preview(report: RunReport, selected: RunSelection, observer: RunObserver) -> None:
    """Walk the selection as a run would, checking the data; send nothing, change nothing."""
    total, index = selected.count, 0
    for chunk in selected.chunks():
        attempts = []
        for customer in chunk:
            index += 1
            observer.customer_started(index, total, customer)
            error = "; ".join(customer_validation_errors(customer))
            attempts.append(new_attempt(report.run, customer, AttemptOutcome.DRY_RUN, error=error))
            result = customer_result(customer, AttemptOutcome.DRY_RUN, error=error)
            report.add(result)
            observer.customer_finished(index, total, result)
        SyncAttempt.objects.bulk_create(attempts)


def _sync_all(
    report: RunReport,
    selected: RunSelection,
    selection: Q,
    config: ZohoConfig,
    max_wait: float | None,
    observer: RunObserver,
) -> None:
    client = ZohoClient(config, max_wait=max_wait, on_block_wait=observer.block_wait)
    finder = ZohoCustomerFinder(
        client,
        use_index=lookup_prefers_index(selected.count),
        max_age=config.index_max_age_seconds,
    )
    syncer = CustomerSyncer(run=report.run, client=client, finder=finder, config=config)
    waiting: list[tuple[int, Customer]] = []
    total, index = selected.count, 0
    current: Customer | None = None
    unreached = selected.rest  # who a stop leaves failed besides the run's claims
    try:
        syncer.recheck_account_field()
        for chunk in selected.chunks():
            for group in _groups(chunk, client.gate.lease_size):
                claimed = syncer.claim(group, selection)
                syncer.prepare_creates(group, claimed)
                for current in group:
                    index += 1
                    observer.customer_started(index, total, current)
                    result = syncer.sync(current, claimed.get(current.pk))
                    if result.waiting:
                        waiting.append((index, claimed[current.pk]))
                        until = syncer.settles_at(claimed[current.pk])
                        observer.customer_waiting(index, total, current, until)
                        continue
                    report.add(result)
                    observer.customer_finished(index, total, result)
                syncer.created.write()
        unreached = _nobody
        for index, current in waiting:
            observer.customer_started(index, total, current)
            result = _sync_once_settled(syncer, current, client, observer)
            report.add(result)
            observer.customer_finished(index, total, result)
    except RUN_STOPPERS as exc:
        syncer.drop_prepared()
        syncer.created.write()
        finished = None
        if isinstance(exc, AccountNumberNotKept):
            syncer.flag_account_number_missing(exc)
            if current is not None and exc.result.customer_id == current.pk:
                finished = exc.result
        result = _stop(report, exc, current, unreached, finished=finished)
        if result is not None:
            observer.customer_finished(index, total, result)
    finally:
        syncer.finish()
        # Reported synced when Zoho answered, then found linked elsewhere when written.
        report.synced_count -= syncer.created.unlinked
        report.failed_count += syncer.created.unlinked
        report.run.request_count = client.request_count
        client.close()


def _sync_once_settled(
    syncer: CustomerSyncer, customer: Customer, client: ZohoClient, observer: RunObserver
) -> CustomerResult:
    """Wait (within the run's max_wait) until the customer's earlier create has settled, then
    sync it; leave it for a later run when the run may not wait that long."""
    settles_at = syncer.settles_at(customer)
    if settles_at is not None and settles_at > timezone.now():
        if not client.gate.may_wait_until(settles_at):
            return syncer.leave_waiting(customer, settles_at)
        observer.settle_wait(settles_at)
        client.gate.wait_until(settles_at)
    result = syncer.sync_settled(customer)
    if result.waiting:  # its create went out again without a clear answer: no second wait
        return syncer.leave_waiting(customer, syncer.settles_at(customer))
    return result


def _groups(customers: list[Customer], size: int) -> Iterator[list[Customer]]:
    """Claimed together: about as many as the budget lets us send at once."""
    for start in range(0, len(customers), size):
        yield customers[start : start + size]


def _nobody(after: Customer) -> QuerySet[Customer]:
    return Customer.objects.none()


def _stop(
    report: RunReport,
    exc: Exception,
    current: Customer | None,
    unreached: Callable[[Customer], QuerySet[Customer]],
    *,
    finished: CustomerResult | None = None,
) -> CustomerResult | None:
    """A stopped run leaves what it had not finished failed, with the reason, for a retry.

    `current` is the customer at hand when the run stopped; `finished` its result when it
    ended before the stop (Zoho holds it), else it is left failed too. Besides the customers
    the run still holds, `unreached(current)` are those it never came to.
    """
    report.stop_reason = str(exc)
    report.stop_needs_setup = isinstance(exc, ZohoConfigError)
    changes = released_columns(SyncStatus.FAILED, report.stop_reason)
    unfinished = Q(zoho_claimed_by=report.run, zoho_sync_status=SyncStatus.SYNCING)
    result = finished
    if current is not None:
        unfinished |= Q(pk__in=unreached(current).values("pk"))
        if finished is None:
            result = customer_result(current, AttemptOutcome.FAILED, error=report.stop_reason)
            Customer.objects.filter(unfinished, pk=current.pk).update(**changes)
        report.add(result)
    left = Customer.objects.filter(unfinished)
    if current is not None:
        left = left.exclude(pk=current.pk)
    report.unreached_count = left.update(**changes)
    report.failed_count += report.unreached_count
    return result


def _finish_run(report: RunReport) -> None:
    run = report.run
    run.synced_count = report.synced_count
    run.failed_count = report.failed_count
    run.skipped_count = report.skipped_count
    run.status = SyncRunStatus.STOPPED if report.stop_reason else SyncRunStatus.COMPLETED
    run.stop_reason = report.stop_reason
    run.finished_at = timezone.now()
    run.save()
