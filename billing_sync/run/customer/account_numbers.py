"""Our account number in Zoho's custom field: matching relies on it, so it must arrive.

Every answer to a create (or to an adoption that writes it) must carry our account number back
unchanged in the field `ZOHO_ACCOUNT_NUMBER_FIELD`. When it does not (the organization lacks
the field, or names or types it otherwise), the customer is linked, since it is in Zoho, and
marked `zoho_account_number_missing`, and the run stops (AccountNumberNotKept). Before its
first create, a run writes the account number into every customer so marked
(`repair_before_creating`): once Zoho keeps it, they are repaired; while it does not, the run
stops before creating anyone else who would lack it too. That is tried once per
ZOHO_SYNC_EVERY_MINUTES (a person's run tries at once); in between, a run that would create
stops before it, at no request. When none is marked it costs one query; a run that creates
nothing (an edit's task) does not look. A marked customer the run sends its edits to is
repaired by that update itself (it carries the number).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from billing_sync.customer_data import account_number_update, customer_validation_errors
from billing_sync.models import AttemptOutcome, Customer
from billing_sync.run.audit import RunAttempts, set_ended
from billing_sync.run.customer.refusals import names_account_field
from billing_sync.run.stops import (
    RUN_STOPPERS,
    AccountFieldRefused,
    AccountFieldUnchecked,
    AccountNumberNotKept,
    AccountNumbersNotKeptYet,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.errors import (
    ZohoError,
    ZohoInvalidData,
    ZohoNotFound,
)
from billing_sync.zoho.records import ZohoCustomer
from billing_sync.zoho.state import api_state_for_update, current_api_state


def check_account_number(
    customer: Customer, zoho_customer: ZohoCustomer, *, account_field: str
) -> None:
    """Raise AccountNumberNotKept unless Zoho's answer carries our account number as sent."""
    if zoho_customer.account_number != customer.account_number.strip():
        raise AccountNumberNotKept(customer, zoho_customer, account_field=account_field)


def flag_account_number_missing(error: AccountNumberNotKept) -> None:
    """Mark the linked customer whose Zoho record lacks our account number, saying why (Zoho
    was just seen not to keep it: the next try is an interval away)."""
    with transaction.atomic():
        Customer.objects.filter(pk=error.customer_id).update(
            zoho_account_number_missing=True, zoho_last_error=str(error)
        )
        _checked_now()


def repair_before_creating(
    *, attempts: RunAttempts, client: ZohoClient, account_field: str, person_asked: bool
) -> None:
    """Before a run's first create: write our account number where Zoho lacks it (at most once
    an interval, unless a person asked for the run); raise what stops the run while Zoho does
    not keep it."""
    steps = attempts.steps
    if not steps.take(_missing().exists):
        return
    state = steps.take(current_api_state)
    interval = timedelta(minutes=settings.ZOHO_SYNC_EVERY_MINUTES)
    checked_at = state.account_numbers_checked_at if state else None
    if checked_at and not person_asked and timezone.now() < checked_at + interval:
        raise AccountNumbersNotKeptYet(checked_at=checked_at, next_at=checked_at + interval)
    steps.take(_checked_now)
    repair_account_numbers(attempts=attempts, client=client, account_field=account_field)


def _missing() -> QuerySet[Customer]:
    return Customer.objects.filter(
        zoho_account_number_missing=True, zoho_billing_customer_id__isnull=False
    )


def _checked_now() -> None:
    with transaction.atomic():
        state = api_state_for_update()
        state.account_numbers_checked_at = timezone.now()
        state.save(update_fields=["account_numbers_checked_at"])


def repair_account_numbers(
    *, attempts: RunAttempts, client: ZohoClient, account_field: str
) -> None:
    """Write our account number into each customer Zoho holds without it (one request each,
    an attempt of the run that is not how any customer ended it); raise what stops the run
    while Zoho still does not keep it."""
    missing = _missing().order_by("zoho_last_synced_at", "pk")
    for customer in attempts.steps.take(lambda: list(missing)):
        if not customer_validation_errors(customer):  # else Zoho would refuse the update
            _write_account_number(
                customer, attempts=attempts, client=client, account_field=account_field
            )


def _write_account_number(
    customer: Customer, *, attempts: RunAttempts, client: ZohoClient, account_field: str
) -> None:
    attempt = attempts.begin(customer)
    attempts.open(attempt)
    payload = account_number_update(
        customer,
        display_name=customer.display_name,
        email=customer.email.strip(),
        account_field=account_field,
    )
    try:
        answer = client.update_customer(customer.zoho_billing_customer_id, payload)
    except ZohoNotFound as error:  # deleted in Zoho meanwhile: `zoho_verify` names it
        attempts.finish(attempt, AttemptOutcome.FAILED, error=error)
        return
    except ZohoInvalidData as error:
        attempts.finish(attempt, AttemptOutcome.FAILED, error=error)
        if names_account_field(error, account_field=account_field):
            raise AccountFieldRefused(error, account_field=account_field) from error
        raise AccountFieldUnchecked(error) from error
    except ZohoError as error:
        attempts.finish(attempt, AttemptOutcome.FAILED, error=error)
        if isinstance(error, RUN_STOPPERS):
            raise
        raise AccountFieldUnchecked(error) from error
    try:
        check_account_number(customer, answer, account_field=account_field)
    except AccountNumberNotKept as error:
        attempts.finish(
            attempt, AttemptOutcome.FAILED, error=error, zoho_customer_id=answer.customer_id
        )
        raise
    repaired = Customer.objects.filter(pk=customer.pk)
    attempts.write(
        [set_ended(attempt, AttemptOutcome.UPDATED, zoho_customer_id=answer.customer_id)],
        also=lambda: repaired.update(zoho_account_number_missing=False, zoho_last_error=""),
    )
