"""Syncing one customer: claim it, check it, adopt or create it in Zoho, audit every attempt.

A create is recorded as sent before it goes out. Any answer but "created, here it is" or a
refusal leaves its outcome unknown: the customer then WAITS until the create has settled
(ZOHO_CREATE_SETTLE_SECONDS), and Zoho is searched before creating again, so a lost answer
never becomes a duplicate billing customer. Zoho's answer must carry our account number back;
when it does not, the customer is linked and the run stops (AccountNumberNotKept). Whose fault
a refusal is, the customer's or the organization's, is decided in services/refusals.py. Every
change to the customer row is conditional on this run still holding its claim: a run that
lost its claim to another never overwrites that run's work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, Q, QuerySet, Value, When
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
    account_number_update,
    customer_validation_errors,
    customer_zoho_payload,
)
from billing_sync.services.matching import ZohoCustomerFinder
from billing_sync.services.refusals import (
    AccountFieldRefused,
    RefusalStreak,
    SystemicRefusal,
    account_field_fix,
    names_account_field,
    names_customer,
    refused_before_a_create,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import (
    DailyBudgetUsed,
    RateLimitWaitExceeded,
    ZohoConfigError,
    ZohoError,
    ZohoInvalidData,
    ZohoNotFound,
    ZohoRateLimited,
    ZohoTokenThrottled,
    ZohoTransient,
)
from billing_sync.zoho.records import ZohoCustomer

# The result of a customer left waiting for an earlier create to settle: not an attempt.
WAITING = "waiting"
MAX_BACKOFF_SECONDS = 60.0
FINISHED_FIELDS = [
    "outcome",
    "finished_at",
    "zoho_customer_id",
    "error_message",
    "http_status",
    "zoho_code",
]
SYNCED_OUTCOMES = {AttemptOutcome.CREATED, AttemptOutcome.ADOPTED, AttemptOutcome.UPDATED}
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
    def waiting(self) -> bool:
        return self.outcome == WAITING

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES


class CreateNotSettled(Exception):
    """An earlier create got no clear answer and it is too soon to look for it in Zoho."""

    def __init__(self, settles_at: datetime) -> None:
        super().__init__(settles_at)
        self.settles_at = settles_at


def not_settled_message(settles_at: datetime) -> str:
    """What a customer waiting for its earlier create to settle says."""
    return (
        "Zoho may still be creating this customer (a create got no clear answer); looking in "
        f"Zoho after {settles_at.astimezone(UTC):%H:%M:%S} UTC, before creating again"
    )


class AccountFieldUnchecked(ZohoError):
    """Whether Zoho now keeps our account number could not be checked: no creates this run."""

    def __init__(self, exc: ZohoError) -> None:
        super().__init__(
            "could not check whether Zoho now keeps our account number in its custom field "
            f"({exc}); no customer is created until it does, the next run checks again"
        )


class AccountNumberNotKept(ZohoConfigError):
    """Zoho holds the customer, but its answer does not carry our account number as sent.

    The customer is linked (never created twice); the run stops, since every later create
    would lose its account number the same way, and matching relies on it.
    """

    def __init__(self, result: CustomerResult, *, label: str, found: str | None) -> None:
        carried = f"carries {found!r}" if found else "carries none"
        super().__init__(
            f"Zoho keeps customer {result.account_number} as {result.zoho_customer_id}, but "
            f"its answer {carried} in the custom field {label!r} where we sent "
            f"{result.account_number!r}: the organization lacks that field, or it is named or "
            f"typed differently. {account_field_fix(label)}. The customer is linked; "
            "`zoho_verify --deep` lists it until its account number is written"
        )
        self.result = result


# Failures that no other customer in the run would escape: stop the run, leave the rest failed.
# A ZohoConfigError (settings, organization, scopes, the account-number field) needs a person
# to change something; the others pass with time.
RUN_STOPPERS = (
    RateLimitWaitExceeded,
    DailyBudgetUsed,
    ZohoTokenThrottled,
    ZohoConfigError,
    AccountFieldUnchecked,
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
        self.refusals = RefusalStreak()
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
        holds it (None: another run took it first). A customer whose earlier create has not
        settled yet comes back as WAITING, still claimed: the run syncs it again later
        (`sync_settled`) or leaves it (`leave_waiting`).
        """
        if claimed is None:
            message = "no longer needs syncing or another run is working on it"
            return customer_result(selected, AttemptOutcome.SKIPPED, error=message)
        customer = claimed
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

    def sync_settled(self, customer: Customer) -> CustomerResult:
        """Sync a customer that was WAITING, now that its earlier create has settled."""
        try:
            return self._attempt_until_done(customer)
        finally:
            self._attempt = None

    def leave_waiting(self, customer: Customer, settles_at: datetime) -> CustomerResult:
        """The run cannot wait for this customer's create to settle: leave it for a later run.

        No attempt is recorded: nothing was tried.
        """
        message = not_settled_message(settles_at)
        self._update(customer, **released_columns(SyncStatus.FAILED, message))
        return customer_result(customer, WAITING, error=message)

    def settles_at(self, customer: Customer) -> datetime | None:
        """When an earlier create of this customer that got no clear answer may be looked for."""
        if customer.zoho_create_sent_at is None:
            return None
        return customer.zoho_create_sent_at + timedelta(seconds=self.config.create_settle_seconds)

    def finish(self) -> None:
        """The run ends: write what Zoho answered; refusals still held stay `failed`."""
        self.created.write()
        self.refusals.take_held()

    def heartbeat(self) -> None:
        """Before a wait: write the creates answered so far, renew this run's claims."""
        self.created.write()
        Customer.objects.filter(
            zoho_claimed_by=self.run, zoho_sync_status=SyncStatus.SYNCING
        ).update(zoho_claimed_at=timezone.now())

    def _attempt_until_done(
        self, customer: Customer, prepared: SyncAttempt | None = None
    ) -> CustomerResult:
        """Attempt until synced, failed or waiting; `prepared`: the first attempt is a create
        on record."""
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
                self._link(customer, attempt, zoho_customer, outcome)
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
            except CreateNotSettled as exc:
                # Nothing was sent for this attempt: it is not one. The run comes back later.
                return customer_result(customer, WAITING, error=not_settled_message(exc.settles_at))
            except ZohoTransient as exc:
                _finish(attempt, AttemptOutcome.FAILED, exc)
                transient_failures += 1
                if transient_failures >= self.config.max_attempts:
                    return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
                if customer.zoho_create_sent_at is None:
                    self.created.write()
                    self.sleep(self._backoff(transient_failures))
            except ZohoInvalidData as exc:
                return self._refused(customer, attempt, exc)
            except (ZohoError, IntegrityError) as exc:
                _finish(attempt, AttemptOutcome.FAILED, exc)
                return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
            else:
                result = customer_result(
                    customer, outcome, zoho_customer_id=zoho_customer.customer_id
                )
                self._check_account_number(result, zoho_customer)
                return result

    def _link(
        self, customer: Customer, attempt: SyncAttempt, zoho_customer: ZohoCustomer, outcome: str
    ) -> None:
        """Zoho holds the customer: link it to ours (creates are written per group)."""
        if outcome == AttemptOutcome.CREATED:
            self.created.add(customer, attempt, zoho_customer.customer_id)
            self._refusals_were_their_own()
        else:
            # The audit first: should we die before the customer row is written, the
            # next run finds the adoption on record and the customer in Zoho again.
            _finish(attempt, outcome, zoho_customer_id=zoho_customer.customer_id)
            self._mark_synced(customer, zoho_customer)

    def _check_account_number(self, result: CustomerResult, zoho_customer: ZohoCustomer) -> None:
        """Zoho's answer must carry our account number as sent: matching relies on it."""
        if zoho_customer.account_number != result.account_number.strip():
            raise AccountNumberNotKept(
                result, label=self.config.account_number_field, found=zoho_customer.account_number
            )

    def flag_account_number_missing(self, exc: AccountNumberNotKept) -> None:
        """Mark the customer whose Zoho record lacks our account number (written already)."""
        self.created.write()
        Customer.objects.filter(pk=exc.result.customer_id).update(
            zoho_account_number_missing=True, zoho_last_error=str(exc)
        )

    def recheck_account_field(self) -> None:
        """Before creating more: write our account number into the customers Zoho holds without
        it. Once Zoho keeps it, they are repaired; while it does not, the run stops before
        creating another customer that would lack it too."""
        missing = Customer.objects.filter(
            zoho_account_number_missing=True, zoho_billing_customer_id__isnull=False
        ).order_by("zoho_last_synced_at", "pk")
        for customer in missing:
            if not customer_validation_errors(customer):  # Zoho would refuse the update
                self._write_account_number(customer)

    def _write_account_number(self, customer: Customer) -> None:
        attempt = new_attempt(self.run, customer, AttemptOutcome.SENDING)
        self._attempt = attempt
        payload = account_number_update(
            customer,
            display_name=customer.display_name,
            email=customer.email.strip(),
            account_field=self.config.account_number_field,
        )
        try:
            answer = self.client.update_customer(customer.zoho_billing_customer_id, payload)
        except RUN_STOPPERS as exc:
            _finish(attempt, AttemptOutcome.FAILED, exc)
            raise
        except ZohoNotFound as exc:  # deleted in Zoho: `zoho_verify` names it; try the next one
            _finish(attempt, AttemptOutcome.FAILED, exc)
            return
        except ZohoInvalidData as exc:
            _finish(attempt, AttemptOutcome.FAILED, exc)
            label = self.config.account_number_field
            if names_account_field(exc, label=label):
                raise AccountFieldRefused(exc, label=label) from exc
            raise AccountFieldUnchecked(exc) from exc
        except ZohoError as exc:
            _finish(attempt, AttemptOutcome.FAILED, exc)
            raise AccountFieldUnchecked(exc) from exc
        finally:
            self._attempt = None
        result = customer_result(
            customer, AttemptOutcome.UPDATED, zoho_customer_id=answer.customer_id
        )
        if answer.account_number != customer.account_number.strip():
            exc = AccountNumberNotKept(
                result, label=self.config.account_number_field, found=answer.account_number
            )
            _finish(attempt, AttemptOutcome.FAILED, exc, zoho_customer_id=answer.customer_id)
            raise exc
        _finish(attempt, AttemptOutcome.UPDATED, zoho_customer_id=answer.customer_id)
        Customer.objects.filter(pk=customer.pk).update(
            zoho_account_number_missing=False, zoho_last_error=""
        )

    def _refused(
        self, customer: Customer, attempt: SyncAttempt, exc: ZohoInvalidData
    ) -> CustomerResult:
        """Zoho refused a create or update that carried this customer's data: whose fault?"""
        label = self.config.account_number_field
        if names_account_field(exc, label=label):
            _finish(attempt, AttemptOutcome.FAILED, exc)
            raise AccountFieldRefused(exc, label=label) from exc
        if names_customer(exc, customer) or refused_before_a_create(
            customer, exc, run_id=self.run.pk
        ):
            self.refusals.interrupt()
            _finish(attempt, AttemptOutcome.INVALID, exc)
            return self._fail(customer, SyncStatus.NEEDS_ATTENTION, AttemptOutcome.INVALID, exc)
        _finish(attempt, AttemptOutcome.FAILED, exc)
        message = (
            f"{_describe(exc)}; Zoho named none of this customer's fields, so it is retried: "
            "if Zoho refuses other customers the same way, the organization is refusing creates"
        )
        self._update(customer, **released_columns(SyncStatus.FAILED, message))
        try:
            self.refusals.hold(customer, attempt, exc)
        except SystemicRefusal as stop:
            held = [customer_id for customer_id, _ in self.refusals.take_held()]
            _unclaimed(held, SyncStatus.FAILED).update(zoho_last_error=str(stop))
            raise
        return customer_result(customer, AttemptOutcome.FAILED, error=message)

    def _refusals_were_their_own(self) -> None:
        """Zoho created a customer after refusing others: those refusals were about their data."""
        self.refusals.interrupt()
        held = self.refusals.take_held()
        if not held:
            return
        SyncAttempt.objects.filter(pk__in=[attempt_id for _, attempt_id in held]).update(
            outcome=AttemptOutcome.INVALID
        )
        _unclaimed([customer_id for customer_id, _ in held], SyncStatus.FAILED).update(
            zoho_sync_status=SyncStatus.NEEDS_ATTENTION
        )

    def _save_attempt(self) -> None:
        """A request is about to go out: the attempt it belongs to must be on record first."""
        if self._attempt is not None and self._attempt.pk is None:
            self._attempt.save()

    def _adopt_or_create(self, customer: Customer) -> tuple[ZohoCustomer, str]:
        settles_at = self.settles_at(customer)
        if settles_at is not None and timezone.now() < settles_at:
            # Searching before Zoho finishes (or its search catches up) could miss the
            # customer and lead to a duplicate.
            raise CreateNotSettled(settles_at)
        existing = self.finder.find(customer, outcome_unknown=settles_at is not None)
        if existing is not None:
            if existing.account_number is None:
                payload = account_number_update(
                    customer,
                    display_name=existing.display_name,
                    email=existing.email,
                    account_field=self.config.account_number_field,
                )
                existing = self.client.update_customer(existing.customer_id, payload)
            return existing, AttemptOutcome.ADOPTED
        self._set_create_sent(customer, timezone.now())
        return self._create(customer), AttemptOutcome.CREATED

    def _create(self, customer: Customer) -> ZohoCustomer:
        """Send the create (its attempt and create-sent mark are on record); settle the mark.

        Any answer but "created, here it is" or "refused" leaves the outcome unknown: Zoho may
        have committed the record before failing, and its search may lag behind. The mark is
        then restamped, so the look in Zoho waits ZOHO_CREATE_SETTLE_SECONDS from now.
        """
        payload = customer_zoho_payload(customer, account_field=self.config.account_number_field)
        try:
            return self.client.create_customer(payload)
        except ZohoTransient as exc:
            self._set_create_sent(customer, timezone.now() if exc.request_sent else None)
            raise
        except ZohoRateLimited:
            self._set_create_sent(customer, None)  # refused for the organization: not created
            raise
        except ZohoError:
            # A definite answer: Zoho did not create it (and we found no earlier create).
            self._set_create_sent(customer, None)
            raise

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


def _unclaimed(customer_ids: list[int], status: str) -> QuerySet[Customer]:
    """These customers, as long as no run has claimed them since and their status holds."""
    return Customer.objects.filter(
        pk__in=customer_ids, zoho_claimed_by=None, zoho_sync_status=status
    )


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
