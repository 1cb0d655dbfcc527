"""Load the runbook's demo customers."""

from __future__ import annotations

from typing import Any

from billing_sync.management.json_output import ZohoCommand
from billing_sync.services.demo_data import DEMO_CUSTOMERS, demo_customers_load


class Command(ZohoCommand):
    help = (
        "Load the 13 CircleTel demo customers and 2 internal_test accounts (matched by "
        "account number, so running it twice changes nothing)."
    )

    def empty_document(self) -> dict[str, Any]:
        return {"customers": len(DEMO_CUSTOMERS), "created": 0, "already_present": 0}

    def handle(self, *args: Any, **options: Any) -> None:
        created, existing = demo_customers_load()
        if not self.as_json:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo data: {len(DEMO_CUSTOMERS)} customers "
                    f"({created} created, {existing} already present)."
                )
            )
        self.end(0, created=created, already_present=existing)
