"""Keep Zoho Billing in step: create the customers it lacks, send it the edits of the others."""

from __future__ import annotations

from billing_sync.management.sync_command import SyncCommand
from billing_sync.models import SyncRunKind
from billing_sync.run.runs import customers_sync


class Command(SyncCommand):
    help = (
        "Keep Zoho Billing in step with the customer table: create (or adopt) every customer "
        "without a Zoho id, as the backfill does, and send Zoho the fields we own of every "
        "customer edited here since Zoho last accepted them (one request each; an unchanged "
        "table costs none). Paced under the Zoho budget; exits non-zero when any is left "
        "unsynced."
    )
    kind = SyncRunKind.SYNC
    service = staticmethod(customers_sync)
    takes_limit = True
