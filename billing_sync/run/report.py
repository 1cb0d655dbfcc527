"""What a run tells the world, read from what it recorded: each customer's result from its
final SyncAttempt, the run's counts from those rows and the SyncRun, and who listens."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.db.models import Count, F, Q

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncRun

# Sent to Zoho, a customer Zoho held already: its edits, its closing, its reopening.
PUSHED_OUTCOMES = {AttemptOutcome.UPDATED, AttemptOutcome.DEACTIVATED, AttemptOutcome.REACTIVATED}
SYNCED_OUTCOMES = {AttemptOutcome.CREATED, AttemptOutcome.ADOPTED, *PUSHED_OUTCOMES}
FAILED_OUTCOMES = {AttemptOutcome.FAILED, AttemptOutcome.INVALID, AttemptOutcome.RATE_LIMITED}
# Final outcomes that made no attempt at Zoho for the customer.
NOT_ATTEMPTED = {AttemptOutcome.SKIPPED, AttemptOutcome.WAITING}


@dataclass(frozen=True)
class CustomerResult:
    """How one customer ended in a run: its final attempt, as written."""

    customer_id: int | None
    email: str
    account_number: str
    outcome: AttemptOutcome
    zoho_customer_id: str = ""
    error: str = ""
    # Left waiting: when Zoho may be searched for its earlier create.
    waiting_until: datetime | None = None
    # The customer's name as the run read it (a label, not part of the outcome).
    display_name: str = ""

    @classmethod
    def of(cls, attempt: SyncAttempt, *, display_name: str = "") -> CustomerResult:
        """The result a final attempt records."""
        return cls(
            display_name=display_name,
            customer_id=attempt.customer_id,
            email=attempt.customer_email,
            account_number=attempt.account_number,
            outcome=AttemptOutcome(attempt.outcome),
            zoho_customer_id=attempt.zoho_customer_id,
            error=attempt.error_message,
            waiting_until=attempt.waiting_until,
        )

    @property
    def synced(self) -> bool:
        return self.outcome in SYNCED_OUTCOMES

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES


class WaitKind(StrEnum):
    """What a run waits for."""

    BLOCK = "block"  # Zoho is blocking the organization's requests (a 429)
    UNREACHABLE = "unreachable"  # Zoho cannot be reached: looked at again then
    DATABASE = "database"  # the database went away: waited for, then the run goes on
    SETTLE = "settle"  # the customer's earlier create may still be settling in Zoho
    PACE = "pace"  # the shared budget allows the next request then


class RunObserver:
    """Hears about a run's progress (commands print it); every hook is optional."""

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        """The run has selected its customers (`run.selected_count`); `customers` streams them."""

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        """Work on one customer begins."""

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        """One customer's final attempt is on record: how it ended."""

    def customer_waiting(self, index: int, total: int, customer: Customer, until: datetime) -> None:
        """An earlier create of this customer may still be settling in Zoho until `until`:
        the run comes back to it at its end."""

    def waiting(self, kind: WaitKind, until: datetime | None = None, reason: str = "") -> None:
        """The run waits for `kind` until `until` (None: until the database answers) because
        of `reason` (Zoho's or the database's words; empty where `kind` says all)."""


def run_finished_customers(run: SyncRun) -> Iterator[tuple[CustomerResult, str | None]]:
    """Each customer the run finished, from its final attempt, with the customer's status as it
    stands now (None: deleted since), in the order they were written; read in chunks, so any
    size of run fits."""
    finals = (
        SyncAttempt.objects.filter(run=run, final=True)
        .annotate(status_after=F("customer__zoho_sync_status"))
        .order_by("pk")
    )
    for attempt in finals.iterator(chunk_size=2000):
        yield CustomerResult.of(attempt), attempt.status_after


class ResultCollector(RunObserver):
    """Keeps every customer's result: for runs over a few customers (an admin selection)."""

    def __init__(self) -> None:
        self.results: list[CustomerResult] = []

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        self.results.append(result)


@dataclass(frozen=True)
class RunReport:
    """What a run did, read from its SyncRun and its final attempts: counts only, so any size
    of run fits. The one place that counts."""

    run: SyncRun
    selected_count: int = 0
    # Customers of the selection the run took up (each to end with a final attempt).
    reached_count: int = 0
    # Customers with a final attempt in the run.
    finished_count: int = 0
    # Of those, the ones the run made an attempt at (not skipped, not left waiting).
    attempted_count: int = 0
    synced_count: int = 0
    # Of those synced, customers Zoho held already whose local edits were sent (closing and
    # reopening included).
    updated_count: int = 0
    skipped_count: int = 0
    # Customers that ended failed, counting those a stopped run never reached.
    failed_count: int = 0
    unreached_count: int = 0
    # Left for a later run: an earlier create may still be settling in Zoho.
    waiting_count: int = 0
    # Of a dry run's customers, those whose data our checks refuse.
    refused_count: int = 0

    @classmethod
    def of(cls, run: SyncRun) -> RunReport:
        """Count what `run` recorded: one SELECT over its final attempts."""
        by_outcome: dict[str, int] = {}
        refused = 0
        for outcome, customers, with_error in (
            SyncAttempt.objects.filter(run=run, final=True)
            .values_list("outcome")
            .annotate(customers=Count("pk"), with_error=Count("pk", filter=~Q(error_message="")))
            .order_by()
        ):
            by_outcome[outcome] = customers
            if outcome == AttemptOutcome.DRY_RUN:
                refused = with_error

        def counted(outcomes: Iterable[str]) -> int:
            return sum(by_outcome.get(outcome, 0) for outcome in outcomes)

        finished = sum(by_outcome.values())
        return cls(
            run=run,
            selected_count=run.selected_count,
            reached_count=run.reached_count,
            finished_count=finished,
            attempted_count=finished - counted(NOT_ATTEMPTED),
            synced_count=counted(SYNCED_OUTCOMES),
            updated_count=counted(PUSHED_OUTCOMES),
            skipped_count=counted([AttemptOutcome.SKIPPED]),
            failed_count=counted(FAILED_OUTCOMES) + run.unreached_count,
            unreached_count=run.unreached_count,
            waiting_count=counted([AttemptOutcome.WAITING]),
            refused_count=refused,
        )

    @property
    def stop_reason(self) -> str:
        return self.run.stop_reason

    @property
    def stop_needs_setup(self) -> bool:
        """Whether the stop needs a person to change a setting or the organization (exit 2)."""
        return self.run.stop_needs_setup

    @property
    def duration_seconds(self) -> float:
        """From the run's start to its finish, as recorded."""
        if self.run.finished_at is None:
            return 0.0
        return (self.run.finished_at - self.run.started_at).total_seconds()

    @property
    def unaccounted_count(self) -> int:
        """Customers the run took up whose final attempt is not on record."""
        return max(0, self.reached_count - self.finished_count)

    @property
    def ok(self) -> bool:
        """True when every customer the run took up has its final attempt on record, and each
        ended synced or was skipped on purpose."""
        return (
            not self.stop_reason
            and self.failed_count == 0
            and self.waiting_count == 0
            and self.unaccounted_count == 0
        )
