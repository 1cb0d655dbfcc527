"""Syncing customers to Zoho: the one idempotent, audited path every entry point uses.

Per customer: claim it (so no other run works on it), validate it, adopt the Zoho customer that
already stands for it or create one, and record every attempt. A create is recorded as sent
before it goes out; while its outcome is unknown, the next attempt searches Zoho before it
creates again, so a lost answer never becomes a duplicate billing customer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
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
from billing_sync.services.customer_data import (
    account_number_field,
    customer_validation_errors,
    customer_zoho_payload,
)
from billing_sync.services.matching import ZohoCustomerFinder, lookup_prefers_index
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig, zoho_config
from billing_sync.zoho.errors import (
    RateLimitWaitExceeded,
    ZohoAuthError,
    ZohoConfigError,
    ZohoError,
    ZohoInvalidData,
    ZohoRateLimited,
    ZohoTransient,
)
from billing_sync.zoho.records import ZohoCustomer

# Failures that no other customer in the run would escape: stop the run, leave the rest failed.
RUN_STOPPERS = (RateLimitWaitExceeded, ZohoAuthError, ZohoConfigError)
MAX_BACKOFF_SECONDS = 60.0
# A create whose answer we lost is looked for only once this many timeouts have passed since
# it was sent: by then Zoho has finished it or dropped it.
UNKNOWN_OUTCOME_SETTLE_FACTOR = 2
SYNCED_OUTCOMES = {AttemptOutcome.CREATED, AttemptOutcome.ADOPTED}
FAILED_OUTCOMES = {AttemptOutcome.FAILED, AttemptOutcome.INVALID, AttemptOutcome.RATE_LIMITED}


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


@dataclass(frozen=True)
class CustomerResult:
    """How one customer ended in a run."""

    customer_id: int
    email: str
    account_number: str
    outcome: str
    zoho_customer_id: str = ""
    error: str = ""

    @property
    def synced(self) -> bool:
        return self.outcome in SYNCED_OUTCOMES

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES


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
        kind=SyncRunKind.BACKFILL,
        selection=backfill_q(config.stale_claim_seconds),
        config=config,
        trigger=trigger,
        dry_run=dry_run,
        limit=limit,
        max_wait=max_wait,
        observer=observer or RunObserver(),
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
        kind=SyncRunKind.RETRY_FAILED,
        selection=retry_q(config.stale_claim_seconds),
        config=config,
        trigger=trigger,
        dry_run=dry_run,
        limit=limit,
        max_wait=max_wait,
        observer=observer or RunObserver(),
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
    return _run(
        kind=SyncRunKind.SINGLE,
        selection=Q(pk=customer_id) & backfill_q(config.stale_claim_seconds),
        config=config,
        trigger=trigger,
        dry_run=False,
        limit=None,
        max_wait=max_wait,
        observer=observer or RunObserver(),
    )


def customers_preview(*, customer_ids: list[int], trigger: str) -> RunReport:
    """What re-queueing these customers would do: checks their data, sends nothing."""
    config = zoho_config()
    return _run(
        kind=SyncRunKind.SELECTED,
        selection=Q(pk__in=customer_ids) & requeue_q(config.stale_claim_seconds),
        config=config,
        trigger=trigger,
        dry_run=True,
        limit=None,
        max_wait=None,
        observer=RunObserver(),
    )


def _run(
    *,
    kind: str,
    selection: Q,
    config: ZohoConfig,
    trigger: str,
    dry_run: bool,
    limit: int | None,
    max_wait: float | None,
    observer: RunObserver,
) -> RunReport:
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
        _record(report.run, customer, AttemptOutcome.DRY_RUN, error=message if errors else "")
        result = CustomerResult(
            customer.pk,
            customer.email,
            customer.account_number,
            AttemptOutcome.DRY_RUN,
            error="; ".join(errors),
        )
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
                result = _result(customer, AttemptOutcome.FAILED, error=report.stop_reason)
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


class CustomerSyncer:
    """Syncs one customer at a time for a run, recording every attempt."""

    def __init__(
        self,
        *,
        run: SyncRun,
        client: ZohoClient,
        finder: ZohoCustomerFinder,
        config: ZohoConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.run = run
        self.client = client
        self.finder = finder
        self.config = config
        self.sleep = sleep

    def sync(self, customer: Customer, selection: Q) -> CustomerResult:
        """Claim, check and sync `customer`; raise only what should stop the whole run."""
        if not self._claim(customer, selection):
            message = "no longer needs syncing or another run is working on it"
            _record(self.run, customer, AttemptOutcome.SKIPPED, error=message)
            return _result(customer, AttemptOutcome.SKIPPED, error=message)
        customer.refresh_from_db()
        errors = customer_validation_errors(customer)
        if errors:
            message = "; ".join(errors)
            _record(self.run, customer, AttemptOutcome.INVALID, error=message)
            self._set_status(customer, SyncStatus.NEEDS_ATTENTION, error=message)
            return _result(customer, AttemptOutcome.INVALID, error=message)
        return self._attempt_until_done(customer)

    def _attempt_until_done(self, customer: Customer) -> CustomerResult:
        transient_failures = 0
        # Whether Zoho has surely finished our last create (it answered, or dropped the line).
        # Until then a timed-out create may still be running there.
        create_ended = False
        while True:
            attempt = _record(self.run, customer, AttemptOutcome.SENDING, finished=False)
            try:
                zoho_customer, outcome = self._adopt_or_create(
                    customer, earlier_create_ended=create_ended
                )
                self._mark_synced(customer, zoho_customer)
            except RUN_STOPPERS as exc:
                outcome = (
                    AttemptOutcome.RATE_LIMITED
                    if isinstance(exc, ZohoRateLimited)
                    else AttemptOutcome.FAILED
                )
                _finish(attempt, outcome, exc)
                raise
            except ZohoRateLimited as exc:
                # Zoho refused the request, so nothing was created: wait out the block, go on.
                _finish(attempt, AttemptOutcome.RATE_LIMITED, exc)
                self.client.gate.wait_while_blocked()
            except ZohoTransient as exc:
                _finish(attempt, AttemptOutcome.FAILED, exc)
                create_ended = not exc.timed_out
                transient_failures += 1
                if transient_failures >= self.config.max_attempts:
                    return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
                self.sleep(self._backoff(transient_failures))
            except ZohoInvalidData as exc:
                _finish(attempt, AttemptOutcome.INVALID, exc)
                return self._fail(customer, SyncStatus.NEEDS_ATTENTION, AttemptOutcome.INVALID, exc)
            except (ZohoError, IntegrityError) as exc:
                _finish(attempt, AttemptOutcome.FAILED, exc)
                return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
            else:
                _finish(attempt, outcome, zoho_customer_id=zoho_customer.customer_id)
                return _result(customer, outcome, zoho_customer_id=zoho_customer.customer_id)

    def _adopt_or_create(
        self, customer: Customer, *, earlier_create_ended: bool
    ) -> tuple[ZohoCustomer, str]:
        outcome_unknown = customer.zoho_create_sent_at is not None
        if outcome_unknown and not earlier_create_ended:
            self._let_unknown_create_settle(customer.zoho_create_sent_at)
        existing = self.finder.find(customer, outcome_unknown=outcome_unknown)
        if existing is not None:
            if existing.account_number is None:
                field = account_number_field(
                    customer, account_field=self.config.account_number_field
                )
                existing = self.client.update_customer(
                    existing.customer_id, {"custom_fields": [field]}
                )
            return existing, AttemptOutcome.ADOPTED
        self._set_create_sent(customer, timezone.now())
        payload = customer_zoho_payload(customer, account_field=self.config.account_number_field)
        try:
            created = self.client.create_customer(payload)
        except ZohoTransient as exc:
            if not exc.request_sent:
                self._set_create_sent(customer, None)
            raise
        except ZohoError:
            # A definite answer: Zoho did not create it (and we found no earlier create).
            self._set_create_sent(customer, None)
            raise
        self.finder.remember(created)
        return created, AttemptOutcome.CREATED

    def _let_unknown_create_settle(self, sent_at: datetime) -> None:
        """Wait until a create we gave up on has surely been finished or dropped by Zoho.

        A request that timed out on our side may still be running at Zoho; searching before
        it ends would miss it and lead to a duplicate.
        """
        settle_until = sent_at.timestamp() + UNKNOWN_OUTCOME_SETTLE_FACTOR * (
            self.config.timeout_seconds
        )
        remaining = settle_until - time.time()
        if remaining > 0:
            self.sleep(remaining)

    def _claim(self, customer: Customer, selection: Q) -> bool:
        claimed = (
            Customer.objects.filter(pk=customer.pk)
            .filter(selection)
            .update(
                zoho_sync_status=SyncStatus.SYNCING,
                zoho_claimed_at=timezone.now(),
                zoho_claimed_by=self.run,
            )
        )
        return claimed == 1

    def _mark_synced(self, customer: Customer, zoho_customer: ZohoCustomer) -> None:
        # update() touches only the sync columns, so a concurrent edit of the customer survives;
        # the savepoint keeps a unique-id clash from breaking an outer transaction.
        with transaction.atomic():
            Customer.objects.filter(pk=customer.pk).update(
                zoho_billing_customer_id=zoho_customer.customer_id,
                zoho_sync_status=SyncStatus.SYNCED,
                zoho_last_error="",
                zoho_last_synced_at=timezone.now(),
                zoho_create_sent_at=None,
                zoho_claimed_at=None,
                zoho_claimed_by=None,
            )

    def _set_create_sent(self, customer: Customer, when: datetime | None) -> None:
        customer.zoho_create_sent_at = when
        Customer.objects.filter(pk=customer.pk).update(zoho_create_sent_at=when)

    def _set_status(self, customer: Customer, status: str, *, error: str) -> None:
        Customer.objects.filter(pk=customer.pk).update(
            zoho_sync_status=status,
            zoho_last_error=error,
            zoho_claimed_at=None,
            zoho_claimed_by=None,
        )

    def _fail(
        self, customer: Customer, status: str, outcome: str, exc: Exception
    ) -> CustomerResult:
        message = _describe(exc)
        self._set_status(customer, status, error=message)
        return _result(customer, outcome, error=message)

    def _backoff(self, failures: int) -> float:
        return min(self.config.retry_backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)


def _describe(exc: Exception) -> str:
    if isinstance(exc, IntegrityError):
        return "the Zoho customer found is already linked to another local customer"
    return str(exc)


def _result(customer: Customer, outcome: str, **kwargs: str) -> CustomerResult:
    return CustomerResult(customer.pk, customer.email, customer.account_number, outcome, **kwargs)


def _record(
    run: SyncRun, customer: Customer, outcome: str, *, error: str = "", finished: bool = True
) -> SyncAttempt:
    return SyncAttempt.objects.create(
        run=run,
        customer=customer,
        customer_email=customer.email[:254],
        account_number=customer.account_number[:32],
        outcome=outcome,
        error_message=error,
        finished_at=timezone.now() if finished else None,
    )


def _finish(
    attempt: SyncAttempt,
    outcome: str,
    exc: Exception | None = None,
    *,
    zoho_customer_id: str = "",
) -> None:
    attempt.outcome = outcome
    attempt.finished_at = timezone.now()
    attempt.zoho_customer_id = zoho_customer_id
    if exc is not None:
        attempt.error_message = _describe(exc)
        attempt.http_status = getattr(exc, "status", None)
        attempt.zoho_code = getattr(exc, "code", None)
    attempt.save()
