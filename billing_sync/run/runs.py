"""Sync runs: the one path every entry point takes (commands, tasks, admin actions).

One customer's path, from `manage.py zoho_backfill_customers` to its SyncAttempt row:
1. `customers_backfill` says who needs Zoho; `_run` records a SyncRun and reads them a chunk
   at a time, oldest first (run_selection.py);
2. a `LiveRun` claims them a group at a time (claims.py) and hands each to `CustomerSync.sync`
   (the run's record opened and closed by run_records.py);
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
  update, deactivate, reactivate, skip, invalid, wait, gone); `zoho_plan` shows the same decisions
  without acting on them.
- closed: a customer whose `account_status` is closed is marked inactive in Zoho
  (deactivate; reopened: reactivate); one closed before it reached Zoho is never created.
- index: the run's list of Zoho's customers by email, read once and caught up when old; a
  customer "surely absent" from it is created without a search (matching.py).
- held refusal: a refused create that named none of our fields; whose fault it is (the
  customer's or the organization's) waits for evidence (refusals.py).
- max_wait: the seconds a run may spend waiting in all, for Zoho's blocks and for creates to
  settle (`--max-wait`; ZOHO_MAX_WAIT_SECONDS, ZOHO_SCHEDULE_MAX_WAIT_SECONDS for tasks).
- step, lost database, conflict: every statement of a run is taken as a step of its
  `steps` (database.py): when the connection is lost it is waited for (ZOHO_DB_OUTAGE_WAIT_
  SECONDS, within max_wait), on a lock conflict taken again a few times, then taken again. A
  write after a Zoho answer is a transaction taken again whole (the final attempt and the
  customer's row together), never the request before it; a customer's sync cut before any
  answer is taken up again from its row (`_sync_again`), and before any write to Zoho after an
  outage its claim is looked at again (`ClaimLost`: another run took it over). Longer than the
  run may wait, the run stops as a crash does (DatabaseLost, DatabaseConflict).
- reached: the customers of its selection a run took up (`reached_count`), each of which ends
  with a final attempt; a run is all synced only when every one of them has (and each ended
  synced or skipped). One another process synced meanwhile drops out of the selection.
- record closed: a run ends by closing its SyncRun (run_records.py): what it left "sending"
  (cut off by a Ctrl-C or a lost database) is closed `interrupted`, its counts are read from
  its final attempts. The record of a run that died (silent longer than ZOHO_STALE_CLAIM_
  SECONDS) is closed by the next run.
- unreachable: Zoho cannot be reached at all (refused, DNS, TLS, connect timeout): nothing
  was sent, so the client waits for it as for a block, then stops the run.
- account numbers repaired: before a run's first create, customers Zoho holds without our
  account number get it written (account_numbers.py), at most once an interval unless a person
  asked for the run; a run that creates nothing never looks.
- Ctrl-C: stops the run as a run stopper does (its customers not finished left failed), its
  record closed `stopped`, then goes on to the command (exit 130).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Required, TypedDict, Unpack

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from billing_sync.ctrl_c import ctrl_c_held
from billing_sync.customer_data import customer_validation_errors
from billing_sync.database import DatabaseSteps, DatabaseUnavailable, WaitAllowance
from billing_sync.imports.source import writeback_after_run
from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRun,
    SyncRunKind,
    SyncStatus,
    SyncTrigger,
)
from billing_sync.operations.alerts import alerts_check
from billing_sync.run.audit import RunAttempts, ended
from billing_sync.run.claims import Claims
from billing_sync.run.customer.account_numbers import (
    flag_account_number_missing,
    repair_before_creating,
)
from billing_sync.run.customer.matching import ZohoCustomerFinder, lookup_prefers_index
from billing_sync.run.customer.sync import TAKEN_BY_ANOTHER, AnsweredCreates, CustomerSync
from billing_sync.run.records import cut_off, run_alive, run_closed, run_opened
from billing_sync.run.report import CustomerResult, RunObserver, RunReport, WaitKind
from billing_sync.run.selection import (
    RUN_SELECTIONS,
    RunSelection,
    customers_backlog,
    customers_syncable,
    requeue_q,
    sync_q,
)
from billing_sync.run.stops import (
    RUN_STOPPERS,
    AccountNumberNotKept,
    RunInterrupted,
    VatNumberNotKept,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig, zoho_config
from billing_sync.zoho.errors import DailyBudgetUsed, ZohoConfigError

logger = logging.getLogger(__name__)

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
    is no longer wanted. Every statement is a step of the run's `steps`: a lost database is
    waited for (within max_wait) from the first. A Ctrl-C closes the run `stopped`, then goes on.
    """
    observer = observer or RunObserver()
    max_wait = config.max_wait_seconds if max_wait is None else max_wait
    steps = DatabaseSteps(
        WaitAllowance(settings.ZOHO_DB_OUTAGE_WAIT_SECONDS, max_wait),
        on_wait=partial(observer.waiting, WaitKind.DATABASE, None),
    )
    selected = steps.take(lambda: RunSelection.take(customers_syncable().filter(wanted), limit))
    run = run_opened(
        kind=kind,
        trigger=trigger,
        dry_run=dry_run,
        selected_count=selected.count,
        stale_seconds=config.stale_claim_seconds,
        steps=steps,
    )
    try:
        observer.run_started(run, selected.customers(steps))
        if dry_run:
            _preview(run, selected, observer, steps)
        elif selected.count:
            LiveRun(run, selected, wanted, config, steps=steps, observer=observer).sync()
    except KeyboardInterrupt:
        with ctrl_c_held():
            run.stop_reason = run.stop_reason or str(RunInterrupted())
            steps.take(partial(run_closed, run))
        raise
    with ctrl_c_held():
        report = steps.take(partial(run_closed, run))
    if not dry_run:
        steps.take(alerts_check)  # tells monitoring when something started or stopped going wrong
        steps.take(partial(writeback_after_run, run))  # the Zoho ids, back into the company's
    return report


class Reporter:
    """Tells the observer of each customer once its final attempt is on record, at the place
    the customer had in the selection."""

    def __init__(self, observer: RunObserver, total: int) -> None:
        self.observer = observer
        self.total = total
        # Customers of the selection taken up so far (each ends with a final attempt).
        self.reached = 0
        # Customers started and not reported yet: their place and name, by id.
        self._started: dict[int | None, tuple[int, str]] = {}

    def reach(self, customer: Customer) -> int:
        """The run takes up the next customer of its selection: its place."""
        self.reached += 1
        self.started(self.reached, customer)
        return self.reached

    def started(self, index: int, customer: Customer) -> None:
        self._started[customer.pk] = (index, customer.display_name)
        self.observer.customer_started(index, self.total, customer)

    def finished(self, attempt: SyncAttempt) -> None:
        index, name = self._started.pop(attempt.customer_id, (0, ""))
        result = CustomerResult.of(attempt, display_name=name)
        self.observer.customer_finished(index, self.total, result)


def _preview(
    run: SyncRun, selected: RunSelection, observer: RunObserver, steps: DatabaseSteps
) -> None:
    """Walk the selection as a run would, checking the data; send nothing, change nothing."""
    reporter = Reporter(observer, selected.count)
    attempts = RunAttempts(run, steps, on_final=reporter.finished)
    for chunk in selected.chunks(steps):
        checked = []
        for customer in chunk:
            reporter.reach(customer)
            run.reached_count = reporter.reached
            error = "; ".join(customer_validation_errors(customer))
            attempt = attempts.begin(customer)
            checked.append(ended(attempt, AttemptOutcome.DRY_RUN, final=True, message=error))
        attempts.write(checked, also=partial(run_alive, run))


class LiveRun:
    """One run sending to Zoho: claims its selection a group at a time and syncs each customer
    (`_sync_group`), then those whose earlier create was settling (`_sync_settled`); a run
    stopper ends it (`_stop`), and so does a Ctrl-C. Each customer is reported once its final
    attempt is written."""

    def __init__(
        self,
        run: SyncRun,
        selected: RunSelection,
        wanted: Q,
        config: ZohoConfig,
        *,
        steps: DatabaseSteps,
        observer: RunObserver,
    ) -> None:
        self.run = run
        self.selected = selected
        self.wanted = wanted
        self.config = config
        self.steps = steps
        self.observer = observer
        self.reporter = Reporter(observer, selected.count)
        self.attempts = RunAttempts(run, steps, on_final=self.reporter.finished)
        self.claims = Claims(run, steps)
        self.answered = AnsweredCreates(self.claims, self.attempts)
        self.attempts.before_report = self.answered.write
        self.client = ZohoClient(
            config,
            max_wait=steps.allowance.max_wait,
            on_block_wait=partial(observer.waiting, WaitKind.BLOCK),
            on_pace_wait=partial(observer.waiting, WaitKind.PACE),
            heartbeat=self._heartbeat,
            on_unreachable_wait=partial(observer.waiting, WaitKind.UNREACHABLE),
        )
        # One count of the seconds waited, for Zoho's blocks and for the database alike.
        steps.allowance.share_with(self.client.gate)
        self.customers = CustomerSync(
            attempts=self.attempts,
            client=self.client,
            finder=ZohoCustomerFinder(
                self.client,
                use_index=steps.take(partial(lookup_prefers_index, selected.count)),
                max_age=config.index_max_age_seconds,
            ),
            claims=self.claims,
            answered=self.answered,
            config=config,
            heartbeat=self._heartbeat,
        )
        # Held, to be looked at again at the end: (place, customer) whose create is settling.
        self.waiting: list[tuple[int, Customer]] = []
        # The last customer reached in the selection (None before the first, and once the
        # whole selection has been gone through).
        self.reached: Customer | None = None
        self.repair_checked = False

    def sync(self) -> None:
        """Sync the selection; a run stopper or a Ctrl-C leaves what is not finished failed,
        for a retry. A lost database is waited for; one that stays away stops the run
        (DatabaseLost) with what it could not write left as a crash leaves it."""
        try:
            try:
                for group in self._groups():
                    self._sync_group(group)
                self.reached = None
                for index, customer in self.waiting:
                    self._sync_settled(index, customer)
            except RUN_STOPPERS as exc:
                self._stop(exc)
            self.customers.finish()
        except KeyboardInterrupt:
            with ctrl_c_held():
                self._stop(RunInterrupted())
                self.customers.finish()
                self._close()
            raise
        except DatabaseUnavailable:
            self._close(written=False)
            raise
        self._close()

    def _close(self, *, written: bool = True) -> None:
        """What the run's record says of its requests and its reach; the client let go."""
        self.run.request_count = self.client.request_count
        self.run.reached_count = self.reporter.reached
        if written:
            self.steps.take(self.client.close)

    def _repair_before_creating(self, group: list[Customer]) -> None:
        """Before the run's first create: the customers Zoho holds without our account number
        get it written, so no customer is created while Zoho drops it (account_numbers.py). A
        run that creates nothing (an edit's task) never looks."""
        if self.repair_checked or all(c.zoho_billing_customer_id for c in group):
            return
        self.repair_checked = True
        repair_before_creating(
            attempts=self.attempts,
            client=self.client,
            account_field=self.config.account_number_field,
            person_asked=self.run.trigger in (SyncTrigger.COMMAND, SyncTrigger.ADMIN),
        )

    def _heartbeat(self) -> None:
        self.answered.write()
        self.claims.renew()
        self.steps.take(partial(run_alive, self.run))

    def _groups(self) -> Iterator[list[Customer]]:
        for chunk in self.selected.chunks(self.steps):
            for start in range(0, len(chunk), CLAIM_GROUP_SIZE):
                yield chunk[start : start + CLAIM_GROUP_SIZE]

    def _sync_group(self, group: list[Customer]) -> None:
        """Claim a group, write the intents of its sure creates, sync each; then write the
        creates Zoho answered."""
        self._repair_before_creating(group)
        claimed = self.claims.take(group, self.wanted)
        outages_at_claim = self.steps.outages
        self.steps.take(partial(run_alive, self.run))
        taken_over = {c.pk for c in group if c.zoho_sync_status == SyncStatus.SYNCING}
        self.customers.write_intents_ahead(
            [claimed[c.pk] for c in group if c.pk in claimed and c.pk not in taken_over]
        )
        for customer in group:
            self.reached = customer
            index = self.reporter.reach(customer)
            row = claimed.get(customer.pk)
            if row is not None and self.steps.outages != outages_at_claim:
                row = self.claims.holding(customer)  # does the claim still stand?
            if row is None:
                self.customers.skip(customer, TAKEN_BY_ANOTHER)
                continue
            first = partial(self.customers.sync, row, taken_over=customer.pk in taken_over)
            settles_at = self._sync_one(customer, first)
            if settles_at is not None:
                self.waiting.append((index, self.claims.holding(customer) or customer))
                self.observer.customer_waiting(index, self.selected.count, customer, settles_at)
        self.answered.write()

    def _sync_one(
        self, customer: Customer, first: Callable[[], datetime | None]
    ) -> datetime | None:
        """Sync one claimed customer (`first`). A database lost meanwhile (or a conflict)
        outside the writes that are taken again in place: once it answers, the customer is
        synced again from its row as it stands (the attempt it had opened closed, a create on
        record looked for first), unless it has ended in this run already or is no longer
        held."""
        tries = 0

        def sync() -> datetime | None:
            nonlocal tries
            tries += 1
            return first() if tries == 1 else self._sync_again(customer)

        return self.steps.take(sync)

    def _sync_again(self, customer: Customer) -> datetime | None:
        """The customer's sync was cut off by the database: take it up again from the record."""
        ended_here = SyncAttempt.objects.filter(run=self.run, customer=customer, final=True)
        final = ended_here.first()
        if final is not None:  # its end is on record: report it (once)
            self.attempts.report([final])
            return None
        cut_off(SyncAttempt.objects.filter(run=self.run, customer=customer))
        row = self.claims.held().filter(pk=customer.pk).first()
        if row is None:  # taken over by another run while the database was away
            self.customers.skip(customer, TAKEN_BY_ANOTHER)
            return None
        return self.customers.sync(row, taken_over=True)

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
            self.observer.waiting(WaitKind.SETTLE, settles_at)
            self.client.gate.wait_until(settles_at)
        settles_again = self._sync_one(customer, partial(self.customers.sync_settled, customer))
        if settles_again is not None:
            self.customers.leave_waiting(customer, settles_again)

    def _stop(self, exc: Exception) -> None:
        """A stopped run leaves what it had not finished failed, with the reason, for a retry:
        the customers it still holds and those it never reached (counted `unreached`)."""
        self.customers.drop_intents_ahead()
        self.answered.write()
        if isinstance(exc, AccountNumberNotKept):
            self.steps.take(partial(flag_account_number_missing, exc))
        elif isinstance(exc, VatNumberNotKept):
            self.steps.take(exc.flag)
        reason = str(exc)
        if isinstance(exc, DailyBudgetUsed):
            remaining = self.steps.take(customers_backlog().count)
            reason += (
                f"; {remaining} customer(s) remain, which the schedule takes up again from then "
                "(`zoho_plan` says when all are done)"
            )
        self.run.stop_reason = reason
        self.run.stop_needs_setup = isinstance(exc, ZohoConfigError)
        unfinished = Q(zoho_claimed_by=self.run, zoho_sync_status=SyncStatus.SYNCING)
        if self.reached is not None:
            unfinished |= Q(pk__in=self.selected.rest(self.reached).values("pk"))
        self.run.unreached_count = self.claims.release_all(
            Customer.objects.filter(unfinished), SyncStatus.FAILED, reason
        )
