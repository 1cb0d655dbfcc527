"""The whole record a bill needs: the billing address and the VAT number reach Zoho as we hold
them (one PUT per edit, none for an unchanged table), a closed account is marked inactive in
Zoho and a reopened one active again (one request each, never a PUT), an account closed before
it reached Zoho is never created, and an organization that does not keep VAT numbers stops the
run with nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from billing_sync.customer_data import address_not_kept, customer_zoho_payload
from billing_sync.models import (
    AccountStatus,
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncStatus,
)
from billing_sync.operations.queueing import customers_requeue
from billing_sync.run.customer.decisions import CLOSED_NOT_CREATED
from billing_sync.run.plan import customers_plan
from billing_sync.run.runs import customers_backfill, customers_sync
from billing_sync.run.stops import AddressNotKept
from billing_sync.zoho.errors import ZohoConfigError
from billing_sync.zoho.records import ZohoCustomer
from tests.commands import run, run_json
from tests.helpers import authorize, call, edit, zoho_account_counts, zoho_posts, zoho_record

pytestmark = pytest.mark.django_db

ADDRESS = {
    "billing_attention": "Accounts Payable",
    "billing_street": "12 Loop Street",
    "billing_street2": "Unit 4",
    "billing_city": "Cape Town",
    "billing_state": "Western Cape",
    "billing_zip": "8001",
    "billing_country": "South Africa",
}
VAT_NUMBER = "4123456789"


def sent_since(emulator, start: int) -> list[tuple[str, str]]:
    """The requests Zoho received since `start` (an index into its log): (method, path)."""
    return [(r.method, r.path) for r in emulator.request_log[start:]]


@pytest.fixture
def billed(emulator, make_customer) -> Customer:
    """A business customer with its billing address and VAT number, synced."""
    customer = make_customer(company_name="Karoo Farms", vat_number=VAT_NUMBER, **ADDRESS)
    assert customers_backfill(trigger="command").ok
    customer.refresh_from_db()
    return customer


# --- sent and held ------------------------------------------------------------------------------


def test_a_create_carries_the_address_and_the_vat_number_as_zoho_holds_them(emulator, billed):
    record = zoho_record(emulator, billed)

    assert record["billing_address"] | {"state_code": "", "fax": ""} == {
        "attention": "Accounts Payable",
        "street": "12 Loop Street\nUnit 4",  # Zoho's document has one street: line 2 below
        "city": "Cape Town",
        "state": "Western Cape",
        "zip": "8001",
        "country": "South Africa",
        "state_code": "",
        "fax": "",
    }
    assert record["vat_reg_no"] == VAT_NUMBER
    assert record["status"] == "active"
    assert (billed.zoho_sync_status, billed.zoho_vat_number_missing) == (SyncStatus.SYNCED, False)


def test_a_blank_vat_number_is_not_sent_nor_checked(emulator, make_customer):
    emulator.configure(vat_reg_no_dropped=True)  # even where Zoho keeps no VAT number
    customer = make_customer(vat_number="  ")

    assert customers_backfill(trigger="command").ok

    payload = customer_zoho_payload(customer, account_field="Account Number")
    assert "vat_reg_no" not in payload
    assert "billing_address" not in payload  # no address: nothing to send
    customer.refresh_from_db()
    assert not customer.zoho_vat_number_missing


@pytest.mark.parametrize(
    ("field", "value", "held"),
    [
        ("billing_attention", "Finance", lambda r: r["billing_address"]["attention"]),
        ("billing_street", "1 Strand Street", lambda r: r["billing_address"]["street"]),
        ("billing_street2", "Floor 2", lambda r: r["billing_address"]["street"]),
        ("billing_city", "Stellenbosch", lambda r: r["billing_address"]["city"]),
        ("billing_state", "Gauteng", lambda r: r["billing_address"]["state"]),
        ("billing_zip", "7600", lambda r: r["billing_address"]["zip"]),
        ("billing_country", "Namibia", lambda r: r["billing_address"]["country"]),
        ("vat_number", "4987654321", lambda r: r["vat_reg_no"]),
    ],
)
def test_editing_one_billing_field_sends_one_put_and_it_arrives(
    emulator, billed, field, value, held
):
    edit(billed, **{field: value})
    start = len(emulator.request_log)

    report = customers_sync(trigger="command")

    assert (report.ok, report.updated_count) == (True, 1)
    assert sent_since(emulator, start) == [("PUT", f"/customers/{billed.zoho_billing_customer_id}")]
    assert value in held(zoho_record(emulator, billed))
    start = len(emulator.request_log)
    assert customers_sync(trigger="command").selected_count == 0  # in step: nothing more
    assert sent_since(emulator, start) == []


def test_an_unchanged_table_with_billing_records_costs_no_request(emulator, billed):
    Customer.objects.get(pk=billed.pk).save()  # saved, nothing changed
    start = len(emulator.request_log)

    report = customers_sync(trigger="command")

    assert report.ok
    assert sent_since(emulator, start) == []


@pytest.mark.parametrize(
    ("vat_number", "reason"),
    [("4", "1 characters, Zoho accepts 2 to 12"), ("4123456789012", "13 characters")],
)
def test_a_vat_number_zoho_would_refuse_is_named_and_never_sent(
    emulator, make_customer, vat_number, reason
):
    customer = make_customer(vat_number=vat_number)

    report = customers_backfill(trigger="command")

    customer.refresh_from_db()
    assert report.failed_count == 1
    assert customer.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert customer.zoho_last_error.startswith("vat_number: ")
    assert reason in customer.zoho_last_error
    assert not [r for r in emulator.request_log if r.method == "POST"]


# --- closing and reopening ----------------------------------------------------------------------


def test_closing_marks_the_customer_inactive_with_one_request_and_reopening_active(
    emulator, billed
):
    zoho_id = billed.zoho_billing_customer_id
    Customer.objects.filter(pk=billed.pk).update(account_status=AccountStatus.CLOSED)
    start = len(emulator.request_log)

    closed = customers_sync(trigger="command")

    assert (closed.ok, closed.updated_count) == (True, 1)
    assert sent_since(emulator, start) == [("POST", f"/customers/{zoho_id}/markasinactive")]
    assert zoho_record(emulator, billed)["status"] == "inactive"
    billed.refresh_from_db()
    assert (billed.zoho_inactive, billed.zoho_sync_status) == (True, SyncStatus.SYNCED)
    final = SyncAttempt.objects.get(run=closed.run, final=True)
    assert final.outcome == AttemptOutcome.DEACTIVATED

    edit(billed, account_status=AccountStatus.ACTIVE)
    start = len(emulator.request_log)

    reopened = customers_sync(trigger="command")

    assert reopened.ok
    assert sent_since(emulator, start) == [("POST", f"/customers/{zoho_id}/markasactive")]
    assert zoho_record(emulator, billed)["status"] == "active"
    assert SyncAttempt.objects.get(run=reopened.run, final=True).outcome == (
        AttemptOutcome.REACTIVATED
    )
    assert zoho_account_counts(emulator) == {billed.account_number: 1}  # never deleted or copied


def test_closing_with_an_edit_sends_the_edit_then_deactivates(emulator, billed):
    zoho_id = billed.zoho_billing_customer_id
    edit(billed, billing_city="Paarl", account_status=AccountStatus.CLOSED)
    start = len(emulator.request_log)

    report = customers_sync(trigger="command")

    assert report.ok
    assert sent_since(emulator, start) == [
        ("PUT", f"/customers/{zoho_id}"),
        ("POST", f"/customers/{zoho_id}/markasinactive"),
    ]
    record = zoho_record(emulator, billed)
    assert (record["billing_address"]["city"], record["status"]) == ("Paarl", "inactive")


def test_a_refused_deactivation_needs_a_person_and_the_run_goes_on(emulator, billed, make_customer):
    emulator.configure(active_subscription_emails=(billed.email,))
    Customer.objects.filter(pk=billed.pk).update(account_status=AccountStatus.CLOSED)
    other = make_customer()

    output, code = run("zoho_sync_customers")

    billed.refresh_from_db()
    other.refresh_from_db()
    assert code == 1  # one customer not synced; no stop
    assert "Run stopped" not in output
    assert other.zoho_sync_status == SyncStatus.SYNCED  # the run went on
    assert billed.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert "active subscriptions" in billed.zoho_last_error
    assert "cancel its subscriptions in Zoho, then re-queue it" in billed.zoho_last_error
    assert zoho_record(emulator, billed)["status"] == "active"
    assert customers_sync(trigger="command").selected_count == 0  # waits for a person

    # A person cancels the subscription in Zoho, then re-queues the customer.
    emulator.configure(active_subscription_emails=())
    result = customers_requeue(customer_ids=[billed.pk])
    assert result.queued == [billed]
    report = customers_sync(trigger="command")

    assert report.ok
    assert zoho_record(emulator, billed)["status"] == "inactive"
    billed.refresh_from_db()
    assert (billed.zoho_sync_status, billed.zoho_inactive) == (SyncStatus.SYNCED, True)


def test_an_account_closed_before_it_reached_zoho_is_never_created(emulator, make_customer):
    closed = make_customer(account_status=AccountStatus.CLOSED)
    open_one = make_customer()

    planned = {p.customer_id: p for p in customers_plan().customers}
    assert (planned[closed.pk].action, planned[closed.pk].reason) == ("skip", CLOSED_NOT_CREATED)
    report = customers_backfill(trigger="command")

    assert report.ok
    assert (report.synced_count, report.skipped_count) == (1, 1)
    assert zoho_account_counts(emulator) == {open_one.account_number: 1}
    closed.refresh_from_db()
    assert closed.zoho_billing_customer_id is None
    # Said once: the next runs leave it alone, and verify does not miss it.
    assert customers_backfill(trigger="command").selected_count == 0
    document, code = run_json("zoho_verify")
    assert (code, document["without_zoho_id"]) == (0, [])

    edit(closed, account_status=AccountStatus.ACTIVE)  # reopened: it belongs in Zoho now

    assert customers_sync(trigger="command").synced_count == 1
    assert zoho_account_counts(emulator) == {open_one.account_number: 1, closed.account_number: 1}


def test_a_closed_account_zoho_holds_already_is_adopted_then_marked_inactive(
    emulator, make_customer
):
    theirs = emulator.add_customer(
        display_name="Old Script",
        email="old@example.co.za",
        custom_fields=[{"label": "Account Number", "value": "CT-2025-77777"}],
    )
    closed = make_customer(
        account_number="CT-2025-77777",
        email="old@example.co.za",
        account_status=AccountStatus.CLOSED,
    )

    assert customers_backfill(trigger="command").ok  # adopted, not created again
    assert customers_sync(trigger="command").ok  # then marked inactive

    closed.refresh_from_db()
    assert closed.zoho_billing_customer_id == theirs["customer_id"]
    assert zoho_record(emulator, closed)["status"] == "inactive"
    assert zoho_account_counts(emulator) == {"CT-2025-77777": 1}


# --- an organization that does not keep VAT numbers ---------------------------------------------


def test_an_organization_that_drops_the_vat_number_stops_the_run_and_loses_nothing(
    emulator, make_customer
):
    emulator.configure(vat_reg_no_dropped=True)
    with_vat = make_customer(vat_number=VAT_NUMBER)
    later = [make_customer(vat_number="4000000001"), make_customer()]

    output, code = run("zoho_backfill_customers")

    assert code == 2
    assert "carries no vat_reg_no at all" in output
    assert "Settings > Taxes" in output
    with_vat.refresh_from_db()
    assert with_vat.zoho_billing_customer_id  # in Zoho: linked, never created twice
    assert with_vat.zoho_vat_number_missing
    assert with_vat.zoho_sync_status == SyncStatus.SYNCED
    for customer in later:
        customer.refresh_from_db()
        assert customer.zoho_billing_customer_id is None  # not reached: retryable
        assert customer.zoho_sync_status == SyncStatus.FAILED
    assert zoho_posts(emulator) == 1

    # The organization gets VAT: the next sync sends the VAT number again and goes on.
    emulator.configure(vat_reg_no_dropped=False)
    report = customers_sync(trigger="command")

    assert report.ok
    with_vat.refresh_from_db()
    assert not with_vat.zoho_vat_number_missing
    assert zoho_record(emulator, with_vat)["vat_reg_no"] == VAT_NUMBER
    accounts = [with_vat.account_number, *(c.account_number for c in later)]
    assert zoho_account_counts(emulator) == dict.fromkeys(accounts, 1)


def test_check_credentials_says_whether_the_organization_keeps_vat_numbers(emulator, make_customer):
    emulator.add_customer(display_name="Any", email="any@example.co.za")

    output, code = run("zoho_check_credentials")
    assert code == 0
    assert "carries vat_reg_no (the organization has VAT)" in output

    emulator.configure(vat_reg_no_dropped=True)
    output, code = run("zoho_check_credentials")
    assert code == 0  # cannot tell for sure: a warning, not a failure
    assert "carries no vat_reg_no" in output


# --- drift ------------------------------------------------------------------------------------


def test_verify_finds_status_and_address_drift_and_fix_mends_it(
    emulator, billed, make_customer, http
):
    other = make_customer()
    assert customers_backfill(trigger="command").ok
    other.refresh_from_db()
    # Someone edits them in Zoho.
    api = authorize(http, emulator)
    changed = {"billing_address": {"city": "Durban"}, "vat_reg_no": "4000000002"}
    path = f"/customers/{billed.zoho_billing_customer_id}"
    assert call(api, emulator, "PUT", path, json=changed).status_code == 200
    path = f"/customers/{other.zoho_billing_customer_id}/markasinactive"
    assert call(api, emulator, "POST", path).status_code == 200

    listed, code = run_json("zoho_verify")
    assert code == 1
    assert [(d["account_number"], d["fields"]) for d in listed["drift"]] == [
        (other.account_number, ["account_status"])  # the list shows the status, no address
    ]

    deep, code = run_json("zoho_verify", "--deep")
    assert code == 1
    assert sorted((d["account_number"], tuple(d["fields"])) for d in deep["drift"]) == sorted(
        [
            (billed.account_number, ("billing_city", "vat_number")),
            (other.account_number, ("account_status",)),
        ]
    )
    start = len(emulator.request_log)

    fixed, code = run_json("zoho_verify", "--deep", "--fix")

    assert code == 0
    assert fixed["drift"] == []
    writes = [r for r in sent_since(emulator, start) if r[0] != "GET"]
    assert sorted(writes) == sorted(
        [
            ("PUT", f"/customers/{billed.zoho_billing_customer_id}"),
            ("POST", f"/customers/{other.zoho_billing_customer_id}/markasactive"),
        ]
    )
    record = zoho_record(emulator, billed)
    assert (record["billing_address"]["city"], record["vat_reg_no"]) == ("Cape Town", VAT_NUMBER)
    assert zoho_record(emulator, other)["status"] == "active"


# --- import -------------------------------------------------------------------------------------


def test_an_import_carries_the_billing_columns_and_names_what_it_refuses(emulator, tmp_path: Path):
    path = tmp_path / "customers.csv"
    path.write_text(
        "account_number,email,company_name,billing_street,billing_street2,billing_city,"
        "billing_zip,billing_country,vat_number,account_status\n"
        "CT-2025-00500,ap@karoo.example,Karoo Farms,1 Main Rd,,Worcester,6850,South Africa,"
        "4123456789,active\n"
        "CT-2025-00501,gone@example.co.za,Gone Ltd,,,,,,,Closed\n"
        "CT-2025-00502,bad@example.co.za,Bad Ltd,,,,,,4123456789012,active\n"
        "CT-2025-00503,odd@example.co.za,Odd Ltd,,,,,,,dormant\n",
        encoding="utf-8",
    )

    document, code = run_json("import_customers", str(path))

    assert code == 1
    karoo = Customer.objects.get(account_number="CT-2025-00500")
    assert (karoo.billing_city, karoo.billing_zip, karoo.vat_number) == (
        "Worcester",
        "6850",
        "4123456789",
    )
    gone = Customer.objects.get(account_number="CT-2025-00501")
    assert gone.account_status == AccountStatus.CLOSED  # any case
    refused = [
        (row["line"], problem["column"], problem["reason"])
        for row in document["rows"]
        for problem in row["problems"]
    ]
    assert refused == [
        (4, "vat_number", "13 characters, Zoho accepts 2 to 12"),
        (5, "account_status", "'dormant' is not an account status: use one of active, closed"),
    ]
    refused_accounts = ["CT-2025-00502", "CT-2025-00503"]
    assert not Customer.objects.filter(account_number__in=refused_accounts).exists()

    report = customers_sync(trigger="command")
    assert (report.synced_count, report.skipped_count) == (1, 1)  # the closed one: not created
    assert zoho_record(emulator, karoo)["vat_reg_no"] == "4123456789"


def test_a_run_prints_and_counts_a_closed_account_as_sent(emulator, billed):
    Customer.objects.filter(pk=billed.pk).update(account_status=AccountStatus.CLOSED)

    output, code = run("zoho_sync_customers")

    assert code == 0
    assert (
        f"Successfully synced: {billed.zoho_billing_customer_id} "
        "(account closed: marked inactive in Zoho)" in output
    )
    assert "Of those synced, local edits sent to Zoho: 1" in output


def test_a_closed_account_whose_create_is_in_doubt_is_looked_for_then_left_alone(
    emulator, make_customer, settings
):
    settings.ZOHO_CREATE_SETTLE_SECONDS = 0  # the earlier create has settled: look for it
    doubted = make_customer(account_status=AccountStatus.CLOSED, zoho_create_sent_at=timezone.now())

    report = customers_backfill(trigger="command")

    assert (report.ok, report.skipped_count) == (True, 1)
    assert zoho_posts(emulator) == 0
    doubted.refresh_from_db()
    assert (doubted.zoho_billing_customer_id, doubted.zoho_create_sent_at) == (None, None)
    assert customers_backfill(trigger="command").selected_count == 0


def test_an_answer_that_rewrote_the_address_is_named_part_by_part(make_customer):
    customer = make_customer(**ADDRESS)
    # No organization the emulator plays rewrites an address: the answer is Zoho's shape, as a
    # Zoho that writes the country its own way and drops line 2 would send it.
    answer = ZohoCustomer.from_api(
        {
            "customer_id": "903000000000099",
            "display_name": "X",
            "email": customer.email,
            "custom_fields": [],
            "billing_address": {
                "attention": "Accounts Payable",
                "street": "12 Loop Street",
                "city": "Cape Town",
                "state": "Western Cape",
                "zip": "8001",
                "country": "ZA",
                "state_code": "WC",
                "fax": "",
            },
        },
        account_field="Account Number",
    )

    parts = address_not_kept(customer, answer)

    assert parts == [
        ("billing_street", "12 Loop Street\nUnit 4", "12 Loop Street"),
        ("billing_country", "South Africa", "ZA"),
    ]
    stop = AddressNotKept(customer, answer, parts)
    assert "billing_country: sent 'South Africa', holds 'ZA'" in str(stop)
    assert isinstance(stop, ZohoConfigError)  # exit 2: a person compares and decides
    assert (
        address_not_kept(
            customer,
            ZohoCustomer.from_api(
                {"customer_id": "1", "display_name": "X", "email": customer.email},
                account_field="Account Number",
            ),
        )
        != []
    )  # an answer without the address holds none of ours
