"""A run's hold on its customers' rows: claim them, change them only while holding them, let go.

A run claims its customers a group at a time with one conditional UPDATE, so two runs never
work on one customer. Every later change touches only the sync columns and requires the claim:
a person's edit made meanwhile survives, and a run that lost its claim (it was too slow and was
taken for dead) never overwrites the work of the run that took over. A run renews its claims
while it waits. Each change is one step of the run's `steps` (database.py): a conditional
UPDATE, safe to take again after a lost database.

A run that cannot renew its claims (its database is away, its process starved) may be taken
for dead while it still has requests to send. So it keeps the time it last stamped each claim,
and before a write to Zoho a claim stamped longer ago than `fence_seconds` is stamped again
(`keep`), or found lost: a run taking it over (after ZOHO_STALE_CLAIM_SECONDS) then looks in
Zoho at least ZOHO_CREATE_SETTLE_SECONDS after the last create its first holder can have sent.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Case, DateTimeField, Expression, Field, Q, QuerySet, Value, When
from django.db.models.functions import Cast
from django.utils import timezone

from billing_sync.database import DatabaseSteps
from billing_sync.models import Customer, SyncRun, SyncStatus


@dataclass(frozen=True)
class InStep:
    """The data Zoho holds for a customer: the row's updated_at it came from, and its hash."""

    data_at: datetime
    fields_hash: str


def _in_step_columns(in_step: InStep | None) -> dict[str, Any]:
    if in_step is None:
        return {"zoho_synced_data_at": None, "zoho_synced_hash": ""}
    return {"zoho_synced_data_at": in_step.data_at, "zoho_synced_hash": in_step.fields_hash}


def released_columns(status: SyncStatus, error: str) -> dict[str, Any]:
    """The columns that end a claim with `status` and `error` as the customer's last error."""
    return {
        "zoho_sync_status": status,
        "zoho_last_error": error,
        "zoho_claimed_at": None,
        "zoho_claimed_by": None,
    }


class Claims:
    """The customers one run holds."""

    def __init__(self, run: SyncRun, steps: DatabaseSteps, *, fence_seconds: float) -> None:
        self.run = run
        self.steps = steps
        self.fence_seconds = fence_seconds
        # When (time.monotonic) each claim of the group at hand was last stamped, no later than
        # the database's stamp. Only the group's: memory stays flat however long the run; one
        # held from an earlier group (its create settling) is stamped again before its write.
        self._stamped: dict[int, float] = {}

    def take(self, customers: list[Customer], wanted: Q) -> dict[int, Customer]:
        """Claim those of `customers` the run still wants; their rows as claimed, by id.

        A customer another run took meanwhile is simply not among them.
        """
        ids = [customer.pk for customer in customers]
        stamped = time.monotonic()

        def claim() -> dict[int, Customer]:
            Customer.objects.filter(pk__in=ids).filter(wanted).update(
                zoho_sync_status=SyncStatus.SYNCING,
                zoho_claimed_at=timezone.now(),
                zoho_claimed_by=self.run,
            )
            return {customer.pk: customer for customer in self.held().filter(pk__in=ids)}

        claimed = self.steps.take(claim)
        self._stamped = dict.fromkeys(claimed, stamped)
        return claimed

    def holding(self, customer: Customer) -> Customer | None:
        """The customer's row as it stands, while this run holds it (None: it does not)."""
        return self.steps.take(lambda: self.held().filter(pk=customer.pk).first())

    def held(self) -> QuerySet[Customer]:
        """The customers this run holds now."""
        return Customer.objects.filter(
            zoho_claimed_by=self.run, zoho_sync_status=SyncStatus.SYNCING
        )

    def renew(self) -> None:
        """Keep the claims fresh while the run waits, so nobody takes them for abandoned."""
        stamped = time.monotonic()
        self.steps.take(lambda: self.held().update(zoho_claimed_at=timezone.now()))
        self._stamped.update(dict.fromkeys(self._stamped, stamped))

    def fresh(self, customer: Customer) -> bool:
        """Whether the customer's claim was stamped within `fence_seconds`: no other run can
        take it over before a request sent now has long reached Zoho."""
        stamped = self._stamped.get(customer.pk)
        return stamped is not None and time.monotonic() - stamped < self.fence_seconds

    def keep(self, customer: Customer) -> bool:
        """Stamp the customer's claim again, if this run still holds it; whether it does."""
        stamped = time.monotonic()
        held = self.held().filter(pk=customer.pk)
        if not self.steps.take(lambda: held.update(zoho_claimed_at=timezone.now())):
            return False
        self._stamped[customer.pk] = stamped
        return True

    def update(self, customer: Customer, **columns: Any) -> bool:
        """Change sync columns of a customer, only while this run holds it."""
        held = Customer.objects.filter(pk=customer.pk, zoho_claimed_by=self.run)
        return bool(self.steps.take(lambda: held.update(**columns)))

    def release(self, customer: Customer, status: SyncStatus, error: str = "") -> None:
        """Let go of a customer, leaving it with `status`."""
        self.update(customer, **released_columns(status, error))

    def mark_synced(
        self,
        customer: Customer,
        zoho_customer_id: str,
        in_step: InStep | None,
        *,
        inactive: bool = False,
    ) -> None:
        """Link the customer to its Zoho customer and let go of it. `in_step`: the data Zoho
        now holds; None when it may differ from ours (the next sync pushes ours). `inactive`:
        Zoho holds it inactive."""
        columns = _synced_columns(zoho_customer_id, timezone.now())
        columns.update(_in_step_columns(in_step), zoho_inactive=inactive)
        with _savepoint_if_nested():
            self.update(customer, **columns)

    def mark_many_synced(
        self, linked: dict[int, tuple[str, InStep | None]], when: datetime
    ) -> None:
        """Link these customers, just created (by id: their Zoho id, and the data Zoho holds,
        None when not all of ours) and let go of them, in one statement."""
        held = Customer.objects.filter(pk__in=linked, zoho_claimed_by=self.run)
        held.update(
            **_synced_columns(
                value_by_pk({pk: zoho_id for pk, (zoho_id, _) in linked.items()}), when
            ),
            zoho_synced_data_at=value_by_pk(
                {pk: step and step.data_at for pk, (_, step) in linked.items()},
                DateTimeField(),  # typed: a row not in step gets NULL
            ),
            zoho_synced_hash=value_by_pk(
                {pk: step.fields_hash if step else "" for pk, (_, step) in linked.items()}
            ),
            zoho_inactive=False,
        )

    def mark_pushed(
        self,
        customer: Customer,
        in_step: InStep | None,
        *,
        inactive: bool | None = None,
        vat_kept: bool = True,
    ) -> None:
        """Zoho accepted our data for this customer: in step (None: not all of it held as sent,
        the next sync sends it again), let go of it. `inactive`: the status Zoho now holds,
        when known; `vat_kept`: whether Zoho's answer carried our VAT number back."""
        columns = released_columns(SyncStatus.SYNCED, "")
        columns.update(
            _in_step_columns(in_step),
            zoho_last_synced_at=timezone.now(),
            zoho_account_number_missing=False,
            zoho_vat_number_missing=not vat_kept,
        )
        if inactive is not None:
            columns["zoho_inactive"] = inactive
        self.update(customer, **columns)

    def mark_not_created(self, customer: Customer) -> None:
        """A customer closed before it reached Zoho is let go, not created: decided for its data
        as it is (the runs take it again once it is edited, reopened for one). Zoho was looked
        in first, so an earlier create in doubt is settled: it is not there."""
        customer.zoho_create_sent_at = None
        self.update(
            customer,
            **released_columns(SyncStatus.PENDING, ""),
            zoho_synced_data_at=customer.updated_at,
            zoho_create_sent_at=None,
        )

    def set_create_sent(self, customer: Customer, when: datetime | None) -> None:
        """Record (or clear, with None) that a create of this customer went out at `when`."""
        customer.zoho_create_sent_at = when
        self.update(customer, zoho_create_sent_at=when)

    def set_creates_sent(self, customers: list[Customer], when: datetime | None) -> None:
        """Record (or clear), in one statement, that creates of these customers are about to go
        out."""
        held = Customer.objects.filter(
            pk__in=[customer.pk for customer in customers], zoho_claimed_by=self.run
        )
        self.steps.take(lambda: held.update(zoho_create_sent_at=when))
        for customer in customers:
            customer.zoho_create_sent_at = when

    def release_all(self, customers: QuerySet[Customer], status: SyncStatus, error: str) -> int:
        """Let go of these customers (held by this run, or not held at all); how many."""

        def release() -> int:
            with transaction.atomic():  # the count is the one that committed
                return customers.update(**released_columns(status, error))

        return self.steps.take(release)


def unclaimed(customer_ids: list[int], status: SyncStatus) -> QuerySet[Customer]:
    """These customers, as long as no run has claimed them since and their status holds."""
    return Customer.objects.filter(
        pk__in=customer_ids, zoho_claimed_by=None, zoho_sync_status=status
    )


def _synced_columns(zoho_customer_id: Any, now: datetime) -> dict[str, Any]:
    return {
        "zoho_billing_customer_id": zoho_customer_id,
        "zoho_last_synced_at": now,
        "zoho_create_sent_at": None,
        **released_columns(SyncStatus.SYNCED, ""),
    }


def _savepoint_if_nested() -> AbstractContextManager[Any]:
    """A savepoint when a caller's transaction is open, so a unique-id clash cannot break it.

    Outside one, the single statement commits on its own: no transaction round trips.
    """
    return transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext()


def value_by_pk(values: dict[int, Any], output_field: Field | None = None) -> Expression:
    """A CASE expression giving each row (by primary key) its own value, for one UPDATE.
    With `output_field` and a NULL among the values, cast to its type: a CASE of NULLs alone
    is text to PostgreSQL."""
    whens = [When(pk=pk, then=Value(value, output_field)) for pk, value in values.items()]
    case = Case(*whens, output_field=output_field)
    if output_field is None or all(value is not None for value in values.values()):
        return case
    return Cast(case, output_field)


def claim_fence_seconds(*, stale_claim_seconds: float, create_settle_seconds: float) -> float:
    """How old a claim may be when a write to Zoho goes on it unchecked: half of what is left
    of ZOHO_STALE_CLAIM_SECONDS once a create has had ZOHO_CREATE_SETTLE_SECONDS to show in
    Zoho's search (90 s at the defaults, 300 and 120). A run taking the customer over looks
    in Zoho no sooner than the stale interval after the stamp, so a create sent unchecked has
    had more than the settle interval by then. 0 (every write checked) when the settle
    interval is not the shorter."""
    return max(stale_claim_seconds - create_settle_seconds, 0.0) / 2
