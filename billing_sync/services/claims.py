"""A run's hold on its customers' rows: claim them, change them only while holding them, let go.

A run claims its customers a group at a time with one conditional UPDATE, so two runs never
work on one customer. Every later change touches only the sync columns and requires the claim:
a person's edit made meanwhile survives, and a run that lost its claim (it was too slow and was
taken for dead) never overwrites the work of the run that took over. A run renews its claims
while it waits. Creates Zoho answered are written a group at a time (`AnsweredCreates`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncRun, SyncStatus
from billing_sync.services.audit import describe, finish_attempt, finish_created, value_by_pk


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

    def __init__(self, run: SyncRun) -> None:
        self.run = run

    def take(self, customers: list[Customer], selection: Q) -> dict[int, Customer]:
        """Claim those of `customers` still in `selection`; their rows as claimed, by id.

        A customer another run took meanwhile is simply not among them.
        """
        ids = [customer.pk for customer in customers]
        Customer.objects.filter(pk__in=ids).filter(selection).update(
            zoho_sync_status=SyncStatus.SYNCING,
            zoho_claimed_at=timezone.now(),
            zoho_claimed_by=self.run,
        )
        return {customer.pk: customer for customer in self.held().filter(pk__in=ids)}

    def held(self) -> QuerySet[Customer]:
        """The customers this run holds now."""
        return Customer.objects.filter(
            zoho_claimed_by=self.run, zoho_sync_status=SyncStatus.SYNCING
        )

    def renew(self) -> None:
        """Keep the claims fresh while the run waits, so nobody takes them for abandoned."""
        self.held().update(zoho_claimed_at=timezone.now())

    def update(self, customer: Customer, **columns: Any) -> bool:
        """Change sync columns of a customer, only while this run holds it."""
        return bool(
            Customer.objects.filter(pk=customer.pk, zoho_claimed_by=self.run).update(**columns)
        )

    def release(self, customer: Customer, status: SyncStatus, error: str = "") -> None:
        """Let go of a customer, leaving it with `status`."""
        self.update(customer, **released_columns(status, error))

    def mark_synced(self, customer: Customer, zoho_customer_id: str) -> None:
        """Link the customer to its Zoho customer and let go of it."""
        with _savepoint_if_nested():
            self.update(customer, **_synced_columns(zoho_customer_id, timezone.now()))

    def set_create_sent(self, customer: Customer, when: datetime | None) -> None:
        """Record (or clear, with None) that a create of this customer went out at `when`."""
        customer.zoho_create_sent_at = when
        self.update(customer, zoho_create_sent_at=when)

    def set_creates_sent(self, customers: list[Customer], when: datetime | None) -> None:
        """Record (or clear), in one statement, that creates of these customers are about to go
        out."""
        Customer.objects.filter(
            pk__in=[customer.pk for customer in customers], zoho_claimed_by=self.run
        ).update(zoho_create_sent_at=when)
        for customer in customers:
            customer.zoho_create_sent_at = when

    def release_all(self, customers: QuerySet[Customer], status: SyncStatus, error: str) -> int:
        """Let go of these customers (held by this run, or not held at all); how many."""
        return customers.update(**released_columns(status, error))


def unclaimed(customer_ids: list[int], status: SyncStatus) -> QuerySet[Customer]:
    """These customers, as long as no run has claimed them since and their status holds."""
    return Customer.objects.filter(
        pk__in=customer_ids, zoho_claimed_by=None, zoho_sync_status=status
    )


class AnsweredCreates:
    """Creates Zoho has answered, written to the database together: two statements a group.

    Written at the end of each group, before any wait, and before a stopped run lets go of
    what it holds. Should the process die before, each such customer still carries its
    create-sent mark and its "sending" attempt: the next run takes it over, finds it in Zoho
    and adopts it.
    """

    def __init__(self, run: SyncRun) -> None:
        self.run = run
        self._answered: list[tuple[Customer, SyncAttempt, str]] = []
        # Created in Zoho but left failed here: the Zoho id was linked to another customer.
        self.unlinked = 0

    def add(self, customer: Customer, attempt: SyncAttempt, zoho_customer_id: str) -> None:
        """Zoho created `customer` as `zoho_customer_id` in `attempt`."""
        self._answered.append((customer, attempt, zoho_customer_id))

    def write(self) -> None:
        """Write the answered creates."""
        if not self._answered:
            return
        answered, self._answered = self._answered, []
        try:
            with transaction.atomic():
                self._write_all(answered, timezone.now())
        except IntegrityError:  # a Zoho id already linked elsewhere: find which, one by one
            self.unlinked += sum(not self._write_one(*entry) for entry in answered)

    def _write_all(self, answered: list[tuple[Customer, SyncAttempt, str]], now: datetime) -> None:
        zoho_ids = {customer.pk: zoho_id for customer, _, zoho_id in answered}
        finish_created({attempt.pk: zoho_id for _, attempt, zoho_id in answered}, now)
        Customer.objects.filter(pk__in=zoho_ids, zoho_claimed_by=self.run).update(
            **_synced_columns(value_by_pk(zoho_ids), now)
        )

    def _write_one(self, customer: Customer, attempt: SyncAttempt, zoho_id: str) -> bool:
        try:
            with transaction.atomic():
                self._write_all([(customer, attempt, zoho_id)], timezone.now())
        except IntegrityError as exc:
            finish_attempt(attempt, AttemptOutcome.FAILED, exc, zoho_customer_id=zoho_id)
            Customer.objects.filter(pk=customer.pk, zoho_claimed_by=self.run).update(
                **released_columns(SyncStatus.FAILED, describe(exc))
            )
            return False
        return True


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
