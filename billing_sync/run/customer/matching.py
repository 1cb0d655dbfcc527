"""Finding the Zoho customer that already stands for a local one, with as few requests as we can.

A run over many customers lists Zoho once into an index by email; a run over a few searches
by email per customer. Zoho's list leaves custom fields out, so a candidate is read in full
only when its account number decides the match. A candidate already linked to another local
customer is never a match: two local customers may share an email.

Another integration (a hosted payment page, a person in Zoho's web app) may create one of our
customers while a run goes on. Before a create relies on an index older than `max_age`, the
index is brought up to date: the newest customers first, page by page, until the pages reach
customers older than the last listing (less an overlap for clocks that differ); when Zoho does
not honour that order, the whole list again. What remains: a customer created in Zoho within
`max_age` before one of ours is created, or one Zoho's list has not caught up with yet, may be
missed; `zoho_verify` names such duplicates (same email, or `--deep` same account number).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from billing_sync.models import Customer
from billing_sync.zoho.client import MAX_PAGES, PAGE_SIZE, ZohoClient
from billing_sync.zoho.records import ZohoCustomer, email_key

# Customers Zoho stamped up to this long before our last listing began are read again: its
# clock and ours may differ, and its list may lag behind a create.
INDEX_OVERLAP_SECONDS = 300.0
NEWEST_FIRST = {"sort_column": "created_time", "sort_order": "D"}


class OrderNotHonoured(Exception):
    """Zoho did not list its customers newest first as asked."""


def lookup_prefers_index(customer_count: int) -> bool:
    """Whether listing Zoho once costs fewer requests than one search per customer."""
    known = Customer.objects.filter(zoho_billing_customer_id__isnull=False).count()
    list_pages = max(1, -(-(known + customer_count) // PAGE_SIZE))
    return customer_count > list_pages


class ZohoCustomerFinder:
    """Answers "does Zoho already hold this customer?" for one run."""

    def __init__(
        self,
        client: ZohoClient,
        *,
        use_index: bool,
        max_age: float,
        lists_for_linked: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`lists_for_linked`: whether Zoho's list is read to tell that a linked customer is
        gone (the plan's finder); else only an index the run has listed anyway tells."""
        self.client = client
        self.use_index = use_index
        self.max_age = max_age
        self.lists_for_linked = lists_for_linked
        self.clock = clock
        self._index: dict[str, list[ZohoCustomer]] | None = None
        self._ids: set[str] = set()  # every Zoho id in the index
        self._listed_at = 0.0  # when the listing behind the index began

    def find(self, customer: Customer, *, outcome_unknown: bool) -> ZohoCustomer | None:
        """The Zoho customer to adopt for `customer`, or None when a create is due.

        `outcome_unknown`: an earlier create may have gone through, so search Zoho afresh
        instead of trusting an index listed before it.
        """
        if outcome_unknown or not self.use_index:
            candidates = self.client.find_customers_by_email(customer.email.strip())
        else:
            candidates = list(self._current_index().get(email_key(customer.email), []))
        candidates = _unlinked(candidates, customer)
        if not candidates:
            return None
        full = [c if c.is_full else self.client.get_customer(c.customer_id) for c in candidates]
        same_account = [c for c in full if c.account_number == customer.account_number]
        if same_account:
            return same_account[0]
        if len(full) == 1 and not full[0].account_number:
            return full[0]
        return None

    def surely_absent(self, customer: Customer) -> bool:
        """Surely not in Zoho by the run's index: a create is due, no request needed to know.

        False until a lookup has listed Zoho, and while the index is too old to rely on: that
        listing belongs to a customer's attempt, whose retries and audit cover its failures.
        """
        return (
            self._index is not None
            and not self._stale()
            and email_key(customer.email) not in self._index
        )

    def surely_gone(self, zoho_customer_id: str) -> bool:
        """Zoho's list, read by this finder, does not hold the customer with this id (deleted
        in Zoho?). False where no listing tells: a run that has not listed Zoho, or an index
        too old to rely on."""
        if self.lists_for_linked:
            self._current_index()
        elif self._index is None or self._stale():
            return False
        return zoho_customer_id not in self._ids

    def listed(self, zoho_customer_id: str) -> ZohoCustomer | None:
        """Zoho's list item for this id (from the run's index, listing Zoho if it has not yet)."""
        for entries in self._current_index().values():
            for zoho_customer in entries:
                if zoho_customer.customer_id == zoho_customer_id:
                    return zoho_customer
        return None

    def _current_index(self) -> dict[str, list[ZohoCustomer]]:
        if self._index is None:
            self._listed_at = self.clock()
            self._index, self._ids = defaultdict(list), set()
            self._add(self.client.iter_customers())
        elif self._stale():
            self._catch_up()
        return self._index

    def _stale(self) -> bool:
        return self.clock() - self._listed_at > self.max_age

    def _catch_up(self) -> None:
        """Add the customers Zoho got since the last listing; list everything again if the
        newest-first order cannot be trusted."""
        began = self.clock()
        since = datetime.fromtimestamp(self._listed_at - INDEX_OVERLAP_SECONDS, tz=UTC)
        try:
            newest = list(self._newest_since(since))
        except OrderNotHonoured:
            self._index, self._ids = defaultdict(list), set()
            newest = list(self.client.iter_customers())
        self._listed_at = began
        self._add(newest)

    def _newest_since(self, since: datetime) -> Iterator[ZohoCustomer]:
        """Zoho's customers created after `since`, newest first, checking the order as we go."""
        previous: datetime | None = None
        for page_number in range(1, MAX_PAGES + 1):
            page = self.client.list_customers(page=page_number, **NEWEST_FIRST)
            if page.sort_order not in (None, "D"):
                raise OrderNotHonoured
            for zoho_customer in page.customers:
                created = zoho_customer.created_at
                if created is None or (previous is not None and created > previous):
                    raise OrderNotHonoured
                if created < since:
                    return
                previous = created
                yield zoho_customer
            if not page.has_more_page:
                return
        raise OrderNotHonoured

    def _add(self, zoho_customers: Iterator[ZohoCustomer] | list[ZohoCustomer]) -> None:
        index = self._index
        assert index is not None
        for zoho_customer in zoho_customers:
            entries = index[email_key(zoho_customer.email)]
            if all(known.customer_id != zoho_customer.customer_id for known in entries):
                entries.append(zoho_customer)
            self._ids.add(zoho_customer.customer_id)


def _unlinked(candidates: list[ZohoCustomer], customer: Customer) -> list[ZohoCustomer]:
    if not candidates:
        return []
    linked = set(
        Customer.objects.filter(zoho_billing_customer_id__in=[c.customer_id for c in candidates])
        .exclude(pk=customer.pk)
        .values_list("zoho_billing_customer_id", flat=True)
    )
    return [c for c in candidates if c.customer_id not in linked]
