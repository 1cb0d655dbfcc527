"""A live run: the one that sends to Zoho. It claims its selection a group at a time, syncs
each customer (run.customer), waits for the creates still settling, and stops when it must;
each customer is reported (`Reporter`) once its final attempt is on record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from functools import partial

from django.db.models import Q
from django.utils import timezone

from billing_sync.ctrl_c import ctrl_c_held
from billing_sync.database import DatabaseSteps, DatabaseUnavailable
from billing_sync.models import Customer, SyncAttempt, SyncRun, SyncStatus, SyncTrigger
from billing_sync.run.audit import RunAttempts
from billing_sync.run.claims import Claims, claim_fence_seconds
from billing_sync.run.customer.account_numbers import (
    flag_account_number_missing,
    repair_before_creating,
)
from billing_sync.run.customer.acting import CustomerSync
from billing_sync.run.customer.creates import AnsweredCreates, IntentsAhead
from billing_sync.run.customer.decisions import TAKEN_BY_ANOTHER
from billing_sync.run.customer.matching import ZohoCustomerFinder, lookup_prefers_index
from billing_sync.run.records import cut_off, run_alive
from billing_sync.run.report import CustomerResult, RunObserver, WaitKind
from billing_sync.run.selection import RunSelection, customers_backlog
from billing_sync.run.stops import (
    RUN_STOPPERS,
    AccountNumberNotKept,
    RunInterrupted,
    VatNumberNotKept,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import DailyBudgetUsed, ZohoConfigError

# Customers claimed together. Their intents and answered creates cost a few statements a group
# (bench/backfill.py --local-only, 10,000: 517/s in groups of 10, 600/s of 25, 613/s of 50); a
# stopped run lets go of at most this many claimed and not yet sent.
CLAIM_GROUP_SIZE = 25


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


@dataclass(eq=False)
class LiveRun:
    """One run sending to Zoho: claims its selection a group at a time and syncs each customer
    (`_sync_group`), then those whose earlier create was settling (`_sync_settled`); a run
    stopper ends it (`_stop`), and so does a Ctrl-C. Each customer is reported once its final
    attempt is written."""

    run: SyncRun
    selected: RunSelection
    wanted: Q
    config: ZohoConfig
    _: KW_ONLY
    steps: DatabaseSteps
    observer: RunObserver

    def __post_init__(self) -> None:
        run, selected, config = self.run, self.selected, self.config
        steps, observer = self.steps, self.observer
        self.reporter = Reporter(observer, selected.count)
        self.attempts = RunAttempts(run, steps, on_final=self.reporter.finished)
        self.claims = Claims(
            run,
            steps,
            fence_seconds=claim_fence_seconds(
                stale_claim_seconds=config.stale_claim_seconds,
                create_settle_seconds=config.create_settle_seconds,
            ),
        )
        self.answered = AnsweredCreates(self.claims, self.attempts)
        # Wired after both are built (each needs the other): before final attempts are reported,
        # the answered creates are written, so customers are reported in the order they ended.
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
        finder = ZohoCustomerFinder(
            self.client,
            use_index=steps.take(partial(lookup_prefers_index, selected.count)),
            max_age=config.index_max_age_seconds,
        )
        self.intents = IntentsAhead(self.attempts, self.claims, finder)
        self.customers = CustomerSync(
            attempts=self.attempts,
            client=self.client,
            finder=finder,
            claims=self.claims,
            answered=self.answered,
            intents=self.intents,
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
        self.intents.write(
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
        self.intents.drop()
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
