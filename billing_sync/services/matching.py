"""Finding the Zoho customer that already stands for a local one, with as few requests as we can.

A run over many customers lists Zoho once into an index by email; a run over a few searches
by email per customer. Zoho's list leaves custom fields out, so a candidate is read in full
only when its account number decides the match. A candidate already linked to another local
customer is never a match: two local customers may share an email.
"""

from __future__ import annotations

from collections import defaultdict

from billing_sync.models import Customer
from billing_sync.zoho.client import PAGE_SIZE, ZohoClient
from billing_sync.zoho.records import ZohoCustomer


def lookup_prefers_index(customer_count: int) -> bool:
    """Whether listing Zoho once costs fewer requests than one search per customer."""
    known = Customer.objects.filter(zoho_billing_customer_id__isnull=False).count()
    list_pages = max(1, -(-(known + customer_count) // PAGE_SIZE))
    return customer_count > list_pages


class ZohoCustomerFinder:
    """Answers "does Zoho already hold this customer?" for one run."""

    def __init__(self, client: ZohoClient, *, use_index: bool) -> None:
        self.client = client
        self.use_index = use_index
        self._index: dict[str, list[ZohoCustomer]] | None = None

    def find(self, customer: Customer, *, outcome_unknown: bool) -> ZohoCustomer | None:
        """The Zoho customer to adopt for `customer`, or None when a create is due.

        `outcome_unknown`: an earlier create may have gone through, so search Zoho afresh
        instead of trusting an index listed before it.
        """
        if outcome_unknown or not self.use_index:
            candidates = self.client.find_customers_by_email(customer.email.strip())
        else:
            candidates = list(self._by_email().get(_key(customer.email), []))
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

    def plainly_absent(self, customer: Customer) -> bool:
        """Surely not in Zoho by the run's index: a create is due, no request needed to know.

        False until a lookup has listed Zoho: that listing belongs to a customer's attempt,
        whose retries and audit cover its failures.
        """
        return self._index is not None and _key(customer.email) not in self._index

    def _by_email(self) -> dict[str, list[ZohoCustomer]]:
        if self._index is None:
            index: dict[str, list[ZohoCustomer]] = defaultdict(list)
            for zoho_customer in self.client.iter_customers():
                index[_key(zoho_customer.email)].append(zoho_customer)
            self._index = index
        return self._index


def _key(email: str) -> str:
    return email.strip().lower()


def _unlinked(candidates: list[ZohoCustomer], customer: Customer) -> list[ZohoCustomer]:
    if not candidates:
        return []
    linked = set(
        Customer.objects.filter(zoho_billing_customer_id__in=[c.customer_id for c in candidates])
        .exclude(pk=customer.pk)
        .values_list("zoho_billing_customer_id", flat=True)
    )
    return [c for c in candidates if c.customer_id not in linked]
