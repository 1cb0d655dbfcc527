"""Reads: which customers a run takes, and summaries people look at."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from billing_sync.models import AccountType, Customer, SyncStatus


def customers_syncable() -> QuerySet[Customer]:
    """Customers that belong in Zoho (internal test accounts never do)."""
    return Customer.objects.exclude(account_type=AccountType.INTERNAL_TEST)


def stale_claim_q(stale_after_seconds: float) -> Q:
    """A claim left by a run that died: old enough that nobody is working on it."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    return Q(zoho_sync_status=SyncStatus.SYNCING) & (
        Q(zoho_claimed_at__lt=cutoff) | Q(zoho_claimed_at__isnull=True)
    )


def backfill_q(stale_after_seconds: float) -> Q:
    """Without a Zoho id and not waiting for a person: pending, failed, or abandoned."""
    takeable = Q(zoho_sync_status__in=[SyncStatus.PENDING, SyncStatus.FAILED]) | stale_claim_q(
        stale_after_seconds
    )
    return Q(zoho_billing_customer_id__isnull=True) & takeable


def retry_q(stale_after_seconds: float) -> Q:
    """Whose last sync failed, or whose run died while working on them."""
    takeable = Q(zoho_sync_status=SyncStatus.FAILED) | stale_claim_q(stale_after_seconds)
    return Q(zoho_billing_customer_id__isnull=True) & takeable


def customer_status_counts() -> list[tuple[str, int]]:
    """The runbook's status summary: (status, count) over customers that belong in Zoho."""
    rows = (
        customers_syncable()
        .values("zoho_sync_status")
        .annotate(count=Count("id"))
        .order_by("zoho_sync_status")
    )
    return [(row["zoho_sync_status"], row["count"]) for row in rows]
