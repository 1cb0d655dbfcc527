"""Sync runs: the one path every entry point takes (commands, tasks, admin actions).

One customer's path, from `manage.py zoho_backfill_customers` to its SyncAttempt row:
1. `customers_backfill` says who needs Zoho; `_run` records a SyncRun and reads them a chunk
   at a time, oldest first (run_selection.py);
2. `_sync_all` claims them a group at a time (claims.py) and hands each to `CustomerSync.sync`;
3. that (customer_sync.py) decides (`decide`: checks the data, looks for the customer in
   Zoho; `zoho_plan` shows the same decisions) and acts: adopts, creates or updates it,
   writing its SyncAttempt (audit.py) "sending" before the first write to Zoho; an adoption
   is finished at once, a create with its group (`answered.write()` below, AnsweredCreates);
4. the customer is let go `synced`, `failed` or `needs_attention`; a run that must stop leaves
   what it had not finished `failed`, with the reason.

Words of our own:
- claim: a run's hold on a customer row (`syncing`, `zoho_claimed_by`); changes need it. A
  claim older than ZOHO_STALE_CLAIM_SECONDS belongs to a run that died: the next run takes the
  customer over (`taken_over`).
- intent: the record, written before a create goes out, that it is going (a "sending" attempt
  and `zoho_create_sent_at`); while it stands, Zoho is searched before any second create.
- settle: a create without a clear answer may still commit in Zoho, whose search may lag; the
  customer WAITS `ZOHO_CREATE_SETTLE_SECONDS` before we look (at the end of the run, if the run
  may wait that long, else in a later run).
- gate, lease: the client's gate admits every request under the budget all processes share,
  handing out request slots a few at a time (a lease); it also waits out Zoho's blocks (a
  429: Zoho refuses the whole organization for a while) (zoho/pacing.py).
- heartbeat: before and during every wait, the run writes what Zoho answered and renews its
  claims, so that no other run takes it for dead.
- index: the run's list of Zoho's customers by email, read once and caught up when old; a
  customer "surely absent" from it is created without a search (matching.py).
- held refusal: a refused create that named none of our fields; whose fault it is (the
  customer's or the organization's) waits for evidence (refusals.py).
- max_wait: the seconds a run may spend waiting in all, for Zoho's blocks and for creates to
  settle (`--max-wait`; ZOHO_MAX_WAIT_SECONDS, ZOHO_SCHEDULE_MAX_WAIT_SECONDS for tasks).
- account numbers repaired: customers Zoho holds without our account number get it written
  at the start of every run, before anyone else is created (account_numbers.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Required, TypedDict, Unpack

from django.db.models import Q, QuerySet
from django.utils import timezone

from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncRun,
    SyncRunKind,
    SyncRunStatus,
    SyncStatus,
    SyncTrigger,
)
from billing_sync.selectors import backfill_q, customers_syncable, requeue_q, retry_q, sync_q
from billing_sync.services.account_numbers import (
    AccountNumberNotKept,
    flag_account_number_missing,
    repair_account_numbers,
)
from billing_sync.services.alerts import alerts_check
from billing_sync.services.audit import new_attempt, record_attempts
from billing_sync.services.claims import Claims
from billing_sync.services.customer_data import customer_validation_errors
from billing_sync.services.customer_source import writeback_after_run
from billing_sync.services.customer_sync import RUN_STOPPERS, AnsweredCreates, CustomerSync
from billing_sync.services.matching import ZohoCustomerFinder, lookup_prefers_index
from billing_sync.services.run_report import CustomerResult, RunObserver, RunReport
from billing_sync.services.run_selection import RunSelection
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig, zoho_config
from billing_sync.zoho.errors import ZohoConfigError

TAKEN_BY_ANOTHER = "no longer needs syncing or another run is working on it"


class RunOptions(TypedDict, total=False):
    """What every run over a selection of customers takes (keyword arguments)."""

    trigger: Required[SyncTrigger]
    dry_run: bool  # list and check, send nothing
    limit: int | None  # at most this many customers, oldest first
    max_wait: float | None  # seconds the run may wait in all (default ZOHO_MAX_WAIT_SECONDS)
    observer: RunObserver | None  # hears about the run's progress


def customers_backfill(**options: Unpack[RunOptions]) -> RunReport:
    """Sync every customer that belongs in Zoho and has no Zoho id yet."""
    return _run_over(SyncRunKind.BACKFILL, backfill_q, **options)


def customers_retry_failed(**options: Unpack[RunOptions]) -> RunReport:
    """Sync again every customer whose last sync failed (or whose run died)."""
    return _run_over(SyncRunKind.RETRY_FAILED, retry_q, **options)


def customers_sync(**options: Unpack[RunOptions]) -> RunReport:
    """Keep Zoho in step: create the customers it lacks (as a backfill does) and send it the
    local edits of those it holds; an unchanged table costs no request."""
    return _run_over(SyncRunKind.SYNC, sync_q, **options)


def _run_over(
    kind: SyncRunKind, wanted_for: Callable[[float], Q], **options: Unpack[RunOptions]
) -> RunReport:
    """A run over the customers `wanted_for(stale claim seconds)` describes."""
    config = zoho_config()
    return _run(kind, wanted_for(config.stale_claim_seconds), config, **options)


def customer_sync(
    *,
    customer_id: int,
    trigger: SyncTrigger,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Sync one customer, if it still needs it: create it, or send Zoho its edits."""
    config = zoho_config()
    wanted = Q(pk=customer_id) & sync_q(config.stale_claim_seconds)
    return _run(
        SyncRunKind.SINGLE, wanted, config, trigger=trigger, max_wait=max_wait, observer=observer
    )


def customers_sync_selected(
    *,
    customer_ids: list[int],
    trigger: SyncTrigger,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Sync these customers in one run (a person's re-queue of a selection): create those Zoho
    lacks, send the edits of those it holds."""
    config = zoho_config()
    wanted = Q(pk__in=customer_ids) & sync_q(config.stale_claim_seconds)
    return _run(
        SyncRunKind.SELECTED, wanted, config, trigger=trigger, max_wait=max_wait, observer=observer
    )


def customers_preview(
    *, customer_ids: list[int], trigger: SyncTrigger, observer: RunObserver | None = None
) -> RunReport:
    """What re-queueing these customers would do: checks their data, sends nothing."""
    config = zoho_config()
    wanted = Q(pk__in=customer_ids) & requeue_q(config.stale_claim_seconds)
    return _run(
        SyncRunKind.SELECTED, wanted, config, trigger=trigger, dry_run=True, observer=observer
    )


def _run(
    kind: SyncRunKind,
    wanted: Q,
    config: ZohoConfig,
    *,
    trigger: SyncTrigger,
    dry_run: bool = False,
    limit: int | None = None,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Record a SyncRun over the customers `wanted` describes, sync (or preview) them, report.

    `wanted` is asked again when each group is claimed: a customer another run took meanwhile
    is no longer wanted.
    """
    observer = observer or RunObserver()
    started = time.monotonic()
    selected = RunSelection.take(customers_syncable().filter(wanted), limit)
    run = SyncRun.objects.create(
        kind=kind, trigger=trigger, dry_run=dry_run, selected_count=selected.count
    )
    report = RunReport(run=run, selected_count=selected.count)
    observer.run_started(run, selected.customers())
    if dry_run:
        _preview(report, selected, observer)
    elif selected.count:
        _sync_all(report, selected, wanted, config, max_wait, observer)
    report.duration_seconds = time.monotonic() - started
    _finish_run(report)
    if not dry_run:
        alerts_check()  # tells monitoring when something started or stopped going wrong
        writeback_after_run(report.run)  # the Zoho ids, back into the company's database
    return report


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
            result = CustomerResult.of(customer, AttemptOutcome.DRY_RUN, error=error)
            report.add(result)
            observer.customer_finished(index, total, result)
        record_attempts(attempts)


def _sync_all(
    report: RunReport,
    selected: RunSelection,
    wanted: Q,
    config: ZohoConfig,
    max_wait: float | None,
    observer: RunObserver,
) -> None:
    """Claim the selection a group at a time and sync each customer; the ones whose earlier
    create is still settling come last."""
    claims = Claims(report.run)
    answered = AnsweredCreates(claims)

    def heartbeat() -> None:
        answered.write()
        claims.renew()

    client = ZohoClient(
        config,
        max_wait=max_wait,
        on_block_wait=observer.block_wait,
        on_pace_wait=observer.pace_wait,
        heartbeat=heartbeat,
    )
    finder = ZohoCustomerFinder(
        client,
        use_index=lookup_prefers_index(selected.count),
        max_age=config.index_max_age_seconds,
    )
    customers = CustomerSync(
        run=report.run,
        client=client,
        finder=finder,
        claims=claims,
        answered=answered,
        config=config,
        heartbeat=heartbeat,
    )
    waiting: list[tuple[int, Customer]] = []
    total, index = selected.count, 0
    current: Customer | None = None
    looking_again = False  # at the waiting customers, after every other one
    try:
        repair_account_numbers(
            run=report.run, client=client, account_field=config.account_number_field
        )
        for group in _groups(selected, client.gate.lease_size):
            claimed = claims.take(group, wanted)
            taken_over = {c.pk for c in group if c.zoho_sync_status == SyncStatus.SYNCING}
            customers.write_intents_ahead(
                [claimed[c.pk] for c in group if c.pk in claimed and c.pk not in taken_over]
            )
            for current in group:
                index += 1
                observer.customer_started(index, total, current)
                if current.pk not in claimed:
                    result = CustomerResult.of(
                        current, AttemptOutcome.SKIPPED, error=TAKEN_BY_ANOTHER
                    )
                else:
                    row = claimed[current.pk]
                    result = customers.sync(row, taken_over=current.pk in taken_over)
                    if result.waiting:
                        waiting.append((index, row))
                        observer.customer_waiting(index, total, current, result.waiting_until)
                        continue
                report.add(result)
                observer.customer_finished(index, total, result)
            answered.write()
        looking_again = True
        for index, current in waiting:
            observer.customer_started(index, total, current)
            result = _sync_once_settled(customers, current, client, observer)
            report.add(result)
            observer.customer_finished(index, total, result)
    except RUN_STOPPERS as exc:
        customers.drop_intents_ahead()
        answered.write()
        finished = None
        if isinstance(exc, AccountNumberNotKept):
            flag_account_number_missing(exc)
            if current is not None and exc.result.customer_id == current.pk:
                finished = exc.result
        never_reached = (
            selected.rest(current)
            if current is not None and not looking_again
            else Customer.objects.none()
        )
        result = _stop(report, claims, exc, current, never_reached, finished=finished)
        if result is not None:
            observer.customer_finished(index, total, result)
    finally:
        customers.finish()
        # Reported synced when Zoho answered, then found linked elsewhere when written.
        report.synced_count -= answered.linked_elsewhere
        report.failed_count += answered.linked_elsewhere
        report.run.request_count = client.request_count
        client.close()


def _groups(selected: RunSelection, size: int) -> Iterator[list[Customer]]:
    """Claimed together: about as many as the budget lets us send at once."""
    for chunk in selected.chunks():
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


def _sync_once_settled(
    customers: CustomerSync, customer: Customer, client: ZohoClient, observer: RunObserver
) -> CustomerResult:
    """Wait (within the run's max_wait) until the customer's earlier create has settled, then
    sync it; leave it for a later run when the run may not wait that long."""
    settles_at = customers.settles_at(customer)
    if settles_at is not None and settles_at > timezone.now():
        if not client.gate.may_wait_until(settles_at):
            return customers.leave_waiting(customer, settles_at)
        observer.settle_wait(settles_at)
        client.gate.wait_until(settles_at)
    result = customers.sync_settled(customer)
    if result.waiting:  # its create went out again without a clear answer: no second wait
        return customers.leave_waiting(customer, result.waiting_until)
    return result


def _stop(
    report: RunReport,
    claims: Claims,
    exc: Exception,
    current: Customer | None,
    never_reached: QuerySet[Customer],
    *,
    finished: CustomerResult | None = None,
) -> CustomerResult | None:
    """A stopped run leaves what it had not finished failed, with the reason, for a retry.

    `current` is the customer at hand when the run stopped; `finished` its result when it
    ended before the stop (Zoho holds it), else it is left failed too; so are the customers
    the run still holds and those it `never_reached`.
    """
    report.stop_reason = str(exc)
    report.stop_needs_setup = isinstance(exc, ZohoConfigError)
    unfinished = Q(zoho_claimed_by=report.run, zoho_sync_status=SyncStatus.SYNCING) | Q(
        pk__in=never_reached.values("pk")
    )
    result = finished
    if current is not None:
        if finished is None:
            result = CustomerResult.of(current, AttemptOutcome.FAILED, error=report.stop_reason)
            claims.release_all(
                Customer.objects.filter(unfinished, pk=current.pk),
                SyncStatus.FAILED,
                report.stop_reason,
            )
        report.add(result)
    left = Customer.objects.filter(unfinished)
    if current is not None:
        left = left.exclude(pk=current.pk)
    report.unreached_count = claims.release_all(left, SyncStatus.FAILED, report.stop_reason)
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
