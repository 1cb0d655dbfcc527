"""Acting on a decision: one customer synced, its writes to Zoho and here, every attempt on record.

`CustomerSync.sync` decides (decisions.py) and acts, until the customer is synced, failed,
refused or waiting. `_act` carries a decision out: the attempt is put on record "sending"
(audit.py) before its first write to Zoho, and for a create the create-sent mark (with the
attempt, the intent; creates.py); a refusal is placed (refusals.py: whose fault it is). Every
customer ends with one final attempt, written once: an adoption, an update, a skip or a failure
at once, a create with the rest of its group (`AnsweredCreates`), a refusal whose fault is not
known yet when it is (`HeldRefusals`). Zoho's answer must carry our account number, VAT number
and billing address back as sent (kept), else the run stops (account_numbers.py, stops.py).
What happens after an error is decided in one place: `next_step` (errors.py). A closing or a
reopening is its own request (`_mark_status`), and Zoho's refusal of it is the customer's
(`StatusRefused`). A customer ends in one transaction (`_end`: its final attempt and its row,
taken again whole after a lost database); just before a write to Zoho goes after such an
outage, or when its claim's stamp is old, its claim is stamped again or found lost
(`_ensure_held`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Unpack

from django.db import IntegrityError
from django.utils import timezone

from billing_sync.customer_data import (
    account_number_update,
    address_not_kept,
    customer_zoho_fields,
    fields_that_differ,
    vat_number_kept,
    zoho_fields_hash,
    zoho_held_fields,
    zoho_status,
)
from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncStatus
from billing_sync.run.audit import (
    Ending,
    RunAttempts,
    close_interrupted_attempts,
    describe,
    refused_before_a_create,
    set_ended,
)
from billing_sync.run.claims import Claims, InStep
from billing_sync.run.customer.account_numbers import check_account_number
from billing_sync.run.customer.creates import AnsweredCreates, IntentsAhead, send_create
from billing_sync.run.customer.decisions import (
    TAKEN_BY_ANOTHER,
    Action,
    Decision,
    decide,
    decide_linked,
    not_settled_message,
    settles_at,
)
from billing_sync.run.customer.errors import ClaimLost, Next, NotInZoho, StatusRefused, next_step
from billing_sync.run.customer.matching import ZohoCustomerFinder
from billing_sync.run.customer.refusals import HeldRefusals, names_account_field, names_customer
from billing_sync.run.stops import (
    RUN_STOPPERS,
    AccountFieldRefused,
    AccountNumberNotKept,
    AddressNotKept,
    VatNumberNotKept,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import (
    ZohoError,
    ZohoInvalidData,
    ZohoNotFound,
    ZohoRateLimited,
    ZohoUnreachableTooLong,
)
from billing_sync.zoho.records import ZohoCustomer
from billing_sync.zoho.retry import backoff_seconds

# How an attempt that sent a customer Zoho held already ends (pushed), by its decision.
PUSHED = {
    Action.UPDATE: AttemptOutcome.UPDATED,
    Action.DEACTIVATE: AttemptOutcome.DEACTIVATED,
    Action.REACTIVATE: AttemptOutcome.REACTIVATED,
}


@dataclass(kw_only=True, eq=False)
class CustomerSync:
    """Syncs, one at a time, the customers a run holds; each ends with one final attempt.

    `heartbeat` writes what Zoho answered and renews the run's claims: it runs after a back-off
    here, as during every wait of the client's gate.
    """

    attempts: RunAttempts
    client: ZohoClient
    finder: ZohoCustomerFinder
    claims: Claims
    answered: AnsweredCreates
    intents: IntentsAhead
    config: ZohoConfig
    heartbeat: Callable[[], None]
    sleep: Callable[[float], None] = time.sleep
    chance: Callable[[], float] = random.random
    # The database's outages (steps.outages) when the customer at hand was last seen held.
    _held_since: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.run = self.attempts.run
        self.steps = self.attempts.steps
        self.refusals = HeldRefusals(self.attempts, self.claims)

    def sync(self, customer: Customer, *, taken_over: bool) -> datetime | None:
        """Check and sync a customer this run holds; raise only what should stop the whole run.

        `taken_over`: the customer was claimed from a run that died. Returns when the customer
        may be looked for in Zoho if its earlier create has not settled: no attempt is made, it
        is still held, and the run syncs it again later (`sync_settled`) or lets it go
        (`leave_waiting`). Else None: its final attempt is written, or will be with its group.
        """
        self._held_since = self.steps.outages  # the caller has just seen it held
        written_ahead = self.intents.take(customer)
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
        self.attempts.write([set_ended(attempt, outcome, final=True, **how)], also=row)

    def settles_at(self, customer: Customer) -> datetime | None:
        """When an earlier create of this customer that got no clear answer may be looked for."""
        return settles_at(customer, self.config)

    def finish(self) -> None:
        """The run ends: write what Zoho answered; refusals still held end `failed`."""
        self.answered.write()
        self.refusals.end_held(AttemptOutcome.FAILED)

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
                    self._place_refusal(customer, attempt, error, left_as=left_as)
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
                return self._act(customer, attempt, decide_linked(customer, self.config))
            case Action.ADOPT:
                self._adopt(customer, attempt, decision)
            case Action.CREATE:
                if not intent_on_record:
                    self.attempts.open(attempt)
                    self.claims.set_create_sent(customer, timezone.now())
                created = send_create(
                    customer,
                    client=self.client,
                    claims=self.claims,
                    account_field=self.config.account_number_field,
                    before_sending=partial(self._ensure_held, customer),
                )
                self.answered.add(
                    customer, attempt, created.customer_id, self._in_step_if_kept(customer, created)
                )
                self.refusals.were_their_own()
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
        zoho_id = customer.zoho_billing_customer_id
        if decision.sets_status == "active":
            self._mark_status(customer, "active")
        answer = None
        if decision.action == Action.UPDATE:
            answer = self.client.update_customer(
                zoho_id, self._fields(customer), before_sending=partial(self._ensure_held, customer)
            )
        if decision.sets_status == "inactive":
            self._mark_status(customer, "inactive")
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
            self.refusals.were_their_own()
            self._check_answer(customer, answer)

    def _mark_status(self, customer: Customer, status: str) -> None:
        """Mark the Zoho customer inactive or active; Zoho's refusal is the customer's."""
        try:
            self.client.mark_customer_status(
                customer.zoho_billing_customer_id,
                status,
                before_sending=partial(self._ensure_held, customer),
            )
        except ZohoInvalidData as error:
            if isinstance(error, RUN_STOPPERS):
                raise
            raise StatusRefused(error, status=status) from error

    def _adopt(self, customer: Customer, attempt: SyncAttempt, decision: Decision) -> None:
        """Link the Zoho customer found, writing our account number into it when it has none."""
        found = decision.found
        assert found is not None
        self.attempts.open(attempt)
        if decision.writes_account_number:
            payload = account_number_update(
                customer,
                display_name=found.display_name,
                email=found.email,
                account_field=self.config.account_number_field,
            )
            found = self.client.update_customer(
                found.customer_id, payload, before_sending=partial(self._ensure_held, customer)
            )
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
        """Just before a write to Zoho goes (the budget has admitted it): the customer must still
        be this run's, as another run may have taken it over and sent it already. Its claim is
        stamped again (claims.py `keep`) when the database went away since it was last seen
        held, or when its stamp is older than the claims' fence. Raise ClaimLost when it is
        not."""
        if self._held_since == self.steps.outages and self.claims.fresh(customer):
            return
        if not self.claims.keep(customer):
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

    def _place_refusal(
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
            self.refusals.streak.break_streak()
            self._fail(customer, attempt, SyncStatus.NEEDS_ATTENTION, error)
            return
        self.refusals.hold(customer, attempt, error, left_as)
