"""Load the runbook's demo customers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing_sync.services.demo_data import DEMO_CUSTOMERS, demo_customers_load


class Command(BaseCommand):
    help = (
        "Load the 13 CircleTel demo customers and 2 internal_test accounts (matched by "
        "account number, so running it twice changes nothing)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        created, existing = demo_customers_load()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data: {len(DEMO_CUSTOMERS)} customers "
                f"({created} created, {existing} already present)."
            )
        )
