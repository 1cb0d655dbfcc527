"""The decisions: what a run does with one customer, and why; reading Zoho, writing nothing.

`decide` takes them (so `zoho_plan` shows what a run will do, by the very code the run acts
on), in this order:
1. its data is checked (customer_data.py): a record Zoho would refuse needs a person (INVALID);
2. Zoho holds it (we have its id): send our fields if they changed since (UPDATE), mark it
   inactive or active again if only its account status changed (DEACTIVATE, REACTIVATE), else
   SKIP; where Zoho's list, read by the finder, no longer holds it, GONE (the run reads it once
   to be sure, and a person decides);
3. an earlier create whose answer was unclear must have settled before we look (WAIT);
4. Zoho is asked whether it holds the customer already (matching.py): ADOPT it, else CREATE
   it, unless its account is closed (SKIP: a closed account is never created).
No HTTP of its own and no database write: acting on a decision is acting.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.utils import timezone

from billing_sync.customer_data import (
    customer_validation_errors,
    customer_zoho_fields,
    zoho_fields_hash,
    zoho_status,
)
from billing_sync.models import AccountStatus, Customer
from billing_sync.run.customer.matching import ZohoCustomerFinder
from billing_sync.times import in_utc
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.records import ZohoCustomer

UNCHANGED = "nothing Zoho holds of it changed since Zoho last accepted it"
TAKEN_BY_ANOTHER = "no longer needs syncing or another run is working on it"
GONE = (
    "Zoho's list no longer holds the customer we are linked to (deleted in Zoho?): the run "
    "reads it once and, if Zoho does not hold it, leaves it failed, needing a person (unlink "
    "it, or `zoho_verify --fix` relinks it)"
)
CLOSED_NOT_CREATED = "its account was closed before it reached Zoho: not created"


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
        decision = decide_linked(customer, config)
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


def decide_linked(customer: Customer, config: ZohoConfig) -> Decision:
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
        f"Zoho after {in_utc(settles)}, before creating again"
    )
