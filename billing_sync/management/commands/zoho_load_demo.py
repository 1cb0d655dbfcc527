"""Load the runbook's demo customers."""

from __future__ import annotations

from typing import Any

from billing_sync.imports.demo import DEMO_FILE, demo_customers_load
from billing_sync.management.base import Ending, ZohoCommand


class Command(ZohoCommand):
    help = (
        "Load the 13 CircleTel demo customers and 2 internal_test accounts: an import of "
        f"{DEMO_FILE.name} (matched by account number, so running it twice changes nothing)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        record = demo_customers_load()
        present = record.updated_count + record.unchanged_count
        if not self.as_json:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo data: {record.row_count} customers ({record.created_count} created, "
                    f"{present} already present; import #{record.pk})."
                )
            )
        self.end(
            Ending(
                values={
                    "customers": record.row_count,
                    "created": record.created_count,
                    "already_present": present,
                }
            )
        )
