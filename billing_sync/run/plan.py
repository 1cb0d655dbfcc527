"""The plan: what a run would do with each customer, from one read of Zoho, written nowhere.

Each customer the run would take gets the decision the run would act on: `decide`, the very
function a run calls (customer/decisions.py), with the writes left out. Zoho is listed once
(pages of 200, within the shared budget; a candidate is read in full where its account number
decides), and nothing is written: no run, no attempt, no customer row, nothing in Zoho. It
estimates when the run would be done (estimate.py): the requests each decision sends, and
Zoho's reads again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from billing_sync.customer_data import (
    customer_zoho_fields,
    fields_that_differ,
    zoho_held_fields,
)
from billing_sync.models import Customer, SyncRunKind
from billing_sync.run.customer.decisions import Action, Decision, decide
from billing_sync.run.customer.matching import ZohoCustomerFinder
from billing_sync.run.estimate import Estimate, estimate_finish, higher_daily_limit
from billing_sync.run.selection import RUN_SELECTIONS, RunSelection, customers_syncable
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import ZohoConfig, zoho_config


@dataclass(frozen=True)
class PlannedCustomer:
    """What a run would do with one customer, and why."""

    customer_id: int
    email: str
    account_number: str
    action: Action
    reason: str
    zoho_customer_id: str = ""  # adopt: the one found; update and skip: the one linked
    fields: tuple[str, ...] = ()  # update: the fields Zoho's list shows otherwise
    requests: int = 0  # the writes (or reads) the run will send for it, the listing aside


@dataclass
class Plan:
    """A plan for one kind of run."""

    kind: SyncRunKind
    customers: list[PlannedCustomer] = field(default_factory=list)
    requests: int = 0  # what the plan read of Zoho (the run reads as much again)
    estimate: Estimate | None = None  # when the run would be done, at the current limits
    # Where the daily share binds: the next daily limit up, and the estimate with it.
    higher: tuple[int, Estimate] | None = None

    @property
    def counts(self) -> dict[Action, int]:
        """How many customers each action would take (every action named, 0 included)."""
        counted = Counter(planned.action for planned in self.customers)
        return {action: counted.get(action, 0) for action in Action}


def customers_plan(
    *,
    kind: SyncRunKind = SyncRunKind.SYNC,
    limit: int | None = None,
    max_wait: float | None = None,
) -> Plan:
    """What a run of `kind` (over at most `limit` customers) would do with each, in order."""
    config = zoho_config()
    wanted = RUN_SELECTIONS[kind](config.stale_claim_seconds)
    selected = RunSelection.take(customers_syncable().filter(wanted), limit)
    plan = Plan(kind=kind)
    client = ZohoClient(config, max_wait=max_wait)
    finder = ZohoCustomerFinder(
        client, use_index=True, max_age=config.index_max_age_seconds, lists_for_linked=True
    )
    try:
        for customer in selected.customers():
            decision = decide(customer, finder=finder, config=config)
            plan.customers.append(_planned(customer, decision, finder, config))
    finally:
        plan.requests = client.request_count
        client.close()
    needed = plan.requests + sum(planned.requests for planned in plan.customers)
    plan.estimate = estimate_finish(needed)
    higher = higher_daily_limit()
    if plan.estimate.limited_by == "daily" and higher is not None:
        plan.higher = (higher, estimate_finish(needed, daily_limit=higher))
    return plan


def _planned(
    customer: Customer, decision: Decision, finder: ZohoCustomerFinder, config: ZohoConfig
) -> PlannedCustomer:
    zoho_id = decision.found.customer_id if decision.found else ""
    fields: tuple[str, ...] = ()
    if customer.zoho_billing_customer_id:
        zoho_id = customer.zoho_billing_customer_id
    if decision.action == Action.UPDATE:
        fields = _fields_zoho_shows_otherwise(customer, finder, config)
    return PlannedCustomer(
        customer.pk,
        customer.email,
        customer.account_number,
        decision.action,
        decision.reason,
        zoho_id,
        fields,
        _requests(decision),
    )


def _requests(decision: Decision) -> int:
    """The requests the run sends for one decision (a wait: a search, then a create)."""
    if decision.action == Action.ADOPT:
        return int(decision.writes_account_number)
    if decision.action == Action.UPDATE:
        return 1 + bool(decision.sets_status)
    return REQUESTS_FOR.get(decision.action, 0)


REQUESTS_FOR = {
    Action.CREATE: 1,
    Action.DEACTIVATE: 1,
    Action.REACTIVATE: 1,
    Action.WAIT: 2,
    Action.GONE: 1,
}


def _fields_zoho_shows_otherwise(
    customer: Customer, finder: ZohoCustomerFinder, config: ZohoConfig
) -> tuple[str, ...]:
    """The fields Zoho's list shows otherwise than we hold them (the account number is not in
    the list: an edit of it alone shows no field here)."""
    listed = finder.listed(customer.zoho_billing_customer_id)
    if listed is None:
        return ()
    ours = customer_zoho_fields(customer, account_field=config.account_number_field)
    held = zoho_held_fields(listed, account_field=config.account_number_field)
    return tuple(fields_that_differ(ours, held))
