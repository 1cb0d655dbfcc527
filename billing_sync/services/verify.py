"""The runbook's checks in one place: local state against what Zoho holds.

A normal check lists Zoho once (about N/200 requests). Checking every account number needs
one read per Zoho customer, so that is the deep check, paced under the same budget.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count

from billing_sync.selectors import customer_status_counts, customers_syncable
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from billing_sync.zoho.records import ZohoCustomer


@dataclass
class VerifyReport:
    """What `zoho_verify` found; `problems` is empty when everything holds."""

    status_counts: list[tuple[str, int]]
    without_zoho_id: list[tuple[str, str, str]]
    zoho_total: int = 0
    zoho_requests: int = 0
    unknown_ids: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    missing_accounts: list[str] = field(default_factory=list)
    unlinked_zoho_count: int = 0
    deep: bool = False

    @property
    def problems(self) -> int:
        return (
            len(self.without_zoho_id)
            + len(self.unknown_ids)
            + len(self.duplicates)
            + len(self.missing_accounts)
        )


def zoho_verify(*, deep: bool = False, max_wait: float | None = None) -> VerifyReport:
    """Check local sync state and Zoho: ids, duplicates and (deep) account numbers."""
    config = zoho_config()
    syncable = customers_syncable()
    report = VerifyReport(
        status_counts=customer_status_counts(),
        without_zoho_id=list(
            syncable.filter(zoho_billing_customer_id__isnull=True).values_list(
                "email", "account_number", "zoho_sync_status"
            )
        ),
        deep=deep,
    )
    client = ZohoClient(config, max_wait=max_wait)
    try:
        zoho_customers = list(client.iter_customers())
        if deep:
            zoho_customers = [client.get_customer(c.customer_id) for c in zoho_customers]
    finally:
        report.zoho_requests = client.request_count
        client.close()
    report.zoho_total = len(zoho_customers)
    linked = dict(
        syncable.filter(zoho_billing_customer_id__isnull=False).values_list(
            "zoho_billing_customer_id", "account_number"
        )
    )
    zoho_ids = {c.customer_id for c in zoho_customers}
    report.unknown_ids = sorted(
        (account, zoho_id) for zoho_id, account in linked.items() if zoho_id not in zoho_ids
    )
    report.unlinked_zoho_count = len(zoho_ids - linked.keys())
    report.duplicates = _email_duplicates(zoho_customers)
    if deep:
        report.duplicates += _account_duplicates(zoho_customers)
        report.missing_accounts = _missing_accounts(zoho_customers, linked)
    return report


def _email_duplicates(zoho_customers: list[ZohoCustomer]) -> list[str]:
    """Emails Zoho holds more often than we have local customers with that email."""
    by_email: dict[str, list[str]] = defaultdict(list)
    for customer in zoho_customers:
        by_email[customer.email.strip().lower()].append(customer.customer_id)
    local_counts = dict(
        customers_syncable().values_list("email").annotate(n=Count("id")).values_list("email", "n")
    )
    local_by_email: dict[str, int] = defaultdict(int)
    for email, count in local_counts.items():
        local_by_email[email.strip().lower()] += count
    found = []
    for email, ids in sorted(by_email.items()):
        if len(ids) > max(1, local_by_email.get(email, 0)):
            found.append(f"email {email}: {len(ids)} Zoho customers ({', '.join(ids)})")
    return found


def _account_duplicates(zoho_customers: list[ZohoCustomer]) -> list[str]:
    by_account: dict[str, list[str]] = defaultdict(list)
    for customer in zoho_customers:
        if customer.account_number:
            by_account[customer.account_number].append(customer.customer_id)
    return [
        f"account {account}: {len(ids)} Zoho customers ({', '.join(ids)})"
        for account, ids in sorted(by_account.items())
        if len(ids) > 1
    ]


def _missing_accounts(zoho_customers: list[ZohoCustomer], linked: dict[str, str]) -> list[str]:
    """Local account numbers no Zoho customer carries, or carried by another id than ours."""
    by_id = {c.customer_id: c.account_number for c in zoho_customers}
    missing = []
    for zoho_id, account in sorted(linked.items(), key=lambda item: item[1]):
        if zoho_id in by_id and by_id[zoho_id] != account:
            found = by_id[zoho_id] or "none"
            missing.append(f"account {account}: Zoho customer {zoho_id} carries {found}")
    return missing
