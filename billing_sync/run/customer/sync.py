"""One customer's sync: decide what to do with it, then do it, recording every attempt.

`decide` takes the decisions for one customer, reading and writing nothing (so `zoho_plan`
shows what a run will do), in this order:
1. its data is checked (customer_data.py): a record Zoho would refuse needs a person (INVALID);
2. Zoho holds it (we have its id): send our fields if they changed since (UPDATE), mark it
   inactive or active again if only its account status changed (DEACTIVATE, REACTIVATE), else
   SKIP; where Zoho's list, read by the finder, no longer holds it, GONE (the run reads it once
   to be sure, and a person decides);
3. an earlier create whose answer was unclear must have settled before we look (WAIT);
4. Zoho is asked whether it holds the customer already (matching.py): ADOPT it, else CREATE
   it, unless its account is closed (SKIP: a closed account is never created).
`CustomerSync._act` carries a decision out: the attempt is put on record "sending" (audit.py)
before its first write to Zoho, and for a create the create-sent mark (with the attempt, the
intent); a refusal is placed (refusals.py). Every customer ends with one final attempt, written
once: an adoption, an update, a skip or a failure at once, a create with the rest of its group
(`AnsweredCreates`), a refusal whose fault is not known yet when it is (`_settle_held`). Zoho's
answer must carry our account number, VAT number and billing address back as sent, else the
run stops (account_numbers.py, run_stops.py). A group's creates that are sure to go have
their intents written ahead in two statements (`write_intents_ahead`). What happens after an
error is decided in one place: `next_step`. A closing or a reopening is its own request
(`_mark_status`), and Zoho's refusal of it is the customer's (`StatusRefused`). A customer
ends in one transaction (`_end`: its final attempt and its row, taken again whole after a lost
database); before a write to Zoho after such an outage, its claim is looked at again
(`_ensure_held`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from functools import partial
from typing import Any, Unpack

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_sync.customer_data import (
    account_number_update,
    address_not_kept,
    customer_validation_errors,
    customer_zoho_fields,
    customer_zoho_payload,
    fields_that_differ,
    vat_number_kept,
    zoho_fields_hash,
    zoho_held_fields,
    zoho_status,
)
from billing_sync.models import AccountStatus, AttemptOutcome, Customer, SyncAttempt, SyncStatus
from billing_sync.run.audit import (
    Ending,
    RunAttempts,
    close_interrupted_attempts,
    describe,
    ended,
    refused_before_a_create,
)
from billing_sync.run.claims import Claims, InStep, unclaimed
from billing_sync.run.customer.account_numbers import check_account_number
from billing_sync.run.customer.matching import ZohoCustomerFinder
from billing_sync.run.customer.refusals import RefusalStreak, names_account_field, names_customer
from billing_sync.run.stops import (
    RUN_STOPPERS,
    AccountFieldRefused,
    AccountNumberNotKept,
    AddressNotKept,
    SystemicRefusal,
    VatNumberNotKept,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import (
    ZohoError,
    ZohoInvalidData,
    ZohoNotFound,
    ZohoRateLimited,
    ZohoTransient,
    ZohoUnreachableTooLong,
)
from billing_sync.zoho.records import ZohoCustomer
from billing_sync.zoho.retry import backoff_seconds, should_retry

# --- the decision: read-only, so zoho_plan shows what a run will do ---------------------------

UNCHANGED = "nothing Zoho holds of it changed since Zoho last accepted it"
TAKEN_BY_ANOTHER = "no longer needs syncing or another run is working on it"
GONE = (
    "Zoho's list no longer holds the customer we are linked to (deleted in Zoho?): the run "
    "reads it once and, if Zoho does not hold it, leaves it failed, needing a person (unlink "
    "it, or `zoho_verify --fix` relinks it)"
)
CLOSED_NOT_CREATED = "its account was closed before it reached Zoho: not created"
# Said of a refusal that named nothing of the customer's, while its fault is not known.
RETRIED_NOTE = (
    "; Zoho named none of this customer's fields, so it is retried: if Zoho refuses other "
    "customers the same way, the organization is refusing creates"
)


class Action(StrEnum):
    """What a run does with a customer."""

    CREATE = "create"  # Zoho does not hold it: create it
    ADOPT = "adopt"  # Zoho holds it already (ours by account number, or its email alone)
    UPDATE = "update"  # Zoho holds it, and it was edited here since: send our fields
    DEACTIVATE = "deactivate"  # Zoho holds it, and only its account was closed: mark inactive
    REACTIVATE = "reactivate"  # Zoho holds it, and only its account was reopened: mark active
    SKIP = "skip"  # nothing to send
    INVALID = "invalid"  # Zoho would refuse its data: a person fixes it
    WAIT = "wait"  # an earlier create may still be settling in Zoho: look later
    GONE = "gone"  # linked, edited here, and Zoho's list no longer holds it: a person decides


@dataclass(frozen=True)
class Decision:
    """One customer's decision, and why."""

    action: Action
    reason: str
    found: ZohoCustomer | None = None  # ADOPT: the Zoho customer to link
    settles_at: datetime | None = None  # WAIT: when Zoho may be searched
    # UPDATE, DEACTIVATE, REACTIVATE: the status Zoho is to hold, when it changes.
    sets_status: str = ""

    @property
    def writes_account_number(self) -> bool:
        """ADOPT a Zoho customer that carries no account number: ours is written into it."""
        return self.found is not None and self.found.account_number is None


def decide(customer: Customer, *, finder: ZohoCustomerFinder, config: ZohoConfig) -> Decision:
    """Decide what to do with `customer` (read-only: Zoho is read through `finder`)."""
    errors = customer_validation_errors(customer)
    if errors:
        return Decision(Action.INVALID, "; ".join(errors))
    if customer.zoho_billing_customer_id:
        decision = _decide_linked(customer, config)
        if decision.action != Action.SKIP and finder.surely_gone(customer.zoho_billing_customer_id):
            return Decision(Action.GONE, GONE)
        return decision
    settles = settles_at(customer, config)
    if settles is not None and timezone.now() < settles:
        # Searching before Zoho finishes (or its search catches up) could miss the customer
        # and lead to a duplicate.
        return Decision(Action.WAIT, not_settled_message(settles), settles_at=settles)
    found = finder.find(customer, outcome_unknown=settles is not None)
    if found is None and customer.account_status == AccountStatus.CLOSED:
        return Decision(Action.SKIP, CLOSED_NOT_CREATED)
    if found is None:
        why = "its earlier create is not in Zoho" if settles is not None else "not in Zoho"
        return Decision(Action.CREATE, why)
    if found.account_number is None:
        why = "the one Zoho customer with its email, carrying no account number"
    else:
        why = "the Zoho customer carrying its account number"
    return Decision(Action.ADOPT, why, found=found)


def _decide_linked(customer: Customer, config: ZohoConfig) -> Decision:
    """Zoho holds the customer: what of ours changed since Zoho last accepted it."""
    fields = customer_zoho_fields(customer, account_field=config.account_number_field)
    fields_changed = zoho_fields_hash(fields) != customer.zoho_synced_hash
    status = zoho_status(customer)
    sets_status = status if (status == "inactive") != customer.zoho_inactive else ""
    if fields_changed:
        why = "edited here since Zoho last accepted it"
        if sets_status:
            why += f", and to be marked {sets_status}"
        return Decision(Action.UPDATE, why, sets_status=sets_status)
    if sets_status == "inactive":
        return Decision(Action.DEACTIVATE, "its account was closed here", sets_status=sets_status)
    if sets_status == "active":
        return Decision(Action.REACTIVATE, "its account was reopened here", sets_status=sets_status)
    return Decision(Action.SKIP, UNCHANGED)


def settles_at(customer: Customer, config: ZohoConfig) -> datetime | None:
    """When an earlier create of this customer that got no clear answer may be looked for."""
    if customer.zoho_create_sent_at is None:
        return None
    return customer.zoho_create_sent_at + timedelta(seconds=config.create_settle_seconds)


def not_settled_message(settles: datetime) -> str:
    """What a customer waiting for its earlier create to settle says."""
    return (
        "Zoho may still be creating this customer (a create got no clear answer); looking in "
        f"Zoho after {settles.astimezone(UTC):%H:%M:%S} UTC, before creating again"
    )


# --- acting on it -------------------------------------------------------------------------------


class NotInZoho(ZohoError):
    """The Zoho customer we are linked to is gone (deleted in Zoho?): a person decides."""

    def __init__(self, error: ZohoError) -> None:
        super().__init__(
            f"Zoho no longer holds the customer we are linked to ({error}): if it was deleted "
            "in Zoho on purpose, unlink it; `zoho_verify --fix` relinks a customer Zoho holds "
            "under our account number"
        )


class StatusRefused(ZohoInvalidData):
    """Zoho refused to mark the customer inactive (or active): an active subscription, most
    likely. One customer's state, never the organization's: a person acts, the run goes on."""

    def __init__(self, error: ZohoInvalidData, *, status: str) -> None:
        fix = ""
        if status == "inactive":
            fix = " (cancel its subscriptions in Zoho, then re-queue it)"
        super().__init__(
            f"Zoho refused to mark the customer {status}: {error.message}{fix}",
            status=error.status,
            code=error.code,
            path=error.path,
        )


class ClaimLost(Exception):
    """The customer is no longer this run's (taken over while the database was away)."""


class Next(Enum):
    """What a customer's attempt does after an error."""

    STOP_RUN = "stop the run: no other customer would fare better"
    WAIT_FOR_BLOCK = "Zoho refused the organization for now: wait, then try again"
    PLACE_REFUSAL = "Zoho refused the data: the customer's fault, or the organization's?"
    RETRY = "a passing failure: try again after a back-off"
    GIVE_UP = "leave the customer failed for a later run"


def next_step(error: Exception) -> Next:
    """The one place that says what an error means for the customer at hand."""
    if isinstance(error, RUN_STOPPERS):
        return Next.STOP_RUN
    if isinstance(error, ZohoRateLimited):
        return Next.WAIT_FOR_BLOCK
    if isinstance(error, ZohoInvalidData):
        return Next.PLACE_REFUSAL
    if isinstance(error, ZohoError) and should_retry(error):
        return Next.RETRY
    return Next.GIVE_UP


class CustomerSync:
    """Syncs, one at a time, the customers a run holds; each ends with one final attempt."""

    def __init__(
        self,
        *,
        attempts: RunAttempts,
        client: ZohoClient,
        finder: ZohoCustomerFinder,
        claims: Claims,
        answered: AnsweredCreates,
        config: ZohoConfig,
        heartbeat: Callable[[], None],
        sleep: Callable[[float], None] = time.sleep,
        chance: Callable[[], float] = random.random,
    ) -> None:
        """`heartbeat` writes what Zoho answered and renews the run's claims: it runs after a
        back-off here, as during every wait of the client's gate."""
        self.attempts = attempts
        self.run = attempts.run
        self.steps = attempts.steps
        self.client = client
        self.finder = finder
        self.claims = claims
        self.answered = answered
        self.config = config
        self.heartbeat = heartbeat
        self.sleep = sleep
        self.chance = chance
        self.refusals = RefusalStreak()
        # Intents on record whose create has not gone out yet, by customer id.
        self._written_ahead: dict[int, tuple[Customer, SyncAttempt]] = {}
        # The database's outages (steps.outages) when the customer at hand was last seen held.
        self._held_since: int | None = None

    # --- a group's creates, written ahead ------------------------------------------------------

    def write_intents_ahead(self, customers: list[Customer]) -> None:
        """Write in one INSERT and one UPDATE the intents of the creates this group will surely
        send: valid customers with no earlier create in doubt, absent from Zoho by the index.

        Each gets its "sending" attempt and its create-sent mark before any of them goes out,
        as one at a time would; `sync` then sends its create without writing either again.
        """
        new = [customer for customer in customers if self._surely_new(customer)]
        if len(new) < 2:
            return
        attempts = [self.attempts.begin(customer) for customer in new]

        def write() -> None:
            try:
                with transaction.atomic():  # both or neither: the step may be taken again
                    self.attempts.open_all(attempts)
                    self.claims.set_creates_sent(new, timezone.now())
            except BaseException:
                for customer, attempt in zip(new, attempts, strict=True):
                    attempt.pk = None
                    customer.zoho_create_sent_at = None
                raise

        self.steps.take(write)
        for customer, attempt in zip(new, attempts, strict=True):
            self._written_ahead[customer.pk] = (customer, attempt)

    def drop_intents_ahead(self) -> None:
        """The run stops: intents written ahead whose create never went out are undone."""
        if not self._written_ahead:
            return
        customers, attempts = zip(*self._written_ahead.values(), strict=True)

        def undo() -> None:
            with transaction.atomic():
                self.attempts.withdraw(list(attempts))
                self.claims.set_creates_sent(list(customers), None)

        self.steps.take(undo)
        self._written_ahead.clear()

    def _surely_new(self, customer: Customer) -> bool:
        return (
            customer.zoho_create_sent_at is None
            and customer.account_status != AccountStatus.CLOSED
            and not customer_validation_errors(customer)
            and self.finder.surely_absent(customer)
        )

    # --- one customer ------------------------------------------------------------------------

    def sync(self, customer: Customer, *, taken_over: bool) -> datetime | None:
        """Check and sync a customer this run holds; raise only what should stop the whole run.

        `taken_over`: the customer was claimed from a run that died. Returns when the customer
        may be looked for in Zoho if its earlier create has not settled: no attempt is made, it
        is still held, and the run syncs it again later (`sync_settled`) or lets it go
        (`leave_waiting`). Else None: its final attempt is written, or will be with its group.
        """
        self._held_since = self.steps.outages  # the caller has just seen it held
        written_ahead = None
        if customer.pk in self._written_ahead:
            _, written_ahead = self._written_ahead.pop(customer.pk)
        if taken_over or (customer.zoho_create_sent_at is not None and written_ahead is None):
            self.steps.take(lambda: close_interrupted_attempts(customer, self.run))
        return self._attempt_until_done(customer, written_ahead)

    def sync_settled(self, customer: Customer) -> datetime | None:
        """Sync a customer that was waiting, now that its earlier create has settled."""
        self._held_since = None  # held since its group: looked at again before any write
        return self._attempt_until_done(customer)

    def leave_waiting(self, customer: Customer, settles_at: datetime) -> None:
        """The run cannot wait for this customer's create to settle: leave it for a later run,
        its final attempt saying so (no request was made)."""
        message = not_settled_message(settles_at)
        self._end(
            customer,
            self.attempts.begin(customer),
            AttemptOutcome.WAITING,
            lambda: self.claims.release(customer, SyncStatus.FAILED, message),
            message=message,
            waiting_until=settles_at,
        )

    def skip(self, customer: Customer, reason: str) -> None:
        """The run does nothing with this customer: its final attempt says why."""
        self._end(customer, self.attempts.begin(customer), AttemptOutcome.SKIPPED, message=reason)

    def _end(
        self,
        customer: Customer,
        attempt: SyncAttempt,
        outcome: AttemptOutcome,
        row: Callable[[], object] | None = None,
        **how: Unpack[Ending],
    ) -> None:
        """End the customer's run: its final attempt and `row`'s change to its row, written
        together (taken again whole after a lost database, never the request before them)."""
        self.attempts.write([ended(attempt, outcome, final=True, **how)], also=row)

    def settles_at(self, customer: Customer) -> datetime | None:
        """When an earlier create of this customer that got no clear answer may be looked for."""
        return settles_at(customer, self.config)

    def finish(self) -> None:
        """The run ends: write what Zoho answered; refusals still held end `failed`."""
        self.answered.write()
        self._settle_held(AttemptOutcome.FAILED)

    def _attempt_until_done(
        self, customer: Customer, written_ahead: SyncAttempt | None = None
    ) -> datetime | None:
        """Decide and act until synced, failed, refused or waiting. `written_ahead`: the first
        attempt is a create whose intent is on record (surely absent from Zoho: no search)."""
        linked = bool(customer.zoho_billing_customer_id)
        failures = 0
        while True:
            attempt = written_ahead or self.attempts.begin(customer)
            intent_on_record, written_ahead = written_ahead is not None, None
            writes_before = self.client.writes_answered
            try:
                if intent_on_record:
                    decision = Decision(Action.CREATE, "not in Zoho (by the run's index)")
                else:
                    decision = decide(customer, finder=self.finder, config=self.config)
                return self._act(customer, attempt, decision, intent_on_record=intent_on_record)
            except (AccountNumberNotKept, VatNumberNotKept, AddressNotKept):
                raise  # Zoho holds the customer: its final attempt says so, the run stops
            except ClaimLost:
                self._end(customer, attempt, AttemptOutcome.SKIPPED, message=TAKEN_BY_ANOTHER)
                return None
            except StatusRefused as error:
                self._fail(customer, attempt, SyncStatus.NEEDS_ATTENTION, error)
                return None
            except (ZohoError, IntegrityError) as error:
                step = next_step(error)
                if step is Next.PLACE_REFUSAL:
                    left_as = SyncStatus.SYNCED if linked else SyncStatus.FAILED
                    self._refused(customer, attempt, error, left_as=left_as)
                    return None
                if step is Next.STOP_RUN:
                    if isinstance(error, ZohoUnreachableTooLong) and (
                        self.client.writes_answered == writes_before
                    ):
                        # Nothing of it reached Zoho: no attempt. The stop lets the customer go.
                        self.steps.take(partial(self.attempts.withdraw, [attempt]))
                        raise
                    self._fail(customer, attempt, SyncStatus.FAILED, error)
                    raise
                if step is Next.WAIT_FOR_BLOCK:
                    self._wait_out_block(customer, attempt, error)
                    continue
                if linked and isinstance(error, ZohoNotFound):
                    self._fail(customer, attempt, SyncStatus.NEEDS_ATTENTION, NotInZoho(error))
                    return None
                failures += 1
                if step is Next.GIVE_UP or failures >= self.config.max_attempts:
                    # Linked, it is still in Zoho and still changed here: the next sync sends
                    # the edit again. Not linked, the next run (or retry) takes it.
                    left_as = SyncStatus.SYNCED if linked else SyncStatus.FAILED
                    self._fail(customer, attempt, left_as, error)
                    return None
                self.attempts.finish(attempt, AttemptOutcome.FAILED, error=error)
                self._back_off(customer, failures)

    def _act(
        self,
        customer: Customer,
        attempt: SyncAttempt,
        decision: Decision,
        *,
        intent_on_record: bool = False,
    ) -> datetime | None:
        """Carry out a decision: the writes (to Zoho, then here) that `decide` leaves out."""
        match decision.action:
            case Action.INVALID:
                self._end(
                    customer,
                    attempt,
                    AttemptOutcome.INVALID,
                    lambda: self.claims.release(
                        customer, SyncStatus.NEEDS_ATTENTION, decision.reason
                    ),
                    message=decision.reason,
                )
            case Action.WAIT:
                return decision.settles_at
            case Action.SKIP:
                if customer.zoho_billing_customer_id:
                    row = partial(self.claims.mark_pushed, customer, self._in_step(customer))
                else:  # closed before it reached Zoho: decided, until it is edited again
                    row = partial(self.claims.mark_not_created, customer)
                self._end(customer, attempt, AttemptOutcome.SKIPPED, row, message=decision.reason)
            case Action.UPDATE | Action.DEACTIVATE | Action.REACTIVATE:
                self._update(customer, attempt, decision)
            case Action.GONE:
                # The list may lag behind Zoho: one read says whether it still holds it.
                self.client.get_customer(customer.zoho_billing_customer_id)
                return self._act(customer, attempt, _decide_linked(customer, self.config))
            case Action.ADOPT:
                self._adopt(customer, attempt, decision)
            case Action.CREATE:
                if not intent_on_record:
                    self.attempts.open(attempt)
                    self.claims.set_create_sent(customer, timezone.now())
                created = self._create(customer)
                self.answered.add(
                    customer, attempt, created.customer_id, self._in_step_if_kept(customer, created)
                )
                self._refusals_were_their_own()
                self._check_answer(customer, created)
            case _:
                raise AssertionError(f"no way to carry out {decision.action!r}")
        return None

    def _update(self, customer: Customer, attempt: SyncAttempt, decision: Decision) -> None:
        """Send Zoho every field we own, blank ones too, so a cleared phone is cleared in Zoho;
        display_name and email always (Zoho requires them on every update). A PUT may be
        repeated safely. A change of status is its own request: a reopened account is marked
        active before its fields are sent, a closed one inactive after."""
        self.attempts.open(attempt)
        self._ensure_held(customer)
        zoho_id = customer.zoho_billing_customer_id
        if decision.sets_status == "active":
            self._mark_status(zoho_id, "active")
        answer = None
        if decision.action == Action.UPDATE:
            answer = self.client.update_customer(zoho_id, self._fields(customer))
        if decision.sets_status == "inactive":
            self._mark_status(zoho_id, "inactive")
        in_step = (
            self._in_step(customer) if answer is None else self._in_step_if_kept(customer, answer)
        )
        inactive = zoho_status(customer) == "inactive"
        vat_kept = answer is None or vat_number_kept(customer, answer)
        self._end(
            customer,
            attempt,
            PUSHED[decision.action],
            partial(
                self.claims.mark_pushed, customer, in_step, inactive=inactive, vat_kept=vat_kept
            ),
            zoho_customer_id=zoho_id,
        )
        if answer is not None:
            self._refusals_were_their_own()
            self._check_answer(customer, answer)

    def _mark_status(self, zoho_id: str, status: str) -> None:
        """Mark the Zoho customer inactive or active; Zoho's refusal is the customer's."""
        try:
            self.client.mark_customer_status(zoho_id, status)
        except ZohoInvalidData as error:
            if isinstance(error, RUN_STOPPERS):
                raise
            raise StatusRefused(error, status=status) from error

    def _adopt(self, customer: Customer, attempt: SyncAttempt, decision: Decision) -> None:
        """Link the Zoho customer found, writing our account number into it when it has none."""
        found = decision.found
        assert found is not None
        self.attempts.open(attempt)
        self._ensure_held(customer)
        if decision.writes_account_number:
            payload = account_number_update(
                customer,
                display_name=found.display_name,
                email=found.email,
                account_field=self.config.account_number_field,
            )
            found = self.client.update_customer(found.customer_id, payload)
        inactive = found.status == "inactive"
        in_step = self._in_step(customer) if self._holds_ours(customer, found) else None
        # Else the next sync sends ours (and marks it active or inactive as ours says).
        self._end(
            customer,
            attempt,
            AttemptOutcome.ADOPTED,
            partial(
                self.claims.mark_synced, customer, found.customer_id, in_step, inactive=inactive
            ),
            zoho_customer_id=found.customer_id,
        )
        self._check_account_number(customer, found)

    def _holds_ours(self, customer: Customer, found: ZohoCustomer) -> bool:
        """Whether the Zoho customer found holds what we would send, status included. A list
        item shows no address or VAT number: it holds ours only when we have none."""
        ours = self._fields(customer)
        held = zoho_held_fields(found, account_field=self.config.account_number_field)
        has_unlisted = any(ours["billing_address"].values()) or "vat_reg_no" in ours
        unseen = not found.is_full and has_unlisted
        return (
            not unseen
            and not fields_that_differ(ours, held)
            and (found.status or "active") == zoho_status(customer)
        )

    def _check_account_number(self, customer: Customer, zoho_customer: ZohoCustomer) -> None:
        """Zoho holds the customer now: its answer must carry our account number back."""
        check_account_number(
            customer, zoho_customer, account_field=self.config.account_number_field
        )

    def _check_answer(self, customer: Customer, answer: ZohoCustomer) -> None:
        """Zoho's answer to our fields must carry our account number, VAT number and billing
        address back as sent."""
        self._check_account_number(customer, answer)
        if not vat_number_kept(customer, answer):
            raise VatNumberNotKept(customer, answer)
        parts = address_not_kept(customer, answer)
        if parts:
            raise AddressNotKept(customer, answer, parts)

    def _in_step_if_kept(self, customer: Customer, answer: ZohoCustomer) -> InStep | None:
        """In step once Zoho's answer holds what we sent; None when it lost our VAT number or
        changed our address (the next sync sends them again)."""
        kept = vat_number_kept(customer, answer) and not address_not_kept(customer, answer)
        return self._in_step(customer) if kept else None

    def _in_step(self, customer: Customer) -> InStep:
        """What Zoho holds once it has accepted this customer's fields as they are."""
        return InStep(customer.updated_at, zoho_fields_hash(self._fields(customer)))

    def _ensure_held(self, customer: Customer) -> None:
        """Before a write to Zoho: when the database went away since the customer was last
        seen held (a write taken again meanwhile), it must still be this run's; another run may
        have taken it over and sent it already. Raise ClaimLost when it is not."""
        if self._held_since == self.steps.outages:
            return
        if self.claims.holding(customer) is None:
            raise ClaimLost
        self._held_since = self.steps.outages

    def _wait_out_block(
        self, customer: Customer, attempt: SyncAttempt, error: ZohoRateLimited
    ) -> None:
        """Zoho refused the organization for now (nothing was written): wait for the block to
        end, then the request may go again; a run that may not wait that long stops here."""
        try:
            self.client.gate.wait_while_blocked()
        except RUN_STOPPERS as stop:
            self._fail(customer, attempt, SyncStatus.FAILED, error, message=str(stop))
            raise
        self.attempts.finish(attempt, AttemptOutcome.RATE_LIMITED, error=error)

    def _fields(self, customer: Customer) -> dict[str, Any]:
        return customer_zoho_fields(customer, account_field=self.config.account_number_field)

    def _back_off(self, customer: Customer, failures: int) -> None:
        """Before trying again; not when a create went out (its next attempt waits to settle)."""
        if customer.zoho_create_sent_at is not None:
            return
        self.answered.write()
        delay = backoff_seconds(
            failures, base=self.config.retry_backoff_seconds, chance=self.chance
        )
        self.sleep(delay)
        self.heartbeat()

    def _create(self, customer: Customer) -> ZohoCustomer:
        """Send the create, whose intent (attempt and create-sent mark) is on record.

        A refusal clears the mark: nothing was created. Any answer but "created, here it is" or
        a refusal leaves the outcome unknown: Zoho may have committed the record before failing,
        and its search may lag behind; the mark is restamped, so the look in Zoho waits
        ZOHO_CREATE_SETTLE_SECONDS from now. (A created customer's mark is cleared when it is
        written with its group.)
        """
        payload = customer_zoho_payload(customer, account_field=self.config.account_number_field)
        self._ensure_held(customer)
        try:
            return self.client.create_customer(payload)
        except ZohoTransient as error:
            self.claims.set_create_sent(customer, timezone.now() if error.request_sent else None)
            raise
        except ZohoError:
            # A clear refusal (or the organization's block): Zoho did not create it.
            self.claims.set_create_sent(customer, None)
            raise

    def _fail(
        self,
        customer: Customer,
        attempt: SyncAttempt,
        status: SyncStatus,
        error: Exception,
        *,
        message: str = "",
    ) -> None:
        """Let go of the customer with `status` and the error's message (or `message`); the
        attempt is its final one."""
        if isinstance(error, ZohoRateLimited):
            outcome = AttemptOutcome.RATE_LIMITED
        elif isinstance(error, ZohoInvalidData):
            outcome = AttemptOutcome.INVALID
        else:
            outcome = AttemptOutcome.FAILED
        release = partial(self.claims.release, customer, status, message or describe(error))
        self._end(customer, attempt, outcome, release, error=error, message=message)

    # --- refusals ----------------------------------------------------------------------------

    def _refused(
        self,
        customer: Customer,
        attempt: SyncAttempt,
        error: ZohoInvalidData,
        left_as: SyncStatus = SyncStatus.FAILED,
    ) -> None:
        """Zoho refused a create or update that carried this customer's data: whose fault?

        Not known yet, the attempt's end waits (held) until it is: it is written once, when
        Zoho creates another customer (the customer's), or the run ends or stops (failed).
        """
        account_field = self.config.account_number_field
        if names_account_field(error, account_field=account_field):
            self._fail(customer, attempt, SyncStatus.FAILED, error)
            raise AccountFieldRefused(error, account_field=account_field) from error
        if names_customer(error, customer) or self.steps.take(
            partial(refused_before_a_create, customer, error, run=self.run)
        ):
            self.refusals.interrupt()
            self._fail(customer, attempt, SyncStatus.NEEDS_ATTENTION, error)
            return
        self.claims.release(customer, left_as, describe(error) + RETRIED_NOTE)
        ended(attempt, AttemptOutcome.FAILED, final=True, error=error)
        try:
            self.refusals.hold(customer, attempt, error, left_as)
        except SystemicRefusal as stop:
            why = str(stop)
            held = list(self.refusals.held)

            def say_why() -> None:
                for customer_id, _, status in held:
                    unclaimed([customer_id], status).update(zoho_last_error=why)

            self._settle_held(AttemptOutcome.FAILED, message=why, rows=say_why)
            raise

    def _refusals_were_their_own(self) -> None:
        """Zoho created a customer after refusing others: those refusals were about their data."""
        self.refusals.interrupt()
        held = list(self.refusals.held)
        if not held:
            return

        def need_attention() -> None:
            for customer_id, attempt, status in held:
                unclaimed([customer_id], status).update(
                    zoho_sync_status=SyncStatus.NEEDS_ATTENTION,
                    zoho_last_error=attempt.error_message,
                )

        self._settle_held(AttemptOutcome.INVALID, rows=need_attention)

    def _settle_held(
        self,
        outcome: AttemptOutcome,
        *,
        message: str = "",
        rows: Callable[[], None] | None = None,
    ) -> None:
        """Write the final attempts of the refusals held, now that their fault is known: the
        customer's data (invalid), or not known by the end of the run (failed, to be retried),
        or the organization's (`message`: why the run stops); `rows`' changes to their rows
        in the same transaction. They stay held until that is written."""
        held = [attempt for _, attempt, _ in self.refusals.held]
        if not held:
            return
        for attempt in held:
            said = attempt.error_message.removesuffix(RETRIED_NOTE)
            attempt.outcome = outcome
            if message:
                attempt.error_message = message
            elif outcome == AttemptOutcome.FAILED:
                attempt.error_message = said + RETRIED_NOTE
            else:
                attempt.error_message = said
        self.attempts.write(held, also=rows)
        self.refusals.take_held()


# How an attempt that sent a customer Zoho held already ends, by its decision.
PUSHED = {
    Action.UPDATE: AttemptOutcome.UPDATED,
    Action.DEACTIVATE: AttemptOutcome.DEACTIVATED,
    Action.REACTIVATE: AttemptOutcome.REACTIVATED,
}


# A create Zoho answered: the customer, its attempt, its Zoho id, the data Zoho holds.
Answered = tuple[Customer, SyncAttempt, str, InStep | None]


class AnsweredCreates:
    """Creates Zoho has answered, written to the database together: two statements a group.

    Each finishes its attempt `created` (audit.py) and links its customer (claims.py). Written
    at the end of each group, before any wait, and before a stopped run lets go of what it
    holds. Should the process die before, each such customer still carries its create-sent
    mark and its "sending" attempt: the next run takes it over, finds it in Zoho and adopts it.
    """

    def __init__(self, claims: Claims, attempts: RunAttempts) -> None:
        self.claims = claims
        self.attempts = attempts
        self._answered: list[Answered] = []

    def add(
        self,
        customer: Customer,
        attempt: SyncAttempt,
        zoho_customer_id: str,
        in_step: InStep | None,
    ) -> None:
        """Zoho created `customer` as `zoho_customer_id` in `attempt`, holding `in_step` (None:
        not all of ours)."""
        self._answered.append((customer, attempt, zoho_customer_id, in_step))

    def write(self) -> None:
        """Write the answered creates (taken again whole after a lost database), then report
        them (as written). Kept until written: a run that stops meanwhile still has them."""
        if not self._answered:
            return
        answered, self._answered = self._answered, []
        try:
            self._write_all(answered)
        except IntegrityError:  # a Zoho id already linked elsewhere: find which, one by one
            for entry in answered:
                self._write_one(entry)
        except BaseException:
            self._answered = answered + self._answered
            raise

    def _write_all(self, answered: list[Answered]) -> None:
        now = timezone.now()
        for _, attempt, zoho_id, _ in answered:
            ended(attempt, AttemptOutcome.CREATED, when=now, final=True, zoho_customer_id=zoho_id)
        linked = {customer.pk: (zoho_id, in_step) for customer, _, zoho_id, in_step in answered}
        self.attempts.write(
            [attempt for _, attempt, _, _ in answered],
            also=lambda: self.claims.mark_many_synced(linked, now),
        )

    def _write_one(self, entry: Answered) -> None:
        customer, attempt, zoho_id, _ = entry
        try:
            self._write_all([entry])
        except IntegrityError as error:
            why = describe(error)
            failed = ended(
                attempt, AttemptOutcome.FAILED, final=True, error=error, zoho_customer_id=zoho_id
            )
            self.attempts.write(
                [failed], also=lambda: self.claims.release(customer, SyncStatus.FAILED, why)
            )
