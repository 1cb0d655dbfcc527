"""Reads: which customers a run takes, and summaries people look at."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, CharField, Count, F, Q, QuerySet, Value, When
from django.utils import timezone
from django_q.models import Schedule

from billing_sync.models import (
    AccountStatus,
    AccountType,
    Customer,
    CustomerImport,
    ImportSource,
    ImportStatus,
    SyncRun,
    SyncRunKind,
    SyncStatus,
)
from billing_sync.zoho.state import current_api_state

# The django-q schedules `zoho_schedule` keeps, by name (the import only with a source database).
SYNC_SCHEDULE = "zoho-sync"
IMPORT_SCHEDULE = "customers-import"
SCHEDULE_NAMES = (SYNC_SCHEDULE, IMPORT_SCHEDULE)
# Schedules of earlier versions, replaced by the sync: `zoho_schedule` removes them.
RETIRED_SCHEDULES = ("zoho-retry-failed", "zoho-backfill")


def customers_syncable() -> QuerySet[Customer]:
    """Customers that belong in Zoho (internal test accounts never do)."""
    return Customer.objects.exclude(account_type=AccountType.INTERNAL_TEST)


def stale_claim_q(stale_after_seconds: float) -> Q:
    """A claim left by a run that died: old enough that nobody is working on it."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    return Q(zoho_sync_status=SyncStatus.SYNCING) & (
        Q(zoho_claimed_at__lt=cutoff) | Q(zoho_claimed_at__isnull=True)
    )


def edited_since_accepted_q() -> Q:
    """Edited here since Zoho last accepted our data (or never known to be in step)."""
    return Q(zoho_synced_data_at__isnull=True) | Q(updated_at__gt=F("zoho_synced_data_at"))


def closed_before_zoho_q() -> Q:
    """Closed before it reached Zoho: it does not belong there, and is never created."""
    return Q(account_status=AccountStatus.CLOSED, zoho_billing_customer_id__isnull=True)


def settled_closed_q() -> Q:
    """Closed before it reached Zoho, and a run has said so for its data as it is (with no
    create of it in doubt): no run takes it again until it is edited."""
    return closed_before_zoho_q() & ~edited_since_accepted_q() & Q(zoho_create_sent_at__isnull=True)


def backfill_q(stale_after_seconds: float) -> Q:
    """Without a Zoho id and not waiting for a person: pending, failed, or abandoned."""
    takeable = Q(zoho_sync_status__in=[SyncStatus.PENDING, SyncStatus.FAILED]) | stale_claim_q(
        stale_after_seconds
    )
    return Q(zoho_billing_customer_id__isnull=True) & takeable & ~settled_closed_q()


def retry_q(stale_after_seconds: float) -> Q:
    """Whose last sync failed, or whose run died while working on them."""
    takeable = Q(zoho_sync_status=SyncStatus.FAILED) | stale_claim_q(stale_after_seconds)
    return Q(zoho_billing_customer_id__isnull=True) & takeable & ~settled_closed_q()


def changed_q(stale_after_seconds: float) -> Q:
    """In Zoho, but edited here since Zoho last accepted our data (and not waiting for a
    person): a database query, so an unchanged table costs nothing to check."""
    takeable = Q(
        zoho_sync_status__in=[SyncStatus.SYNCED, SyncStatus.PENDING, SyncStatus.FAILED]
    ) | stale_claim_q(stale_after_seconds)
    return Q(zoho_billing_customer_id__isnull=False) & takeable & edited_since_accepted_q()


def sync_q(stale_after_seconds: float) -> Q:
    """What a sync takes: customers to create (as a backfill) and edits to push."""
    return backfill_q(stale_after_seconds) | changed_q(stale_after_seconds)


# Each kind of run takes the customers its query describes (given the stale-claim seconds):
# the runs (runs.py) and the plan of one (plan.py) read them here.
RUN_SELECTIONS: dict[SyncRunKind, Callable[[float], Q]] = {
    SyncRunKind.SYNC: sync_q,
    SyncRunKind.BACKFILL: backfill_q,
    SyncRunKind.RETRY_FAILED: retry_q,
}


def requeue_refusals(stale_after_seconds: float) -> list[tuple[str, Q]]:
    """Why a person may not re-queue a customer, each with the query that finds it: the one
    rule both the re-queue (its reasons) and the preview (`requeue_q`) follow."""
    busy = Q(zoho_sync_status=SyncStatus.SYNCING) & ~stale_claim_q(stale_after_seconds)
    return [
        ("internal_test", Q(account_type=AccountType.INTERNAL_TEST)),
        # In Zoho and needing a person (a refused deactivation): once fixed, it may go again.
        (
            "already synced",
            Q(zoho_billing_customer_id__isnull=False)
            & ~Q(zoho_sync_status=SyncStatus.NEEDS_ATTENTION),
        ),
        ("being synced now", busy),
    ]


def requeue_q(stale_after_seconds: float) -> Q:
    """What a person may re-queue: not in Zoho yet (or in it and needing a person), and not
    being worked on right now."""
    allowed = Q()
    for _, refused in requeue_refusals(stale_after_seconds):
        allowed &= ~refused
    return allowed


def with_requeue_refusal(customers: QuerySet[Customer], stale_after_seconds: float) -> QuerySet:
    """`customers`, each with `requeue_refusal`: why it may not be re-queued ("" when it may)."""
    reasons = [
        When(refused, then=Value(reason))
        for reason, refused in requeue_refusals(stale_after_seconds)
    ]
    return customers.annotate(
        requeue_refusal=Case(*reasons, default=Value(""), output_field=CharField())
    )


def silent_longer_than(stale_seconds: float) -> Q:
    """A run's or an import's record that showed no sign of life (its heartbeat, else its
    start) for longer than `stale_seconds`: its process died, or lost the database for good."""
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)


def backlog_q() -> Q:
    """Customers that belong in Zoho and still need a request: not in Zoho yet, or edited since
    Zoho accepted them (those needing a person left out: they wait for one, not for a run)."""
    not_in_zoho = Q(zoho_billing_customer_id__isnull=True) & ~closed_before_zoho_q()
    edited = Q(zoho_billing_customer_id__isnull=False) & edited_since_accepted_q()
    return (not_in_zoho | edited) & ~Q(zoho_sync_status=SyncStatus.NEEDS_ATTENTION)


def customers_backlog() -> QuerySet[Customer]:
    """The backlog: customers the runs still have work for (backlog_q)."""
    return customers_syncable().filter(backlog_q())


def latest_source_import() -> CustomerImport | None:
    """The last import from the company's database that went through (not a dry run)."""
    return (
        CustomerImport.objects.filter(
            source=ImportSource.DATABASE, status=ImportStatus.COMPLETED, dry_run=False
        )
        .order_by("-started_at", "-pk")
        .first()
    )


def latest_source_import_tried() -> CustomerImport | None:
    """The last import from the company's database that ended, whatever its end."""
    return (
        CustomerImport.objects.filter(source=ImportSource.DATABASE, dry_run=False)
        .exclude(status=ImportStatus.RUNNING)
        .order_by("-started_at", "-pk")
        .first()
    )


def source_refusals() -> dict[str, str]:
    """The source rows the last completed import from the company's database refused, by
    account number: why, in one line ("the import refused the row: email: ...")."""
    last = latest_source_import()
    if last is None:
        return {}
    reasons: dict[str, list[str]] = defaultdict(list)
    refused = last.refusals.exclude(account_number="").order_by("line", "pk")
    for account, column, reason in refused.values_list("account_number", "column", "reason"):
        reasons[account].append(f"{column}: {reason}" if column else reason)
    return {
        account: "the import refused the row: " + "; ".join(said)
        for account, said in reasons.items()
    }


def customer_status_counts() -> list[tuple[str, int]]:
    """The runbook's status summary: (status, count) over customers that belong in Zoho (not
    those closed before they reached it)."""
    rows = (
        customers_syncable()
        .exclude(closed_before_zoho_q())
        .values("zoho_sync_status")
        .annotate(count=Count("id"))
        .order_by("zoho_sync_status")
    )
    return [(row["zoho_sync_status"], row["count"]) for row in rows]


@dataclass(frozen=True)
class SyncOverview:
    """What a person needs first: where customers stand, what ran, what runs next, any block."""

    status_counts: list[tuple[str, str, int]]
    internal_test_count: int
    last_run: SyncRun | None
    next_schedule: Schedule | None
    blocked_until: datetime | None
    block_reason: str

    @property
    def blocked(self) -> bool:
        return self.blocked_until is not None and self.blocked_until > timezone.now()


def sync_overview() -> SyncOverview:
    """The admin overview's figures."""
    counts = dict(customer_status_counts())
    state = current_api_state()
    return SyncOverview(
        status_counts=[(value, label, counts.get(value, 0)) for value, label in SyncStatus.choices],
        internal_test_count=Customer.objects.filter(account_type=AccountType.INTERNAL_TEST).count(),
        last_run=SyncRun.objects.exclude(dry_run=True).order_by("-started_at", "-id").first(),
        next_schedule=Schedule.objects.filter(name__in=SCHEDULE_NAMES)
        .exclude(next_run__isnull=True)
        .order_by("next_run")
        .first(),
        blocked_until=state.blocked_until if state else None,
        block_reason=state.block_reason if state else "",
    )
