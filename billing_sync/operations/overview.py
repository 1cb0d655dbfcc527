"""What a person looks at first: the runbook's status summary and the admin overview's figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count
from django.utils import timezone
from django_q.models import Schedule

from billing_sync.models import (
    AccountType,
    Customer,
    SyncRun,
    SyncStatus,
)
from billing_sync.operations.schedules import SCHEDULE_NAMES
from billing_sync.run.selection import closed_before_zoho_q, customers_syncable
from billing_sync.zoho.state import current_api_state


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
