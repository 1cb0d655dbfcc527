"""The audit trail: every attempt at a customer is one `SyncAttempt` row, written through here.

An attempt begins "sending" and unsaved (`new_attempt`); it is saved before the first request
that belongs to it goes out, so a crash mid-request leaves it on record; it ends with its
outcome (`finish_attempt`). Creates Zoho answered are finished a group at a time
(`finish_created`). Rows outlive their customer: email and account number are copied onto them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError
from django.db.models import Case, Value, When
from django.utils import timezone

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncRun, SyncRunStatus

FINISHED_FIELDS = [
    "outcome",
    "finished_at",
    "zoho_customer_id",
    "error_message",
    "http_status",
    "zoho_code",
]


def new_attempt(
    run: SyncRun,
    customer: Customer,
    outcome: AttemptOutcome = AttemptOutcome.SENDING,
    *,
    error: str = "",
) -> SyncAttempt:
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


def record_attempt(
    run: SyncRun, customer: Customer, outcome: AttemptOutcome, *, error: str = ""
) -> SyncAttempt:
    """Write a finished attempt."""
    attempt = new_attempt(run, customer, outcome, error=error)
    attempt.save()
    return attempt


def record_attempts(attempts: list[SyncAttempt]) -> None:
    """Write several new attempts in one statement; each gets its primary key (PostgreSQL and
    SQLite 3.35+ return them), so they can be finished later."""
    SyncAttempt.objects.bulk_create(attempts)


def save_before_request(attempt: SyncAttempt) -> None:
    """A request of this attempt is about to go out: the attempt must be on record first."""
    if attempt.pk is None:
        attempt.save()


def finish_attempt(
    attempt: SyncAttempt,
    outcome: AttemptOutcome,
    error: Exception | None = None,
    *,
    zoho_customer_id: str = "",
) -> None:
    """Record how an attempt ended, with Zoho's status, code and message when it failed."""
    attempt.outcome = outcome
    attempt.finished_at = timezone.now()
    attempt.zoho_customer_id = zoho_customer_id
    if error is not None:
        attempt.error_message = describe(error)
        attempt.http_status = getattr(error, "status", None)
        attempt.zoho_code = getattr(error, "code", None)
    if attempt.pk is None:
        attempt.save()
    else:
        attempt.save(update_fields=FINISHED_FIELDS)


def finish_created(zoho_ids_by_attempt: dict[int, str], when: datetime) -> None:
    """Finish, in one statement, attempts whose create Zoho answered with these customer ids."""
    SyncAttempt.objects.filter(pk__in=zoho_ids_by_attempt).update(
        outcome=AttemptOutcome.CREATED,
        finished_at=when,
        zoho_customer_id=value_by_pk(zoho_ids_by_attempt),
    )


def reclassify_attempts(attempt_ids: list[int], outcome: AttemptOutcome) -> None:
    """What we learned later changes how these attempts ended (a refusal was the customer's)."""
    SyncAttempt.objects.filter(pk__in=attempt_ids).update(outcome=outcome)


def drop_attempts(attempts: list[SyncAttempt]) -> None:
    """Attempts written ahead whose request never went out were not attempts: delete them."""
    SyncAttempt.objects.filter(pk__in=[attempt.pk for attempt in attempts]).delete()


def close_interrupted_attempts(customer: Customer, run: SyncRun) -> None:
    """Attempts another run left "sending" were cut off (`run` now holds the customer)."""
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


def refused_before_a_create(customer: Customer, error: Exception, *, run: SyncRun) -> bool:
    """Whether an earlier run got the same refusal for this customer, and Zoho then created
    another customer: evidence across runs that the refusal is about this customer's data."""
    earlier = (
        SyncAttempt.objects.filter(
            customer=customer, error_message=describe(error), run_id__lt=run.pk
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    if earlier is None:
        return False
    return (
        SyncAttempt.objects.filter(outcome=AttemptOutcome.CREATED, finished_at__gt=earlier)
        .exclude(customer=customer)
        .exists()
    )


def describe(error: Exception) -> str:
    """The message an attempt (and its customer) records for an error."""
    if isinstance(error, IntegrityError):
        return "the Zoho customer found is already linked to another local customer"
    return str(error)


def value_by_pk(values: dict[int, Any]) -> Case:
    """A CASE expression giving each row (by primary key) its own value, for one UPDATE."""
    return Case(*(When(pk=pk, then=Value(value)) for pk, value in values.items()))
