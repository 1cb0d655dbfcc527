"""The runbook, replayed: 13 customers, a block after the tenth, retry, verify."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

pytestmark = pytest.mark.django_db

RUNBOOK_CUSTOMERS_SQL = """
SELECT email, account_number, zoho_billing_customer_id, zoho_sync_status
FROM customers
WHERE account_type != 'internal_test'
ORDER BY created_at;
"""
RUNBOOK_SUMMARY_SQL = """
SELECT zoho_sync_status, COUNT(*) as count
FROM customers
WHERE account_type != 'internal_test'
GROUP BY zoho_sync_status;
"""


def sql(query: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def test_the_runbook_ends_with_13_synced_and_no_duplicates(emulator):
    # The organization's quota allows the list and ten creates; the block lasts 2 s (scaled).
    emulator.configure(rate_limit_requests=11, rate_limit_window_seconds=60, block_seconds=2)
    call_command("zoho_load_demo", stdout=io.StringIO())

    with pytest.raises(CommandError):
        call_command("zoho_backfill_customers", "--max-wait", "0", stdout=io.StringIO())
    assert sorted(sql(RUNBOOK_SUMMARY_SQL)) == [("failed", 3), ("synced", 10)]

    preview = io.StringIO()
    call_command("zoho_retry_failed", "--dry-run", stdout=preview)
    assert (
        "  1. circletelsa@gmail.com - CT-2025-00015\n"
        "  2. mitchadams39@gmail.com - CT-2025-00023\n"
        "  3. jeffrey.de.wee@circletel.co.za - CT-2025-00024\n"
    ) in preview.getvalue()

    retry = io.StringIO()
    call_command("zoho_retry_failed", stdout=retry)
    assert "Zoho is blocking requests until" in retry.getvalue()
    assert "Total Attempted: 3\n✅ Successfully Synced: 3\n❌ Failed: 0" in retry.getvalue()

    verify = io.StringIO()
    call_command("zoho_verify", stdout=verify)
    assert "Zoho customers: 13" in verify.getvalue()
    assert "Duplicate customers in Zoho: 0" in verify.getvalue()

    rows = sql(RUNBOOK_CUSTOMERS_SQL)
    assert len(rows) == 13
    assert all(zoho_id for _, _, zoho_id, _ in rows)
    assert sql(RUNBOOK_SUMMARY_SQL) == [("synced", 13)]
    in_zoho = {
        c["customer_id"]: [f["value"] for f in c["custom_fields"]] for c in emulator.customers()
    }
    assert in_zoho == {zoho_id: [account] for _, account, zoho_id, _ in rows}
