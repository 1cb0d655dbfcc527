"""What to do with one customer: the decision a run acts on, and a plan shows.

`decide` reads (the customer row, and Zoho through the run's finder) and writes nothing, so
`zoho_plan` calls the very function a run calls, with the writes left out: the plan cannot
disagree with the run that follows it (unless Zoho or the table change in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from django.utils import timezone

from billing_sync.models import Customer
from billing_sync.services.customer_data import (
    customer_validation_errors,
    customer_zoho_fields,
    zoho_fields_hash,
)
from billing_sync.services.matching import ZohoCustomerFinder
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.records import ZohoCustomer

UNCHANGED = "nothing Zoho holds of it changed since Zoho last accepted it"


class Action(StrEnum):
    """What a run does with a customer."""

    CREATE = "create"  # Zoho does not hold it: create it
    ADOPT = "adopt"  # Zoho holds it already (ours by account number, or its email alone)
    UPDATE = "update"  # Zoho holds it, and it was edited here since: send our fields
    SKIP = "skip"  # nothing to send
    INVALID = "invalid"  # Zoho would refuse its data: a person fixes it
    WAIT = "wait"  # an earlier create may still be settling in Zoho: look later


@dataclass(frozen=True)
class Decision:
    """One customer's decision, and why."""

    action: Action
    reason: str
    found: ZohoCustomer | None = None  # ADOPT: the Zoho customer to link
    settles_at: datetime | None = None  # WAIT: when Zoho may be searched

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
        fields = customer_zoho_fields(customer, account_field=config.account_number_field)
        if zoho_fields_hash(fields) == customer.zoho_synced_hash:
            return Decision(Action.SKIP, UNCHANGED)
        return Decision(Action.UPDATE, "edited here since Zoho last accepted it")
    settles = settles_at(customer, config)
    if settles is not None and timezone.now() < settles:
        # Searching before Zoho finishes (or its search catches up) could miss the customer
        # and lead to a duplicate.
        return Decision(Action.WAIT, not_settled_message(settles), settles_at=settles)
    found = finder.find(customer, outcome_unknown=settles is not None)
    if found is None:
        why = "its earlier create is not in Zoho" if settles is not None else "not in Zoho"
        return Decision(Action.CREATE, why)
    if found.account_number is None:
        why = "the one Zoho customer with its email, carrying no account number"
    else:
        why = "the Zoho customer carrying its account number"
    return Decision(Action.ADOPT, why, found=found)


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
