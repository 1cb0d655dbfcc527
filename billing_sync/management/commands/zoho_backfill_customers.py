"""Sync every customer that belongs in Zoho Billing and has no Zoho id yet."""

from __future__ import annotations

from billing_sync.management.sync_command import SyncCommand
from billing_sync.models import SyncRunKind
from billing_sync.run.runs import customers_backfill


class Command(SyncCommand):
    help = (
        "Create or adopt a Zoho Billing customer for every customer without a Zoho id "
        "(internal_test accounts and those needing attention are left alone). Paced under "
        "the Zoho budget; exits non-zero when any customer is left unsynced."
    )
    kind = SyncRunKind.BACKFILL
    service = staticmethod(customers_backfill)
    takes_limit = True
