"""The runbook's checks in one place: local state against what Zoho holds, and repairing it.

A normal check lists Zoho once (about N/200 requests): totals, ids Zoho does not know,
duplicates by email, and drift in every field the list carries (names, email, phone). Checking
account numbers needs one read per Zoho customer, so that is the deep check, paced under the
same budget: it adds drift in the account number, duplicates by account number, and local
customers that lost their Zoho id although Zoho holds their account number.

`--fix` (`zoho_verify(fix=True)`) repairs what our data decides: it relinks those customers,
marks every drifted customer (and one whose Zoho record lacks our account number) to be sent
again, and runs the sync, which sends our values, creates the customers Zoho lacks and writes
the account numbers; then it checks again. Ids Zoho does not know and duplicates need a person.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError
from django.db.models import BooleanField, Count, ExpressionWrapper

from billing_sync.customer_data import (
    customer_zoho_fields,
    fields_that_differ,
    zoho_held_fields,
    zoho_status,
)
from billing_sync.models import ZOHO_DATA_FIELDS, AccountStatus, Customer, SyncStatus, SyncTrigger
from billing_sync.operations.overview import customer_status_counts
from billing_sync.run.report import RunReport
from billing_sync.run.runs import customers_sync
from billing_sync.run.selection import (
    closed_before_zoho_q,
    customers_syncable,
    edited_since_accepted_q,
)
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from billing_sync.zoho.records import ZohoCustomer, email_key

COMPARED_FIELDS = (
    "pk",
    *ZOHO_DATA_FIELDS,
    "zoho_billing_customer_id",
    "zoho_sync_status",
    "updated_at",
    "zoho_synced_data_at",
)


@dataclass(frozen=True)
class WithoutZohoId:
    """A customer that belongs in Zoho and has no Zoho id."""

    email: str
    account_number: str
    status: str  # its zoho_sync_status

    def __str__(self) -> str:
        return f"{self.email} - {self.account_number} ({self.status})"


@dataclass(frozen=True)
class UnknownId:
    """A customer linked to a Zoho id that Zoho does not know."""

    account_number: str
    zoho_customer_id: str

    def __str__(self) -> str:
        return f"{self.account_number}: {self.zoho_customer_id}"


@dataclass(frozen=True)
class Duplicate:
    """Zoho holds one email or account number more often than we have customers with it."""

    by: str  # "email" or "account_number"
    value: str
    zoho_customer_ids: tuple[str, ...]

    def __str__(self) -> str:
        by = "email" if self.by == "email" else "account"
        ids = ", ".join(self.zoho_customer_ids)
        return f"{by} {self.value}: {len(self.zoho_customer_ids)} Zoho customers ({ids})"


@dataclass(frozen=True)
class WrongAccount:
    """A linked Zoho customer that does not carry our account number (`carried`: what it does)."""

    account_number: str
    zoho_customer_id: str
    carried: str | None

    def __str__(self) -> str:
        found = self.carried or "none"
        return (
            f"account {self.account_number}: Zoho customer {self.zoho_customer_id} carries {found}"
        )


@dataclass(frozen=True)
class Drift:
    """A linked customer whose Zoho record differs from ours in some of the fields we own."""

    customer_id: int
    account_number: str
    zoho_customer_id: str
    fields: tuple[str, ...]
    edited_here: bool  # changed here since Zoho last accepted it: not sent yet

    def __str__(self) -> str:
        why = "edited here, not sent yet" if self.edited_here else "changed in Zoho"
        return (
            f"{self.account_number} (Zoho {self.zoho_customer_id}): "
            f"{', '.join(self.fields)} ({why})"
        )


@dataclass(frozen=True)
class Relink:
    """A customer without a Zoho id whose account number a Zoho customer carries."""

    customer_id: int
    account_number: str
    zoho_customer_id: str


@dataclass
class VerifyReport:
    """What `zoho_verify` found; `problems` is 0 when everything holds."""

    status_counts: list[tuple[str, int]]
    without_zoho_id: list[WithoutZohoId]
    deep: bool = False
    zoho_total: int = 0
    zoho_requests: int = 0
    unlinked_zoho_count: int = 0
    unknown_ids: list[UnknownId] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    missing_accounts: list[WrongAccount] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    relinkable: list[Relink] = field(default_factory=list)
    # With --fix: the sync run that repaired what it could, and the customers relinked.
    fix_run: RunReport | None = None
    relinked: int = 0

    @property
    def problems(self) -> int:
        return (
            len(self.without_zoho_id)
            + len(self.unknown_ids)
            + len(self.duplicates)
            + len(self.missing_accounts)
            + len(self.drift)
        )


def zoho_verify(
    *, deep: bool = False, fix: bool = False, max_wait: float | None = None
) -> VerifyReport:
    """Check local sync state against Zoho; with `fix`, repair what our data decides, then
    check again (the report of the second check, with the fix's run)."""
    report = _check(deep=deep, max_wait=max_wait)
    if not fix:
        return report
    relinked = _relink(report.relinkable)
    _mark_to_send(report)
    fix_run = customers_sync(trigger=SyncTrigger.COMMAND, max_wait=max_wait)
    again = _check(deep=deep, max_wait=max_wait)
    again.fix_run, again.relinked = fix_run, relinked
    return again


def _check(*, deep: bool, max_wait: float | None) -> VerifyReport:
    syncable = customers_syncable()
    report = VerifyReport(
        status_counts=customer_status_counts(),
        without_zoho_id=[
            WithoutZohoId(*row)
            for row in syncable.filter(zoho_billing_customer_id__isnull=True)
            .exclude(closed_before_zoho_q())
            .values_list("email", "account_number", "zoho_sync_status")
        ],
        deep=deep,
    )
    zoho_customers = _read_zoho(report, deep=deep, max_wait=max_wait)
    by_id = {c.customer_id: c for c in zoho_customers}
    linked = list(
        syncable.filter(zoho_billing_customer_id__isnull=False)
        .only(*COMPARED_FIELDS)
        .annotate(edited_here=ExpressionWrapper(edited_since_accepted_q(), BooleanField()))
    )
    report.zoho_total = len(zoho_customers)
    report.unknown_ids = sorted(
        (
            UnknownId(c.account_number, c.zoho_billing_customer_id)
            for c in linked
            if c.zoho_billing_customer_id not in by_id
        ),
        key=lambda unknown: (unknown.account_number, unknown.zoho_customer_id),
    )
    report.unlinked_zoho_count = len(by_id.keys() - {c.zoho_billing_customer_id for c in linked})
    report.duplicates = _email_duplicates(zoho_customers)
    report.drift = _drift(linked, by_id)
    if deep:
        report.duplicates += _account_duplicates(zoho_customers)
        report.missing_accounts = _missing_accounts(linked, by_id)
        report.relinkable = _relinkable(zoho_customers, linked)
    return report


def _read_zoho(report: VerifyReport, *, deep: bool, max_wait: float | None) -> list[ZohoCustomer]:
    client = ZohoClient(zoho_config(), max_wait=max_wait)
    try:
        zoho_customers = list(client.iter_customers())
        if deep:
            zoho_customers = [client.get_customer(c.customer_id) for c in zoho_customers]
    finally:
        report.zoho_requests = client.request_count
        client.close()
    return zoho_customers


def _drift(linked: list[Customer], by_id: dict[str, ZohoCustomer]) -> list[Drift]:
    """Fields of ours that Zoho holds otherwise: from the list's fields, or (deep) all."""
    account_field = zoho_config().account_number_field
    drift = []
    for customer in sorted(linked, key=lambda c: c.account_number):
        zoho_customer = by_id.get(customer.zoho_billing_customer_id)
        if zoho_customer is None:
            continue
        ours = customer_zoho_fields(customer, account_field=account_field)
        held = zoho_held_fields(zoho_customer, account_field=account_field)
        differ = [name for name in fields_that_differ(ours, held) if name != "account_number"]
        if zoho_customer.status and zoho_customer.status != zoho_status(customer):
            differ.append("account_status")
        if differ:
            drift.append(
                Drift(
                    customer.pk,
                    customer.account_number,
                    customer.zoho_billing_customer_id,
                    tuple(differ),
                    customer.edited_here,
                )
            )
    return drift


def _email_duplicates(zoho_customers: list[ZohoCustomer]) -> list[Duplicate]:
    """Emails Zoho holds more often than we have local customers with that email."""
    by_email: dict[str, list[str]] = defaultdict(list)
    for customer in zoho_customers:
        by_email[email_key(customer.email)].append(customer.customer_id)
    local_counts = dict(
        customers_syncable().values_list("email").annotate(n=Count("id")).values_list("email", "n")
    )
    local_by_email: dict[str, int] = defaultdict(int)
    for email, count in local_counts.items():
        local_by_email[email_key(email)] += count
    return [
        Duplicate("email", email, tuple(ids))
        for email, ids in sorted(by_email.items())
        if len(ids) > max(1, local_by_email.get(email, 0))
    ]


def _account_duplicates(zoho_customers: list[ZohoCustomer]) -> list[Duplicate]:
    by_account: dict[str, list[str]] = defaultdict(list)
    for customer in zoho_customers:
        if customer.account_number:
            by_account[customer.account_number].append(customer.customer_id)
    return [
        Duplicate("account_number", account, tuple(ids))
        for account, ids in sorted(by_account.items())
        if len(ids) > 1
    ]


def _missing_accounts(linked: list[Customer], by_id: dict[str, ZohoCustomer]) -> list[WrongAccount]:
    """Linked customers whose Zoho record does not carry our account number."""
    wrong = []
    for customer in sorted(linked, key=lambda c: c.account_number):
        zoho_customer = by_id.get(customer.zoho_billing_customer_id)
        ours = customer.account_number.strip()
        if zoho_customer is not None and zoho_customer.account_number != ours:
            wrong.append(
                WrongAccount(ours, zoho_customer.customer_id, zoho_customer.account_number)
            )
    return wrong


def _relinkable(zoho_customers: list[ZohoCustomer], linked: list[Customer]) -> list[Relink]:
    """Customers without a Zoho id whose account number exactly one unlinked Zoho customer
    carries (fully read, so the account number is known)."""
    taken = {c.zoho_billing_customer_id for c in linked}
    by_account: dict[str, list[str]] = defaultdict(list)
    for zoho_customer in zoho_customers:
        if zoho_customer.account_number and zoho_customer.customer_id not in taken:
            by_account[zoho_customer.account_number].append(zoho_customer.customer_id)
    unlinked = customers_syncable().filter(zoho_billing_customer_id__isnull=True)
    return [
        Relink(pk, account, by_account[account.strip()][0])
        for pk, account in unlinked.values_list("pk", "account_number")
        if len(by_account.get(account.strip(), ())) == 1
    ]


def _relink(relinkable: Iterable[Relink]) -> int:
    """Link each customer to the Zoho customer carrying its account number, unless a run holds
    it or the id got linked meanwhile; its data is then sent by the sync that follows."""
    relinked = 0
    for relink in relinkable:
        try:
            relinked += Customer.objects.filter(
                pk=relink.customer_id, zoho_billing_customer_id__isnull=True, zoho_claimed_by=None
            ).update(
                zoho_billing_customer_id=relink.zoho_customer_id,
                zoho_sync_status=SyncStatus.PENDING,
                zoho_create_sent_at=None,
                zoho_synced_data_at=None,
                zoho_synced_hash="",
                zoho_last_error="",
            )
        except IntegrityError:  # linked to another customer meanwhile: left for a person
            continue
    return relinked


STATUS_ONLY = ("account_status",)


def _mark_to_send(report: VerifyReport) -> None:
    """Drifted customers, and those whose Zoho record lacks our account number, are sent our
    values again by the sync, whatever it thinks Zoho holds."""
    customer_ids = {drift.customer_id for drift in report.drift if drift.fields != STATUS_ONLY}
    zoho_ids = {wrong.zoho_customer_id for wrong in report.missing_accounts}
    Customer.objects.filter(pk__in=customer_ids).update(
        zoho_synced_data_at=None, zoho_synced_hash=""
    )
    # Zoho holds the other status than ours: the sync marks it (alone, one request).
    status_drift = [drift.customer_id for drift in report.drift if "account_status" in drift.fields]
    for status, zoho_inactive in ((AccountStatus.ACTIVE, True), (AccountStatus.CLOSED, False)):
        Customer.objects.filter(pk__in=status_drift, account_status=status).update(
            zoho_synced_data_at=None, zoho_inactive=zoho_inactive
        )
    Customer.objects.filter(zoho_billing_customer_id__in=zoho_ids).update(
        zoho_synced_data_at=None, zoho_synced_hash=""
    )
