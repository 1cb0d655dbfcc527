"""Syncing one customer: claim it, check it, adopt or create it in Zoho, audit every attempt.

A create is recorded as sent before it goes out; while its outcome is unknown, the next attempt
searches Zoho before creating again, so a lost answer never becomes a duplicate billing
customer. Every change to the customer row is conditional on this run still holding its claim:
a run that lost its claim to another never overwrites that run's work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRun,
    SyncRunStatus,
    SyncStatus,
)
from billing_sync.services.customer_data import (
    account_number_field,
    customer_validation_errors,
    customer_zoho_payload,
)
from billing_sync.services.matching import ZohoCustomerFinder
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import (
    DailyBudgetUsed,
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
RUN_STOPPERS = (RateLimitWaitExceeded, DailyBudgetUsed, ZohoAuthError, ZohoConfigError)
MAX_BACKOFF_SECONDS = 60.0
FINISHED_FIELDS = [
    "outcome",
    "finished_at",
    "zoho_customer_id",
    "error_message",
    "http_status",
    "zoho_code",
]
SYNCED_OUTCOMES = {AttemptOutcome.CREATED, AttemptOutcome.ADOPTED}
FAILED_OUTCOMES = {AttemptOutcome.FAILED, AttemptOutcome.INVALID, AttemptOutcome.RATE_LIMITED}


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


class CreateMayStillRun(Exception):
    """A create of ours got no answer and Zoho may still be working on it: do not look yet."""

    def __init__(self, settles_at: datetime) -> None:
        super().__init__(
            "Zoho may still be creating this customer (a create got no answer); looking in "
            f"Zoho after {settles_at.astimezone(UTC):%H:%M:%S} UTC, before creating again"
        )


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
        self._attempt: SyncAttempt | None = None
        self._prepared: dict[int, SyncAttempt] = {}  # creates on record, not sent yet
        self.created = AnsweredCreates(run)
        # Whether Zoho has surely finished the last create sent for the customer at hand.
        self._create_ended = False
        # While we wait for a Zoho block, keep our claims fresh so nobody takes them as abandoned.
        client.gate.heartbeat = self.heartbeat
        client.before_send = self._save_attempt

    def claim(self, customers: list[Customer], selection: Q) -> dict[int, Customer]:
        """Take those of `customers` still in `selection` for this run; their rows as claimed.

        One conditional UPDATE: a customer another run took meanwhile is simply not returned.
        """
        ids = [customer.pk for customer in customers]
        Customer.objects.filter(pk__in=ids).filter(selection).update(
            zoho_sync_status=SyncStatus.SYNCING,
            zoho_claimed_at=timezone.now(),
            zoho_claimed_by=self.run,
        )
        claimed = Customer.objects.filter(
            pk__in=ids, zoho_claimed_by=self.run, zoho_sync_status=SyncStatus.SYNCING
        )
        return {customer.pk: customer for customer in claimed}

    def prepare_creates(self, selected: list[Customer], claimed: dict[int, Customer]) -> None:
        """Record ahead, in one INSERT and one UPDATE, the creates this group will plainly send.

        Plainly: valid, new to this run and to Zoho's index, with no earlier create in doubt.
        Each gets its "sending" attempt and its create-sent mark before any of them goes out,
        as one at a time would; `sync` then sends it without writing either again.
        """
        plain = [
            claimed[customer.pk]
            for customer in selected
            if customer.pk in claimed and self._plainly_new(customer, claimed[customer.pk])
        ]
        if len(plain) < 2:
            return
        attempts = [new_attempt(self.run, customer, AttemptOutcome.SENDING) for customer in plain]
        SyncAttempt.objects.bulk_create(attempts)
        now = timezone.now()
        Customer.objects.filter(
            pk__in=[customer.pk for customer in plain], zoho_claimed_by=self.run
        ).update(zoho_create_sent_at=now)
        for customer, attempt in zip(plain, attempts, strict=True):
            customer.zoho_create_sent_at = now
            self._prepared[customer.pk] = attempt

    def drop_prepared(self) -> None:
        """The run stops: creates recorded ahead but never sent were not attempts; undo them."""
        if not self._prepared:
            return
        ids = list(self._prepared)
        SyncAttempt.objects.filter(pk__in=[a.pk for a in self._prepared.values()]).delete()
        Customer.objects.filter(pk__in=ids, zoho_claimed_by=self.run).update(
            zoho_create_sent_at=None
        )
        self._prepared.clear()

    def _plainly_new(self, selected: Customer, customer: Customer) -> bool:
        return (
            selected.zoho_sync_status != SyncStatus.SYNCING
            and customer.zoho_create_sent_at is None
            and not customer_validation_errors(customer)
            and self.finder.plainly_absent(customer)
        )

    def sync(self, selected: Customer, claimed: Customer | None) -> CustomerResult:
        """Check and sync a customer this run claimed; raise only what should stop the whole run.

        `selected` is the row as the run selected it, `claimed` as it is now that the run
        holds it (None: another run took it first).
        """
        if claimed is None:
            message = "no longer needs syncing or another run is working on it"
            return customer_result(selected, AttemptOutcome.SKIPPED, error=message)
        customer = claimed
        self._create_ended = False
        try:
            taking_over = selected.zoho_sync_status == SyncStatus.SYNCING
            prepared = customer.pk in self._prepared
            if taking_over or (customer.zoho_create_sent_at is not None and not prepared):
                _close_interrupted_attempts(customer, self.run)
            errors = customer_validation_errors(customer)
            if errors:
                message = "; ".join(errors)
                record_attempt(self.run, customer, AttemptOutcome.INVALID, error=message)
                self._update(customer, **released_columns(SyncStatus.NEEDS_ATTENTION, message))
                return customer_result(customer, AttemptOutcome.INVALID, error=message)
            return self._attempt_until_done(customer, self._prepared.pop(customer.pk, None))
        finally:
            self._attempt = None

    def heartbeat(self) -> None:
        """Before a wait: write the creates answered so far, renew this run's claims."""
        self.created.write()
        Customer.objects.filter(
            zoho_claimed_by=self.run, zoho_sync_status=SyncStatus.SYNCING
        ).update(zoho_claimed_at=timezone.now())

    def _attempt_until_done(
        self, customer: Customer, prepared: SyncAttempt | None = None
    ) -> CustomerResult:
        """Attempt until synced or failed; `prepared`: the first attempt is a create on record."""
        transient_failures = 0
        while True:
            if transient_failures:  # the claim is fresh on the first attempt
                self.heartbeat()
            # Written with the first change it goes with, and always before a request goes out.
            attempt = prepared or new_attempt(self.run, customer, AttemptOutcome.SENDING)
            self._attempt = attempt
            try:
                if prepared:
                    prepared = None
                    zoho_customer, outcome = self._create(customer), AttemptOutcome.CREATED
                else:
                    zoho_customer, outcome = self._adopt_or_create(customer)
                if outcome == AttemptOutcome.CREATED:
                    self.created.add(customer, attempt, zoho_customer.customer_id)
                else:
                    # The audit first: should we die before the customer row is written, the
                    # next run finds the adoption on record and the customer in Zoho again.
                    _finish(attempt, outcome, zoho_customer_id=zoho_customer.customer_id)
                    self._mark_synced(customer, zoho_customer)
            except RUN_STOPPERS as exc:
                limited = isinstance(exc, ZohoRateLimited)
                _finish(
                    attempt, AttemptOutcome.RATE_LIMITED if limited else AttemptOutcome.FAILED, exc
                )
                raise
            except ZohoRateLimited as exc:
                # Zoho refused the request, so nothing was created: wait out the block, go on.
                _finish(attempt, AttemptOutcome.RATE_LIMITED, exc)
                self.client.gate.wait_while_blocked()
            except CreateMayStillRun as exc:
                # Leave it for a later run: by then Zoho has finished or dropped the create.
                _finish(attempt, AttemptOutcome.FAILED, exc)
                return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
            except ZohoTransient as exc:
                _finish(attempt, AttemptOutcome.FAILED, exc)
                transient_failures += 1
                if transient_failures >= self.config.max_attempts:
                    return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
                if not self._create_may_still_run(customer):
                    self.created.write()
                    self.sleep(self._backoff(transient_failures))
            except ZohoInvalidData as exc:
                _finish(attempt, AttemptOutcome.INVALID, exc)
                return self._fail(customer, SyncStatus.NEEDS_ATTENTION, AttemptOutcome.INVALID, exc)
            except (ZohoError, IntegrityError) as exc:
                _finish(attempt, AttemptOutcome.FAILED, exc)
                return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
            else:
                return customer_result(
                    customer, outcome, zoho_customer_id=zoho_customer.customer_id
                )

    def _save_attempt(self) -> None:
        """A request is about to go out: the attempt it belongs to must be on record first."""
        if self._attempt is not None and self._attempt.pk is None:
            self._attempt.save()

    def _adopt_or_create(self, customer: Customer) -> tuple[ZohoCustomer, str]:
        outcome_unknown = customer.zoho_create_sent_at is not None
        if self._create_may_still_run(customer):
            raise CreateMayStillRun(self._settles_at(customer))
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
        return self._create(customer), AttemptOutcome.CREATED

    def _create(self, customer: Customer) -> ZohoCustomer:
        """Send the create (its attempt and create-sent mark are on record); settle the mark."""
        payload = customer_zoho_payload(customer, account_field=self.config.account_number_field)
        try:
            created = self.client.create_customer(payload)
        except ZohoTransient as exc:
            self._create_ended = not exc.may_still_run
            if not exc.request_sent:
                self._set_create_sent(customer, None)
            elif exc.may_still_run:
                # Count the settling time from when we gave up, not from when we meant to send.
                self._set_create_sent(customer, timezone.now())
            raise
        except ZohoError:
            # A definite answer: Zoho did not create it (and we found no earlier create).
            self._set_create_sent(customer, None)
            raise
        return created

    def _create_may_still_run(self, customer: Customer) -> bool:
        """An earlier create got no answer, Zoho may still be on it, and it is too soon to look.

        Searching before Zoho finishes would miss the customer and lead to a duplicate.
        """
        if customer.zoho_create_sent_at is None or self._create_ended:
            return False
        return timezone.now() < self._settles_at(customer)

    def _settles_at(self, customer: Customer) -> datetime:
        return customer.zoho_create_sent_at + timedelta(seconds=self.config.create_settle_seconds)

    def _update(self, customer: Customer, **fields: Any) -> bool:
        """Change sync columns only, and only while this run holds the claim.

        update() touches just these columns, so a concurrent edit of the customer survives.
        """
        return bool(
            Customer.objects.filter(pk=customer.pk, zoho_claimed_by=self.run).update(**fields)
        )

    def _mark_synced(self, customer: Customer, zoho_customer: ZohoCustomer) -> None:
        with _savepoint_if_nested():
            self._update(
                customer,
                zoho_billing_customer_id=zoho_customer.customer_id,
                zoho_last_synced_at=timezone.now(),
                zoho_create_sent_at=None,
                **released_columns(SyncStatus.SYNCED, ""),
            )

    def _set_create_sent(self, customer: Customer, when: datetime | None) -> None:
        # The attempt first: a crash between the two leaves it "sending", which the next run
        # marks interrupted; no request has gone out yet. (No transaction: a round trip less.)
        self._save_attempt()
        customer.zoho_create_sent_at = when
        self._update(customer, zoho_create_sent_at=when)

    def _fail(
        self, customer: Customer, status: str, outcome: str, exc: Exception
    ) -> CustomerResult:
        message = _describe(exc)
        self._update(customer, **released_columns(status, message))
        return customer_result(customer, outcome, error=message)

    def _backoff(self, failures: int) -> float:
        return min(self.config.retry_backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)


class AnsweredCreates:
    """Creates Zoho has answered, written to the database together: two statements a group.

    Written at the end of each group, before any wait, and before a stopped run marks what it
    left. Should the process die before, each such customer still carries its create-sent mark
    and its "sending" attempt: the next run takes it over, finds it in Zoho and adopts it.
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
        by_attempt = {attempt.pk: zoho_id for _, attempt, zoho_id in answered}
        SyncAttempt.objects.filter(pk__in=by_attempt).update(
            outcome=AttemptOutcome.CREATED,
            finished_at=now,
            zoho_customer_id=_value_by_pk(by_attempt),
        )
        Customer.objects.filter(pk__in=zoho_ids, zoho_claimed_by=self.run).update(
            zoho_billing_customer_id=_value_by_pk(zoho_ids),
            zoho_last_synced_at=now,
            zoho_create_sent_at=None,
            **released_columns(SyncStatus.SYNCED, ""),
        )

    def _write_one(self, customer: Customer, attempt: SyncAttempt, zoho_id: str) -> bool:
        try:
            with transaction.atomic():
                self._write_all([(customer, attempt, zoho_id)], timezone.now())
        except IntegrityError as exc:
            _finish(attempt, AttemptOutcome.FAILED, exc, zoho_customer_id=zoho_id)
            Customer.objects.filter(pk=customer.pk, zoho_claimed_by=self.run).update(
                **released_columns(SyncStatus.FAILED, _describe(exc))
            )
            return False
        return True


def _value_by_pk(values: dict[int, str]) -> Case:
    return Case(*(When(pk=pk, then=Value(value)) for pk, value in values.items()))


def _savepoint_if_nested() -> AbstractContextManager[Any]:
    """A savepoint when a caller's transaction is open, so a unique-id clash cannot break it.

    Outside one, the single statement commits on its own: no transaction round trips.
    """
    return transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext()


def released_columns(status: str, error: str) -> dict[str, Any]:
    """The columns that end a claim with `status`."""
    return {
        "zoho_sync_status": status,
        "zoho_last_error": error,
        "zoho_claimed_at": None,
        "zoho_claimed_by": None,
    }


def _close_interrupted_attempts(customer: Customer, run: SyncRun) -> None:
    """Attempts another run left "sending" were cut off (we now hold the claim): say so."""
    interrupted = SyncAttempt.objects.filter(
        customer=customer, outcome=AttemptOutcome.SENDING
    ).exclude(run=run)
    run_ids = set(interrupted.values_list("run_id", flat=True))
    if not run_ids:
        return
    interrupted.update(
        outcome=AttemptOutcome.INTERRUPTED,
        finished_at=timezone.now(),
        error_message=f"interrupted: its run stopped mid-attempt; run #{run.pk} took over",
    )
    SyncRun.objects.filter(pk__in=run_ids, status=SyncRunStatus.RUNNING).update(
        status=SyncRunStatus.INTERRUPTED,
        stop_reason=f"interrupted (its process died); run #{run.pk} took over its customers",
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, IntegrityError):
        return "the Zoho customer found is already linked to another local customer"
    return str(exc)


def customer_result(customer: Customer, outcome: str, **kwargs: str) -> CustomerResult:
    return CustomerResult(customer.pk, customer.email, customer.account_number, outcome, **kwargs)


def new_attempt(run: SyncRun, customer: Customer, outcome: str, *, error: str = "") -> SyncAttempt:
    """An attempt, not saved yet; finished unless it is still "sending"."""
    return SyncAttempt(
        run=run,
        customer=customer,
        customer_email=customer.email[:254],
        account_number=customer.account_number[:32],
        outcome=outcome,
        error_message=error,
        finished_at=None if outcome == AttemptOutcome.SENDING else timezone.now(),
    )


def record_attempt(run: SyncRun, customer: Customer, outcome: str, *, error: str = "") -> None:
    """Write a finished attempt."""
    new_attempt(run, customer, outcome, error=error).save()


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
    if attempt.pk is None:
        attempt.save()
    else:
        attempt.save(update_fields=FINISHED_FIELDS)
