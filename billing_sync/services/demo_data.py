"""The runbook's demo data: 13 CircleTel customers and two internal test accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import transaction

from billing_sync.models import AccountType, Customer

# (account, email, first, last, company, account type). Ordered by creation: the runbook's
# three rate-limited customers come last, so a block after the tenth catches exactly them.
DEMO_CUSTOMERS = [
    ("CT-2025-00012", "thandi.nkosi@example.co.za", "Thandi", "Nkosi", "", "residential"),
    ("CT-2025-00013", "pieter.botha@example.co.za", "Pieter", "Botha", "", "residential"),
    (
        "CT-2025-00014",
        "accounts@karoo-farms.example",
        "Anele",
        "Dlamini",
        "Karoo Farms",
        "business",
    ),
    ("CT-2025-00016", "lerato.m@example.co.za", "Lerato", "Mokoena", "", "residential"),
    (
        "CT-2025-00017",
        "johan@capeflow.example",
        "Johan",
        "van Wyk",
        "CapeFlow (Pty) Ltd",
        "business",
    ),
    ("CT-2025-00018", "sipho.khumalo@example.co.za", "Sipho", "Khumalo", "", "residential"),
    ("CT-2025-00019", "nomsa.z@example.co.za", "Nomsa", "Zulu", "", "residential"),
    ("CT-2025-00020", "billing@durbanbytes.example", "Priya", "Naidoo", "Durban Bytes", "business"),
    ("CT-2025-00021", "kyle.adams@example.co.za", "Kyle", "Adams", "", "residential"),
    ("CT-2025-00022", "zanele.m@example.co.za", "Zanele", "Mthembu", "", "residential"),
    ("CT-2025-00015", "circletelsa@gmail.com", "Circle", "Tel", "", "residential"),
    ("CT-2025-00023", "mitchadams39@gmail.com", "Mitch", "User", "", "residential"),
    ("CT-2025-00024", "jeffrey.de.wee@circletel.co.za", "Jeffrey", "De Wee", "", "residential"),
    ("CT-TEST-00001", "qa+zoho@circletel.co.za", "QA", "Robot", "", "internal_test"),
    ("CT-TEST-00002", "staging-probe@circletel.co.za", "Staging", "Probe", "", "internal_test"),
]
FIRST_CREATED = datetime(2025, 11, 1, 8, 0, tzinfo=UTC)


@transaction.atomic
def demo_customers_load() -> tuple[int, int]:
    """Create the demo customers missing by account number; return (created, already present)."""
    created = existing = 0
    for position, (account, email, first, last, company, kind) in enumerate(DEMO_CUSTOMERS):
        customer, was_created = Customer.objects.update_or_create(
            account_number=account,
            defaults={
                "email": email,
                "first_name": first,
                "last_name": last,
                "company_name": company,
                "account_type": AccountType(kind),
            },
        )
        created += was_created
        existing += not was_created
        # created_at is set by the database on insert; give the runbook's order explicitly.
        Customer.objects.filter(pk=customer.pk).update(
            created_at=FIRST_CREATED + timedelta(hours=position)
        )
    return created, existing
