"""What a run tells the world: each customer's result, the run's counts, and who listens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from billing_sync.models import AttemptOutcome, Customer, SyncRun

SYNCED_OUTCOMES = {AttemptOutcome.CREATED, AttemptOutcome.ADOPTED, AttemptOutcome.UPDATED}
FAILED_OUTCOMES = {AttemptOutcome.FAILED, AttemptOutcome.INVALID, AttemptOutcome.RATE_LIMITED}


@dataclass(frozen=True)
class CustomerResult:
    """How one customer ended in a run.

    `outcome` is its last attempt's; None when the run made no attempt because an earlier
    create of the customer may still be settling in Zoho until `waiting_until`.
    """

    customer_id: int
    email: str
    account_number: str
    outcome: AttemptOutcome | None
    zoho_customer_id: str = ""
    error: str = ""
    waiting_until: datetime | None = None

    @classmethod
    def of(
        cls, customer: Customer, outcome: AttemptOutcome | None, **details: object
    ) -> CustomerResult:
        """The result of `customer`, with the details given."""
        return cls(customer.pk, customer.email, customer.account_number, outcome, **details)

    @property
    def synced(self) -> bool:
        return self.outcome in SYNCED_OUTCOMES

    @property
    def adopted(self) -> bool:
        return self.outcome == AttemptOutcome.ADOPTED

    @property
    def updated(self) -> bool:
        return self.outcome == AttemptOutcome.UPDATED

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES

    @property
    def skipped(self) -> bool:
        return self.outcome == AttemptOutcome.SKIPPED

    @property
    def waiting(self) -> bool:
        return self.waiting_until is not None


class RunObserver:
    """Hears about a run's progress (commands print it); every hook is optional."""

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        """The run has selected its customers (`run.selected_count`); `customers` streams them."""

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        """Work on one customer begins."""

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        """Work on one customer ended."""

    def customer_waiting(self, index: int, total: int, customer: Customer, until: datetime) -> None:
        """An earlier create of this customer may still be settling in Zoho until `until`:
        the run comes back to it at its end."""

    def block_wait(self, until: datetime, reason: str) -> None:
        """Zoho is blocking us; the run waits until `until`."""

    def settle_wait(self, until: datetime) -> None:
        """The run waits until `until` for the customer's earlier create to settle."""

    def pace_wait(self, until: datetime) -> None:
        """The run waits until `until` for the shared budget to allow its next request."""


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
    # Of those synced, customers Zoho held already whose local edits were sent.
    updated_count: int = 0
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
        self.updated_count += result.updated
        self.failed_count += result.failed
        self.waiting_count += result.waiting
        self.skipped_count += result.skipped

    @property
    def attempted_count(self) -> int:
        """Customers the run worked on or left failed unreached, less those it skipped or left
        waiting."""
        return self.finished_count + self.unreached_count - self.skipped_count - self.waiting_count

    @property
    def ok(self) -> bool:
        """True when every customer worked on ended synced or was skipped on purpose."""
        return not self.stop_reason and self.failed_count == 0 and self.waiting_count == 0
