"""Sync runs: the one path every entry point takes (commands, tasks, admin actions).

One customer's path, from `manage.py zoho_backfill_customers` to its SyncAttempt row:
1. `customers_backfill` says who needs Zoho; `_run` records a SyncRun and reads them a chunk
   at a time, oldest first (run_selection.py);
2. a `LiveRun` claims them a group at a time (claims.py) and hands each to `CustomerSync.sync`;
3. that (customer_sync.py) decides (`decide`: checks the data, looks for the customer in
   Zoho; `zoho_plan` shows the same decisions) and acts: adopts, creates or updates it,
   its SyncAttempt (audit.py `RunAttempts`) on record "sending" before the first write to
   Zoho and finished once: the customer's final attempt, written at once, or for a create
   with its group (`AnsweredCreates`);
4. the customer is let go `synced`, `failed` or `needs_attention`; a run that must stop leaves
   what it had not finished `failed`, with the reason;
5. once its final attempt is on record, the customer is reported from that row (`Reporter.
   finished`), and the run's counts are read from those rows at its end (`RunReport.of`).

Words of our own:
- claim: a run's hold on a customer row (`syncing`, `zoho_claimed_by`); changes need it. A
  claim older than ZOHO_STALE_CLAIM_SECONDS belongs to a run that died: the next run takes the
  customer over (`taken_over`).
- intent: the record, written before a create goes out, that it is going (a "sending" attempt
  and `zoho_create_sent_at`); while it stands, Zoho is searched before any second create.
- settle: a create without a clear answer may still commit in Zoho, whose search may lag; the
  customer WAITS `ZOHO_CREATE_SETTLE_SECONDS` before we look (at the end of the run, if the run
  may wait that long, else in a later run).
- final attempt: the SyncAttempt that says how a customer ended in a run (`final` true), one
  per customer it finished; what a run prints, puts in JSON and counts is read from these.
- group: the customers claimed together (CLAIM_GROUP_SIZE): their intents and their answered
  creates are written a few statements a group.
- answered creates: creates Zoho has answered, held to be written with their group (each
  attempt `created`, each customer linked); written before any wait and before anything later
  is reported, so customers are reported in the order they ended.
- stop, unreached: an error no other customer would escape (run_stops.py) stops the run; the
  customers it never got to are left `failed` with the reason and counted `unreached` on the
  SyncRun (they have no attempt in it).
- gate, lease: the client's gate admits every request under the budget all processes share,
  handing out request slots a few at a time (a lease); it also waits out Zoho's blocks (a
  429: Zoho refuses the whole organization for a while) (zoho/pacing.py).
- heartbeat: before and during every wait, the run writes what Zoho answered and renews its
  claims, so that no other run takes it for dead.
- in step: Zoho holds the customer's fields as we last sent them (`zoho_synced_hash`, and
  `zoho_synced_data_at`, the edit they came from); a customer edited since is sent again, one
  in step is skipped.
- decision: what a run does with one customer (customer_sync.py `decide`: create, adopt,
  update, deactivate, reactivate, skip, invalid, wait); `zoho_plan` shows the same decisions
  without acting on them.
- closed: a customer whose `account_status` is closed is marked inactive in Zoho
  (deactivate; reopened: reactivate); one closed before it reached Zoho is never created.
- index: the run's list of Zoho's customers by email, read once and caught up when old; a
  customer "surely absent" from it is created without a search (matching.py).
- held refusal: a refused create that named none of our fields; whose fault it is (the
  customer's or the organization's) waits for evidence (refusals.py).
- max_wait: the seconds a run may spend waiting in all, for Zoho's blocks and for creates to
  settle (`--max-wait`; ZOHO_MAX_WAIT_SECONDS, ZOHO_SCHEDULE_MAX_WAIT_SECONDS for tasks).
- lost database: a step whose database went away is waited for (ZOHO_DB_OUTAGE_WAIT_SECONDS,
  within max_wait) and taken again (`_until_written`: every step may be taken twice); claims
  taken before the outage are read again. Longer, the run stops as a crash does (DatabaseLost).
- unreachable: Zoho cannot be reached at all (refused, DNS, TLS, connect timeout): nothing
  was sent, so the client waits for it as for a block, then stops the run.
- account numbers repaired: customers Zoho holds without our account number get it written
  at the start of every run, before anyone else is created (account_numbers.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Required, TypedDict, TypeVar, Unpack

from django.conf import settings
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
    SyncTrigger,
)
from billing_sync.selectors import RUN_SELECTIONS, customers_syncable, requeue_q, sync_q
from billing_sync.services.account_numbers import (
    flag_account_number_missing,
    repair_account_numbers,
)
from billing_sync.services.alerts import alerts_check
from billing_sync.services.audit import RunAttempts, ended
from billing_sync.services.claims import Claims
from billing_sync.services.customer_data import customer_validation_errors
from billing_sync.services.customer_source import writeback_after_run
from billing_sync.services.customer_sync import AnsweredCreates, CustomerSync
from billing_sync.services.db_outage import (
    CONNECTION_ERRORS,
    DatabaseLost,
    first_line,
    wait_for_database,
)
from billing_sync.services.matching import ZohoCustomerFinder, lookup_prefers_index
from billing_sync.services.run_report import CustomerResult, RunObserver, RunReport
from billing_sync.services.run_selection import RunSelection
from billing_sync.services.run_stops import RUN_STOPPERS, AccountNumberNotKept, VatNumberNotKept
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig, zoho_config
from billing_sync.zoho.errors import ZohoConfigError

logger = logging.getLogger(__name__)
T = TypeVar("T")

TAKEN_BY_ANOTHER = "no longer needs syncing or another run is working on it"
# Customers claimed together. Their intents and answered creates cost a few statements a group
# (bench/backfill.py --local-only, 10,000: 517/s in groups of 10, 600/s of 25, 613/s of 50); a
# stopped run lets go of at most this many claimed and not yet sent.
CLAIM_GROUP_SIZE = 25


class RunOptions(TypedDict, total=False):
    """What every run over a selection of customers takes (keyword arguments)."""

    trigger: Required[SyncTrigger]
    dry_run: bool  # list and check, send nothing
    limit: int | None  # at most this many customers, oldest first
    max_wait: float | None  # seconds the run may wait in all (default ZOHO_MAX_WAIT_SECONDS)
    observer: RunObserver | None  # hears about the run's progress


def customers_backfill(**options: Unpack[RunOptions]) -> RunReport:
    """Sync every customer that belongs in Zoho and has no Zoho id yet."""
    return _run_over(SyncRunKind.BACKFILL, **options)


def customers_retry_failed(**options: Unpack[RunOptions]) -> RunReport:
    """Sync again every customer whose last sync failed (or whose run died)."""
    return _run_over(SyncRunKind.RETRY_FAILED, **options)


def customers_sync(**options: Unpack[RunOptions]) -> RunReport:
    """Keep Zoho in step: create the customers it lacks (as a backfill does) and send it the
    local edits of those it holds; an unchanged table costs no request."""
    return _run_over(SyncRunKind.SYNC, **options)


def _run_over(kind: SyncRunKind, **options: Unpack[RunOptions]) -> RunReport:
    """A run over the customers this kind of run takes (selectors.RUN_SELECTIONS)."""
    config = zoho_config()
    return _run(kind, RUN_SELECTIONS[kind](config.stale_claim_seconds), config, **options)


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
    selected = RunSelection.take(customers_syncable().filter(wanted), limit)
    run = SyncRun.objects.create(
        kind=kind, trigger=trigger, dry_run=dry_run, selected_count=selected.count
    )
    observer.run_started(run, selected.customers())
    if dry_run:
        _preview(run, selected, observer)
    elif selected.count:
        LiveRun(run, selected, wanted, config, max_wait=max_wait, observer=observer).sync()
    report = _finish_run(run)
    if not dry_run:
        alerts_check()  # tells monitoring when something started or stopped going wrong
        writeback_after_run(run)  # the Zoho ids, back into the company's database
    return report


class Reporter:
    """Tells the observer of each customer once its final attempt is on record, at the place
    the customer had in the selection."""

    def __init__(self, observer: RunObserver, total: int) -> None:
        self.observer = observer
        self.total = total
        # Customers started and not reported yet: their place and name, by id.
        self._started: dict[int | None, tuple[int, str]] = {}

    def started(self, index: int, customer: Customer) -> None:
        self._started[customer.pk] = (index, customer.display_name)
        self.observer.customer_started(index, self.total, customer)

    def finished(self, attempt: SyncAttempt) -> None:
        index, name = self._started.pop(attempt.customer_id, (0, ""))
        result = CustomerResult.of(attempt, display_name=name)
        self.observer.customer_finished(index, self.total, result)


def _preview(run: SyncRun, selected: RunSelection, observer: RunObserver) -> None:
    """Walk the selection as a run would, checking the data; send nothing, change nothing."""
    reporter = Reporter(observer, selected.count)
    attempts = RunAttempts(run, on_final=reporter.finished)
    index = 0
    for chunk in selected.chunks():
        checked = []
        for customer in chunk:
            index += 1
            reporter.started(index, customer)
            error = "; ".join(customer_validation_errors(customer))
            attempt = attempts.begin(customer)
            checked.append(ended(attempt, AttemptOutcome.DRY_RUN, final=True, message=error))
        attempts.write(checked)


class LiveRun:
    """One run sending to Zoho: claims its selection a group at a time and syncs each customer
    (`_sync_group`), then those whose earlier create was settling (`_sync_settled`); a run
    stopper ends it (`_stop`). Each customer is reported once its final attempt is written."""

    def __init__(
        self,
        run: SyncRun,
        selected: RunSelection,
        wanted: Q,
        config: ZohoConfig,
        *,
        max_wait: float | None,
        observer: RunObserver,
    ) -> None:
        self.run = run
        self.selected = selected
        self.wanted = wanted
        self.config = config
        self.observer = observer
        self.reporter = Reporter(observer, selected.count)
        self.attempts = RunAttempts(run, on_final=self.reporter.finished)
        self.claims = Claims(run)
        self.answered = AnsweredCreates(self.claims, self.attempts)
        self.attempts.before_report = self.answered.write
        self.client = ZohoClient(
            config,
            max_wait=max_wait,
            on_block_wait=observer.block_wait,
            on_pace_wait=observer.pace_wait,
            heartbeat=self._heartbeat,
            on_unreachable_wait=observer.unreachable_wait,
        )
        self.customers = CustomerSync(
            attempts=self.attempts,
            client=self.client,
            finder=ZohoCustomerFinder(
                self.client,
                use_index=lookup_prefers_index(selected.count),
                max_age=config.index_max_age_seconds,
            ),
            claims=self.claims,
            answered=self.answered,
            config=config,
            heartbeat=self._heartbeat,
        )
        # Held, to be looked at again at the end: (place, customer) whose create is settling.
        self.waiting: list[tuple[int, Customer]] = []
        self.index = 0
        # The last customer reached in the selection (None before the first, and once the
        # whole selection has been gone through).
        self.reached: Customer | None = None
        self.database_lost = False
        # Times the database went away and came back: claims taken before one are read again.
        self.outages = 0

    def sync(self) -> None:
        """Sync the selection; a run stopper leaves what is not finished failed. A lost
        database is waited for; one that stays away stops the run (DatabaseLost) with what
        it could not write left as a crash leaves it."""
        try:
            self._until_written(
                lambda: repair_account_numbers(
                    attempts=self.attempts,
                    client=self.client,
                    account_field=self.config.account_number_field,
                )
            )
            for group in self._groups():
                self._sync_group(group)
            self.reached = None
            for index, customer in self.waiting:
                self._until_written(partial(self._sync_settled, index, customer))
        except RUN_STOPPERS as exc:
            self._until_written(partial(self._stop, exc))
        except DatabaseLost:
            self.database_lost = True
            raise
        finally:
            self.run.request_count = self.client.request_count
            if not self.database_lost:
                self._until_written(self.customers.finish)
                self.client.close()

    def _heartbeat(self) -> None:
        self.answered.write()
        self.claims.renew()

    def _until_written(self, step: Callable[[], T]) -> T:
        """Take `step`; when the database is lost meanwhile, wait for it (ZOHO_DB_OUTAGE_WAIT_
        SECONDS, within max_wait), then take the step again: every step may be taken twice."""
        while True:
            try:
                return step()
            except CONNECTION_ERRORS as error:
                self._wait_for_database(error)

    def _wait_for_database(self, error: Exception) -> None:
        self.outages += 1
        gate = self.client.gate
        longest = min(settings.ZOHO_DB_OUTAGE_WAIT_SECONDS, gate.max_wait - gate.block_waited)
        logger.warning("lost the database (%s); waiting for it", error)
        self.observer.database_wait(first_line(error))
        gate.block_waited += wait_for_database(error, longest=max(0.0, longest))

    def _groups(self) -> Iterator[list[Customer]]:
        after = None
        while True:
            chunk = self._until_written(partial(self.selected.chunk_after, after))
            if not chunk:
                return
            for start in range(0, len(chunk), CLAIM_GROUP_SIZE):
                yield chunk[start : start + CLAIM_GROUP_SIZE]
            after = chunk[-1]

    def _sync_group(self, group: list[Customer]) -> None:
        """Claim a group, write the intents of its sure creates, sync each; then write the
        creates Zoho answered."""
        claimed = self._until_written(lambda: self.claims.take(group, self.wanted))
        outages_at_claim = self.outages
        taken_over = {c.pk for c in group if c.zoho_sync_status == SyncStatus.SYNCING}
        self._until_written(
            lambda: self.customers.write_intents_ahead(
                [claimed[c.pk] for c in group if c.pk in claimed and c.pk not in taken_over]
            )
        )
        for customer in group:
            self.index += 1
            self.reached = customer
            self.reporter.started(self.index, customer)
            if customer.pk not in claimed:
                self._until_written(partial(self.customers.skip, customer, TAKEN_BY_ANOTHER))
                continue
            row = claimed[customer.pk]
            if self.outages != outages_at_claim:  # does the claim still stand?
                row = self._until_written(partial(self.claims.held().filter(pk=row.pk).first))
                if row is None:
                    self._until_written(partial(self.customers.skip, customer, TAKEN_BY_ANOTHER))
                    continue
            settles_at = self._sync_one(customer, row, customer.pk in taken_over)
            if settles_at is not None:
                self.waiting.append((self.index, row))
                self.observer.customer_waiting(self.index, self.selected.count, row, settles_at)
        self._until_written(self.answered.write)

    def _sync_one(self, customer: Customer, row: Customer, taken_over: bool) -> datetime | None:
        """Sync one claimed customer; after a lost database, again from its row as it stands
        (an attempt left "sending" is closed, a create on record is looked for first)."""
        while True:
            try:
                return self.customers.sync(row, taken_over=taken_over)
            except CONNECTION_ERRORS as error:
                self._wait_for_database(error)
            row = self._until_written(lambda: self.claims.held().filter(pk=customer.pk).first())
            if row is None:  # taken over by another run while the database was away
                self._until_written(partial(self.customers.skip, customer, TAKEN_BY_ANOTHER))
                return None
            taken_over = True

    def _sync_settled(self, index: int, customer: Customer) -> None:
        """Wait (within the run's max_wait) until the customer's earlier create has settled,
        then sync it; leave it for a later run when the run may not wait that long, or when
        its create went out again without a clear answer (no second wait)."""
        self.reporter.started(index, customer)
        settles_at = self.customers.settles_at(customer)
        if settles_at is not None and settles_at > timezone.now():
            if not self.client.gate.may_wait_until(settles_at):
                self.customers.leave_waiting(customer, settles_at)
                return
            self.observer.settle_wait(settles_at)
            self.client.gate.wait_until(settles_at)
        settles_again = self.customers.sync_settled(customer)
        if settles_again is not None:
            self.customers.leave_waiting(customer, settles_again)

    def _stop(self, exc: Exception) -> None:
        """A stopped run leaves what it had not finished failed, with the reason, for a retry:
        the customers it still holds and those it never reached (counted `unreached`)."""
        self.customers.drop_intents_ahead()
        self.answered.write()
        if isinstance(exc, AccountNumberNotKept):
            flag_account_number_missing(exc)
        elif isinstance(exc, VatNumberNotKept):
            exc.flag()
        reason = str(exc)
        self.run.stop_reason = reason
        self.run.stop_needs_setup = isinstance(exc, ZohoConfigError)
        unfinished = Q(zoho_claimed_by=self.run, zoho_sync_status=SyncStatus.SYNCING)
        if self.reached is not None:
            unfinished |= Q(pk__in=self.selected.rest(self.reached).values("pk"))
        self.run.unreached_count = self.claims.release_all(
            Customer.objects.filter(unfinished), SyncStatus.FAILED, reason
        )


def _finish_run(run: SyncRun) -> RunReport:
    """Close the run's record and count it from its final attempts."""
    run.status = SyncRunStatus.STOPPED if run.stop_reason else SyncRunStatus.COMPLETED
    run.finished_at = timezone.now()
    report = RunReport.of(run)  # the attempts are on record; the run's own fields are at hand
    run.synced_count = report.synced_count
    run.failed_count = report.failed_count
    run.skipped_count = report.skipped_count
    run.save()
    return report
