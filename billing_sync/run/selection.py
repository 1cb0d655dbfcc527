"""Which customers a run works on, read in a fixed order a chunk at a time.

The order is (created_at, pk): oldest first, as the runbook did. The selection's last key is
fixed when the run starts, so customers added later wait for the next run; the selection is
asked again for every chunk, so customers another process took meanwhile drop out. Memory stays
flat however many customers a run has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.db.models import Case, CharField, F, Q, QuerySet, Value, When
from django.utils import timezone

from billing_sync.database import DatabaseSteps
from billing_sync.models import (
    AccountStatus,
    AccountType,
    Customer,
    SyncRunKind,
    SyncStatus,
)

# Customers read from the database at a time.
CHUNK_SIZE = 200


@dataclass(frozen=True)
class RunSelection:
    """A run's customers, read a chunk at a time in (created_at, pk) order up to a last key.

    The last key is fixed when the run starts, so customers added later wait for the next run;
    the selection is asked again for every chunk, so customers another process took meanwhile
    drop out.
    """

    queryset: QuerySet[Customer]
    count: int
    last_key: tuple[datetime, int] | None

    @classmethod
    def take(cls, queryset: QuerySet[Customer], limit: int | None) -> RunSelection:
        """The selection as it stands now, limited to its first `limit` customers."""
        count = queryset.count()
        if limit is not None:
            count = min(count, limit)
        keys = queryset.values_list("created_at", "pk")
        last = None
        if count and count == limit:
            last = keys.order_by("created_at", "pk")[limit - 1 : limit].first()
        if count and last is None:  # no limit, or another process took some since the count
            last = keys.order_by("-created_at", "-pk").first()
        return cls(queryset=queryset, count=count, last_key=last)

    def chunks(self, steps: DatabaseSteps | None = None) -> Iterator[list[Customer]]:
        """The customers in order, CHUNK_SIZE at a time (never the whole selection in memory);
        each chunk read as one of `steps` (a lost database waited for) when given."""
        after: Customer | None = None
        while True:
            read = partial(self.chunk_after, after)
            chunk = read() if steps is None else steps.take(read)
            if not chunk:
                return
            yield chunk
            after = chunk[-1]

    def chunk_after(self, after: Customer | None) -> list[Customer]:
        """The next CHUNK_SIZE customers after `after` (None: from the first); empty at the end.
        One query, so a step that fails may be taken again."""
        if self.last_key is None:
            return []
        queryset = self.queryset.filter(_key_at_most(self.last_key)).order_by("created_at", "pk")
        if after is not None:
            queryset = queryset.filter(_key_after((after.created_at, after.pk)))
        return list(queryset[:CHUNK_SIZE])

    def customers(self, steps: DatabaseSteps | None = None) -> Iterator[Customer]:
        """The customers one by one, read lazily (through `steps` when given)."""
        for chunk in self.chunks(steps):
            yield from chunk

    def rest(self, after: Customer) -> QuerySet[Customer]:
        """The customers after `after`, up to the last key."""
        if self.last_key is None:
            return self.queryset.none()
        key = (after.created_at, after.pk)
        return self.queryset.filter(_key_after(key), _key_at_most(self.last_key))


def _key_after(key: tuple[datetime, int]) -> Q:
    created_at, pk = key
    return Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(pk__gt=pk))


def _key_at_most(key: tuple[datetime, int]) -> Q:
    created_at, pk = key
    return Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(pk__lte=pk))


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


def closed_not_created_q() -> Q:
    """Closed before it reached Zoho, and a run has decided so for its data as it is (skipped,
    not created; with no create of it in doubt): no run takes it again until it is edited."""
    return closed_before_zoho_q() & ~edited_since_accepted_q() & Q(zoho_create_sent_at__isnull=True)


def backfill_q(stale_after_seconds: float) -> Q:
    """Without a Zoho id and not waiting for a person: pending, failed, or abandoned."""
    takeable = Q(zoho_sync_status__in=[SyncStatus.PENDING, SyncStatus.FAILED]) | stale_claim_q(
        stale_after_seconds
    )
    return Q(zoho_billing_customer_id__isnull=True) & takeable & ~closed_not_created_q()


def retry_q(stale_after_seconds: float) -> Q:
    """Whose last sync failed, or whose run died while working on them."""
    takeable = Q(zoho_sync_status=SyncStatus.FAILED) | stale_claim_q(stale_after_seconds)
    return Q(zoho_billing_customer_id__isnull=True) & takeable & ~closed_not_created_q()


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


def backlog_q() -> Q:
    """Customers that belong in Zoho and still need a request: not in Zoho yet, or edited since
    Zoho accepted them (those needing a person left out: they wait for one, not for a run)."""
    not_in_zoho = Q(zoho_billing_customer_id__isnull=True) & ~closed_before_zoho_q()
    edited = Q(zoho_billing_customer_id__isnull=False) & edited_since_accepted_q()
    return (not_in_zoho | edited) & ~Q(zoho_sync_status=SyncStatus.NEEDS_ATTENTION)


def customers_backlog() -> QuerySet[Customer]:
    """The backlog: customers the runs still have work for (backlog_q)."""
    return customers_syncable().filter(backlog_q())
