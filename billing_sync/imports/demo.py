"""The runbook's demo data: 13 CircleTel customers and two internal test accounts, in a CSV file
imported as a user's would be (billing_sync/demo/customers.csv)."""

from __future__ import annotations

from pathlib import Path

from billing_sync.imports.customer_import import (
    ImportObserver,
    ImportOptions,
    customers_import_file,
)
from billing_sync.models import CustomerImport

# Ordered by creation: the runbook's three rate-limited customers come last, so a block after
# the tenth catches exactly them.
DEMO_FILE = Path(__file__).resolve().parent.parent / "demo" / "customers.csv"


def demo_customers_load() -> CustomerImport:
    """Import the demo customers (matched by account number: a second load changes nothing)."""
    return customers_import_file(
        path=str(DEMO_FILE), options=ImportOptions(), observer=ImportObserver()
    )
