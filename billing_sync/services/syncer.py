"""Syncing one customer: claim it, check it, adopt or create it in Zoho, audit every attempt.

A create is recorded as sent before it goes out; while its outcome is unknown, the next attempt
searches Zoho before creating again, so a lost answer never becomes a duplicate billing
customer. Every change to the customer row is conditional on this run still holding its claim:
a run that lost its claim to another never overwrites that run's work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
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
        self._current: Customer | None = None
        # Whether Zoho has surely finished the last create this run sent for `_current`.
        self._create_ended = False
        # While we wait for a Zoho block, keep our claim fresh so nobody takes it as abandoned.
        client.gate.heartbeat = self.heartbeat

    def sync(self, customer: Customer, selection: Q) -> CustomerResult:
        """Claim, check and sync `customer`; raise only what should stop the whole run."""
        taking_over = customer.zoho_sync_status == SyncStatus.SYNCING
        if not self._claim(customer, selection):
            message = "no longer needs syncing or another run is working on it"
            return customer_result(customer, AttemptOutcome.SKIPPED, error=message)
        self._current = customer
        self._create_ended = False
        try:
            customer.refresh_from_db()
            if taking_over or customer.zoho_create_sent_at is not None:
                _close_interrupted_attempts(customer, self.run)
            errors = customer_validation_errors(customer)
            if errors:
                message = "; ".join(errors)
                record_attempt(self.run, customer, AttemptOutcome.INVALID, error=message)
                self._update(customer, **_released(SyncStatus.NEEDS_ATTENTION, message))
                return customer_result(customer, AttemptOutcome.INVALID, error=message)
            return self._attempt_until_done(customer)
        finally:
            self._current = None

    def heartbeat(self) -> None:
        """Renew the claim on the customer being worked on."""
        if self._current is not None:
            self._update(self._current, zoho_claimed_at=timezone.now())

    def _attempt_until_done(self, customer: Customer) -> CustomerResult:
        transient_failures = 0
        while True:
            if transient_failures:  # the claim is fresh on the first attempt
                self.heartbeat()
            attempt = record_attempt(self.run, customer, AttemptOutcome.SENDING, finished=False)
            try:
                zoho_customer, outcome = self._adopt_or_create(customer)
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
                    self.sleep(self._backoff(transient_failures))
            except ZohoInvalidData as exc:
                _finish(attempt, AttemptOutcome.INVALID, exc)
                return self._fail(customer, SyncStatus.NEEDS_ATTENTION, AttemptOutcome.INVALID, exc)
            except (ZohoError, IntegrityError) as exc:
                _finish(attempt, AttemptOutcome.FAILED, exc)
                return self._fail(customer, SyncStatus.FAILED, AttemptOutcome.FAILED, exc)
            else:
                _finish(attempt, outcome, zoho_customer_id=zoho_customer.customer_id)
                return customer_result(
                    customer, outcome, zoho_customer_id=zoho_customer.customer_id
                )

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
        self.finder.remember(created)
        return created, AttemptOutcome.CREATED

    def _create_may_still_run(self, customer: Customer) -> bool:
        """An earlier create got no answer, Zoho may still be on it, and it is too soon to look.

        Searching before Zoho finishes would miss the customer and lead to a duplicate.
        """
        if customer.zoho_create_sent_at is None or self._create_ended:
            return False
        return timezone.now() < self._settles_at(customer)

    def _settles_at(self, customer: Customer) -> datetime:
        return customer.zoho_create_sent_at + timedelta(seconds=self.config.create_settle_seconds)

    def _claim(self, customer: Customer, selection: Q) -> bool:
        claimed = (
            Customer.objects.filter(pk=customer.pk)
            .filter(selection)
            .update(
                zoho_sync_status=SyncStatus.SYNCING,
                zoho_claimed_at=timezone.now(),
                zoho_claimed_by=self.run,
            )
        )
        return claimed == 1

    def _update(self, customer: Customer, **fields: Any) -> bool:
        """Change sync columns only, and only while this run holds the claim.

        update() touches just these columns, so a concurrent edit of the customer survives.
        """
        return bool(
            Customer.objects.filter(pk=customer.pk, zoho_claimed_by=self.run).update(**fields)
        )

    def _mark_synced(self, customer: Customer, zoho_customer: ZohoCustomer) -> None:
        # The savepoint keeps a unique-id clash from breaking an outer transaction.
        with transaction.atomic():
            self._update(
                customer,
                zoho_billing_customer_id=zoho_customer.customer_id,
                zoho_last_synced_at=timezone.now(),
                zoho_create_sent_at=None,
                **_released(SyncStatus.SYNCED, ""),
            )

    def _set_create_sent(self, customer: Customer, when: datetime | None) -> None:
        customer.zoho_create_sent_at = when
        self._update(customer, zoho_create_sent_at=when)

    def _fail(
        self, customer: Customer, status: str, outcome: str, exc: Exception
    ) -> CustomerResult:
        message = _describe(exc)
        self._update(customer, **_released(status, message))
        return customer_result(customer, outcome, error=message)

    def _backoff(self, failures: int) -> float:
        return min(self.config.retry_backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)


def _released(status: str, error: str) -> dict[str, Any]:
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


def record_attempt(
    run: SyncRun, customer: Customer, outcome: str, *, error: str = "", finished: bool = True
) -> SyncAttempt:
    return SyncAttempt.objects.create(
        run=run,
        customer=customer,
        customer_email=customer.email[:254],
        account_number=customer.account_number[:32],
        outcome=outcome,
        error_message=error,
        finished_at=timezone.now() if finished else None,
    )


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
    attempt.save()
