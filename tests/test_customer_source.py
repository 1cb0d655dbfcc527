"""The company's own database as the source: customers imported by a query, read only, on a
schedule; the Zoho id and sync status written back after every run, so the runbook's own SQL on
the company's database says `synced | 13`. On a SQLite file and on PostgreSQL."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ, Schedule
from django_q.scheduler import scheduler

from billing_sync.models import (
    AlertState,
    Customer,
    CustomerImport,
    ImportRefusal,
    SyncRun,
    SyncStatus,
)
from billing_sync.operations.health import health_report
from billing_sync.operations.schedules import IMPORT_SCHEDULE, SYNC_SCHEDULE
from tests.commands import run_json
from tests.helpers import run_queued_tasks
from tests.processes import process_env, run_manage
from tests.source_db import QUERY, source_database

pytestmark = pytest.mark.django_db


def ours() -> dict[str, str | None]:
    return dict(Customer.objects.values_list("account_number", "zoho_billing_customer_id"))


def test_import_then_run_writes_back_and_the_runbook_sql_says_synced_13(company, emulator):
    assert company.status_summary() == {"pending": 13}

    imported, code = run_json("import_customers", "--source")

    assert code == 0
    assert imported["source"] == {
        "kind": "database",
        "name": "CUSTOMER_SOURCE_QUERY",
        "format": "query",
    }
    assert imported["counts"]["created"] == 15
    assert imported["writeback"] == {"rows": 0, "error": None}  # nothing to tell yet

    run, code = run_json("zoho_sync_customers")

    assert code == 0
    assert run["writeback"] == {"rows": 13, "error": None}
    assert company.status_summary() == {"synced": 13}
    zoho_ids = company.zoho_ids()
    assert zoho_ids == ours()
    assert sum(1 for zoho_id in zoho_ids.values() if zoho_id) == 13
    assert SyncRun.objects.get(pk=run["run_id"]).writeback_count == 13


def test_the_query_is_read_in_a_read_only_transaction(company, settings):
    if company.vendor == "postgresql":
        # A SELECT that writes (a sequence moves): only a read-only transaction refuses it.
        settings.CUSTOMER_SOURCE_QUERY = "SELECT nextval('customers_id_seq') AS account_number"
    else:
        settings.CUSTOMER_SOURCE_QUERY = "WITH doomed AS (SELECT 1) DELETE FROM customers"

    document, code = run_json("import_customers", "--source")

    assert code == 2
    assert "the source database refused CUSTOMER_SOURCE_QUERY" in document["problems"][0]
    assert "read" in document["problems"][0].lower()  # "read-only transaction" / "readonly"
    assert company.rows("SELECT COUNT(*) FROM customers") == [(15,)]
    assert not Customer.objects.exists()

    settings.CUSTOMER_SOURCE_QUERY = "DELETE FROM customers"
    document, code = run_json("import_customers", "--source")
    assert (code, document["problems"]) == (
        2,
        ["CUSTOMER_SOURCE_QUERY must be a SELECT (or WITH ... SELECT) query"],
    )


def test_a_refused_source_row_is_named_by_its_row_and_the_others_come_in(company):
    company.execute(
        "UPDATE customers SET email = 'not-an-email' WHERE account_number = %s", ["CT-2025-00013"]
    )

    document, code = run_json("import_customers", "--source")

    assert code == 1
    (refused,) = [row for row in document["rows"] if row["action"] == "refused"]
    assert refused == {
        "line": 2,  # the query's second row (oldest first)
        "account_number": "CT-2025-00013",
        "action": "refused",
        "fields": [],
        "problems": [{"column": "email", "reason": "'not-an-email' is not a valid email address"}],
    }
    assert Customer.objects.count() == 14


def test_a_refused_row_says_why_in_the_companys_table_until_it_is_fixed(company, emulator):
    company.execute("ALTER TABLE customers ADD COLUMN zoho_sync_error TEXT")  # optional column
    company.execute(
        "UPDATE customers SET email = 'not-an-email' WHERE account_number = %s", ["CT-2025-00013"]
    )

    for _ in range(3):  # the schedule reads the unchanged row again and again
        run_json("import_customers", "--source")
    run_json("zoho_sync_customers")

    row = "SELECT zoho_sync_status, zoho_sync_error FROM customers WHERE account_number = %s"
    assert company.rows(row, ["CT-2025-00013"]) == [
        (
            "needs_attention",
            "the import refused the row: email: 'not-an-email' is not a valid email address",
        )
    ]
    assert company.status_summary() == {"synced": 12, "needs_attention": 1}
    assert ImportRefusal.objects.count() == 1  # recorded once, however often it was read
    assert ImportRefusal.objects.get().customer_import == CustomerImport.objects.latest("pk")

    company.execute(
        "UPDATE customers SET email = 'fixed@example.co.za' WHERE account_number = %s",
        ["CT-2025-00013"],
    )
    run_json("import_customers", "--source")
    run_json("zoho_sync_customers")

    assert company.rows(row, ["CT-2025-00013"]) == [("synced", None)]  # the reason cleared
    assert company.status_summary() == {"synced": 13}


def test_zohos_refusal_and_the_last_failure_are_the_reason_too(company, emulator):
    company.execute("ALTER TABLE customers ADD COLUMN zoho_sync_error TEXT")
    run_json("import_customers", "--source")
    emulator.configure(display_name_unique=True)
    emulator.add_customer(display_name="Thandi Nkosi", email="elsewhere@example.co.za")
    emulator.inject("error", method="POST", email="accounts@karoo-farms.example", times=None)

    run_json("zoho_sync_customers")

    reasons = dict(
        company.rows(
            "SELECT account_number, zoho_sync_error FROM customers "
            "WHERE zoho_sync_error IS NOT NULL"
        )
    )
    assert reasons.keys() == {"CT-2025-00012", "CT-2025-00014"}
    assert "already exists" in reasons["CT-2025-00012"]  # Zoho's refusal: needs attention
    assert "a create got no clear answer" in reasons["CT-2025-00014"]  # failed: retried
    assert company.status_summary() == {"synced": 11, "needs_attention": 1, "failed": 1}


def test_the_query_carries_the_billing_record_under_our_names(company, emulator, settings):
    # The company keeps a city, a VAT number and a closing date under its own names.
    for column in ("town VARCHAR(100)", "vat VARCHAR(32)", "closed_on DATE"):
        company.execute(f"ALTER TABLE customers ADD COLUMN {column}")
    company.execute(
        "UPDATE customers SET town = 'Cape Town', vat = '4123456789' WHERE account_number = %s",
        ["CT-2025-00013"],
    )
    company.execute(
        "UPDATE customers SET closed_on = '2025-11-30' WHERE account_number = %s", ["CT-2025-00014"]
    )
    settings.CUSTOMER_SOURCE_QUERY = (
        "SELECT account_number, email, first_name, last_name, company_name, phone, account_type, "
        "COALESCE(town, '') AS billing_city, COALESCE(vat, '') AS vat_number, "
        "CASE WHEN closed_on IS NULL THEN 'active' ELSE 'closed' END AS account_status "
        "FROM customers ORDER BY created_at"
    )

    imported, code = run_json("import_customers", "--source")

    assert code == 0
    assert imported["columns"]["billing_city"] == "billing_city"
    billed = Customer.objects.get(account_number="CT-2025-00013")
    assert (billed.billing_city, billed.vat_number) == ("Cape Town", "4123456789")
    closed = Customer.objects.get(account_number="CT-2025-00014")
    assert closed.account_status == "closed"

    run, code = run_json("zoho_sync_customers")

    assert code == 0
    assert (run["counts"]["synced"], run["counts"]["skipped"]) == (12, 1)  # closed: not created
    (record,) = [r for r in emulator.customers() if r["email"] == billed.email]
    assert (record["billing_address"]["city"], record["vat_reg_no"]) == ("Cape Town", "4123456789")
    assert company.zoho_ids()["CT-2025-00014"] is None


def test_writeback_changes_only_rows_that_differ_and_never_inserts(
    company, emulator, make_customer
):
    run_json("import_customers", "--source")
    only_ours = make_customer(account_number="CT-OURS-1")
    company.add_customer(
        account_number="CT-THEIRS-1", email="theirs@example.co.za", created_at="2025-12-01"
    )
    company.execute(
        "UPDATE customers SET zoho_sync_status = 'synced', zoho_billing_customer_id = 'x' "
        "WHERE account_number = %s",
        ["CT-TEST-00001"],
    )
    run, _ = run_json("zoho_sync_customers")

    assert run["writeback"]["rows"] == 13  # CT-OURS-1, synced too, has no row there
    assert company.rows(
        "SELECT COUNT(*) FROM customers WHERE account_number = %s", [only_ours.account_number]
    ) == [(0,)]
    assert company.rows(
        "SELECT zoho_billing_customer_id, zoho_sync_status FROM customers "
        "WHERE account_number = 'CT-THEIRS-1'"
    ) == [(None, "pending")]

    document, _ = run_json("import_customers", "--source")
    # The import's write-back compares every customer: the internal test account the company
    # marked itself gets ours (never sent: no Zoho id, pending), the row the import refuses (it
    # has no name) needs attention; the rest already agree.
    assert [row["account_number"] for row in document["rows"] if row["action"] == "refused"] == [
        "CT-THEIRS-1"
    ]
    assert document["writeback"] == {"rows": 2, "error": None}
    assert company.rows(
        "SELECT zoho_billing_customer_id, zoho_sync_status FROM customers "
        "WHERE account_number IN ('CT-TEST-00001', 'CT-THEIRS-1') ORDER BY account_number"
    ) == [(None, "pending"), (None, "needs_attention")]
    again, _ = run_json("import_customers", "--source")
    assert again["writeback"] == {"rows": 0, "error": None}


def writeback_alerts(caplog) -> list[logging.LogRecord]:
    """The write-back's alerts (the completion of the import's backlog is told too)."""
    return [
        r
        for r in caplog.records
        if r.name == "billing_sync.alerts" and "company's customers table" in r.getMessage()
    ]


@pytest.mark.django_db(transaction=True)  # alerts go out once their state is committed
def test_a_failed_writeback_never_fails_the_sync_alerts_once_and_is_caught_up(
    company, emulator, caplog
):
    run_json("import_customers", "--source")
    company.execute("ALTER TABLE customers RENAME TO customers_moved")
    caplog.set_level(logging.INFO, logger="billing_sync.alerts")

    run, code = run_json("zoho_sync_customers")

    assert code == 0
    assert run["counts"]["synced"] == 13
    assert run["writeback"]["rows"] is None
    assert run["writeback"]["error"].startswith("Writing back to customers failed:")
    assert AlertState.objects.get().writeback_failed
    alerts = writeback_alerts(caplog)
    assert [r.levelno for r in alerts] == [logging.WARNING]
    assert "Zoho ids are not reaching the company's customers table" in alerts[0].getMessage()

    health = health_report()
    assert health.warnings == ["writeback"]
    assert "write-back failing" in health.summary

    run_json("zoho_sync_customers")  # fails again: no second alert
    assert len(writeback_alerts(caplog)) == 1

    company.execute("ALTER TABLE customers_moved RENAME TO customers")
    run, code = run_json("zoho_sync_customers")  # nothing to sync: the write-back catches up

    assert (code, run["counts"]["selected"]) == (0, 0)
    assert run["writeback"] == {"rows": 13, "error": None}
    assert company.status_summary() == {"synced": 13}
    assert not AlertState.objects.get().writeback_failed
    assert health_report().warnings == []
    recovery = writeback_alerts(caplog)[-1]
    assert recovery.levelno == logging.INFO


@pytest.mark.django_db(transaction=True)
def test_a_customer_added_to_the_company_database_reaches_zoho_on_the_schedule(
    company, emulator, settings
):
    settings.ZOHO_SYNC_ON_SAVE = True
    call_command("zoho_schedule", "--json", stdout=io.StringIO())
    assert set(Schedule.objects.values_list("name", "minutes")) == {
        (SYNC_SCHEDULE, settings.ZOHO_SYNC_EVERY_MINUTES),
        (IMPORT_SCHEDULE, settings.ZOHO_SYNC_EVERY_MINUTES),
    }
    Schedule.objects.exclude(name=IMPORT_SCHEDULE).delete()  # the import's own doing is seen
    OrmQ.objects.all().delete()

    scheduler(broker=get_broker())  # the schedule is due: the worker imports
    assert run_queued_tasks() == 1
    assert Customer.objects.count() == 15
    assert run_queued_tasks() == 1  # the one sync task the import queued
    assert company.status_summary() == {"synced": 13}

    company.add_customer(
        account_number="CT-2025-00025",
        email="new.customer@example.co.za",
        first_name="New",
        last_name="Customer",
        created_at="2025-12-04 09:00",
    )
    Schedule.objects.update(next_run=timezone.now() - timedelta(seconds=1))
    scheduler(broker=get_broker())
    run_queued_tasks()
    run_queued_tasks()

    new = Customer.objects.get(account_number="CT-2025-00025")
    assert new.zoho_sync_status == SyncStatus.SYNCED
    assert company.zoho_ids()["CT-2025-00025"] == new.zoho_billing_customer_id
    assert company.status_summary() == {"synced": 14}


def test_without_a_source_the_import_schedule_goes(settings):
    settings.CUSTOMER_SOURCE_URL = "sqlite:////nowhere.sqlite3"
    settings.CUSTOMER_SOURCE_QUERY = QUERY
    call_command("zoho_schedule", stdout=io.StringIO())
    assert Schedule.objects.filter(name=IMPORT_SCHEDULE).exists()

    settings.CUSTOMER_SOURCE_URL = settings.CUSTOMER_SOURCE_QUERY = ""
    call_command("zoho_schedule", stdout=io.StringIO())

    assert list(Schedule.objects.values_list("name", flat=True)) == [SYNC_SCHEDULE]


def test_source_import_needs_a_source(settings):
    settings.CUSTOMER_SOURCE_URL = ""
    document, code = run_json("import_customers", "--source")
    assert code == 2
    assert document["problems"][0].startswith("No source database: set CUSTOMER_SOURCE_URL")


@pytest.mark.django_db(transaction=True)
def test_the_settings_make_the_source_database(settings, tmp_path):
    with source_database("sqlite", tmp_path) as company:
        company.add_demo_customers()
        env = process_env(
            settings,
            CUSTOMER_SOURCE_URL=company.url,
            CUSTOMER_SOURCE_QUERY=QUERY,
            CUSTOMER_SOURCE_WRITEBACK_TABLE="customers",
        )
        result = run_manage("import_customers", "--source", env=env)
        assert result.returncode == 0, result.stderr
        assert "Created: 15" in result.stdout
        assert "Written back to the company's database: 0 row(s) changed" in result.stdout

        env["CUSTOMER_SOURCE_WRITEBACK_TABLE"] = "customers; DROP TABLE customers"
        result = run_manage("import_customers", "--source", env=env)
        assert result.returncode != 0
        assert "CUSTOMER_SOURCE_WRITEBACK_TABLE='customers; DROP TABLE customers' is not a" in (
            result.stderr
        )
        assert company.rows("SELECT COUNT(*) FROM customers") == [(15,)]
