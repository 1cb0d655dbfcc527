"""Keeping Zoho in step: local edits reach Zoho, one request each; an unchanged table costs none."""

from __future__ import annotations

import pytest
from django.db import connection

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncStatus
from billing_sync.run.report import RunObserver
from billing_sync.run.runs import customers_backfill, customers_sync
from billing_sync.tasks import sync_task
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from tests.commands import run, run_json
from tests.helpers import edit, zoho_record

pytestmark = pytest.mark.django_db


def puts(emulator) -> int:
    return sum(1 for r in emulator.request_log if r.method == "PUT")


@pytest.fixture
def synced(emulator, make_customer) -> list[Customer]:
    customers = [make_customer(phone=f"+27 21 555 010{n}") for n in range(5)]
    assert customers_backfill(trigger="command").ok
    for customer in customers:
        customer.refresh_from_db()
    return customers


def test_an_unchanged_table_costs_no_request(emulator, synced):
    requests, tokens = len(emulator.request_log), emulator.token_refresh_count

    report = customers_sync(trigger="command")

    assert report.ok
    assert report.selected_count == 0
    assert len(emulator.request_log) == requests
    assert emulator.token_refresh_count == tokens


def test_each_edit_costs_one_request_and_reaches_zoho(emulator, synced):
    first, second, third = synced[:3]
    edit(first, email="new-address@example.co.za")
    edit(second, phone="")  # a cleared phone is cleared in Zoho too
    edit(third, first_name="Thandi", company_name="Karoo Farms")
    requests = len(emulator.request_log)

    report = customers_sync(trigger="command")

    assert report.ok
    assert (report.selected_count, report.updated_count) == (3, 3)
    assert len(emulator.request_log) - requests == 3
    assert puts(emulator) == 3
    assert zoho_record(emulator, first)["email"] == "new-address@example.co.za"
    assert zoho_record(emulator, second)["phone"] == ""
    karoo = zoho_record(emulator, third)
    assert (karoo["first_name"], karoo["company_name"], karoo["display_name"]) == (
        "Thandi",
        "Karoo Farms",
        "Karoo Farms",
    )
    for customer in (first, second, third):
        customer.refresh_from_db()
        assert customer.zoho_sync_status == SyncStatus.SYNCED
        account = [f["value"] for f in zoho_record(emulator, customer)["custom_fields"]]
        assert account == [customer.account_number]
    outcomes = SyncAttempt.objects.filter(run=report.run).values_list("outcome", flat=True)
    assert list(outcomes) == [AttemptOutcome.UPDATED] * 3
    assert customers_sync(trigger="command").selected_count == 0


def test_fields_we_do_not_own_are_left_as_zoho_holds_them(emulator, synced, settings):
    customer = synced[0]
    record = zoho_record(emulator, customer)
    # A person in Zoho's web app adds a note and a website: those are not ours to send.
    update = {"display_name": record["display_name"], "email": record["email"]}
    ZohoClient(zoho_config()).update_customer(
        customer.zoho_billing_customer_id, {**update, "notes": "VIP", "website": "karoo.co.za"}
    )
    edit(customer, last_name="Renamed")

    customers_sync(trigger="command")

    record = zoho_record(emulator, customer)
    assert record["last_name"] == "Renamed"
    assert (record["notes"], record["website"]) == ("VIP", "karoo.co.za")


def test_a_save_that_changes_nothing_we_send_costs_no_request(emulator, synced):
    edit(synced[0])  # saved as it was
    requests = len(emulator.request_log)

    report = customers_sync(trigger="command")

    assert report.ok
    assert report.skipped_count == 1
    assert len(emulator.request_log) == requests
    assert customers_sync(trigger="command").selected_count == 0


def test_edits_made_outside_the_admin_are_found_too(emulator, synced):
    Customer.objects.filter(pk=synced[0].pk).update(phone="+27 82 000 0001")
    with connection.cursor() as cursor:  # an operator's SQL
        cursor.execute("UPDATE customers SET last_name = %s WHERE id = %s", ["Sql", synced[1].pk])

    report = customers_sync(trigger="command")

    assert report.updated_count == 2
    assert zoho_record(emulator, synced[0])["phone"] == "+27 82 000 0001"
    assert zoho_record(emulator, synced[1])["last_name"] == "Sql"


class EditsWhileSending(RunObserver):
    """A person edits the customer after the run has read it, before its request goes out."""

    def __init__(self, customer: Customer, **fields: str) -> None:
        self.customer, self.fields = customer, fields

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        if customer.pk == self.customer.pk:
            edit(Customer.objects.get(pk=customer.pk), **self.fields)


def test_an_edit_made_while_its_customer_is_being_sent_is_sent_by_the_next_run(emulator, synced):
    customer = edit(synced[0], phone="+27 82 111 1111")

    customers_sync(trigger="command", observer=EditsWhileSending(customer, phone="+27 82 222"))
    assert zoho_record(emulator, customer)["phone"] == "+27 82 111 1111"  # what the run read

    report = customers_sync(trigger="command")

    assert report.updated_count == 1
    assert zoho_record(emulator, customer)["phone"] == "+27 82 222"
    assert customers_sync(trigger="command").selected_count == 0


def test_a_form_opened_before_a_run_does_not_undo_the_run_when_saved(emulator, make_customer):
    customer = make_customer()
    form = Customer.objects.get(pk=customer.pk)  # a person opens the customer's page...
    customers_backfill(trigger="command")  # ...a run creates it in Zoho meanwhile...
    form.phone = "+27 82 999"
    form.save()  # ...and the person saves an edit

    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.SYNCED
    assert customer.zoho_billing_customer_id  # not undone: no second create
    assert customer.phone == "+27 82 999"
    assert customers_sync(trigger="command").updated_count == 1
    assert len(emulator.customers()) == 1


def test_an_edit_zoho_refuses_needs_a_person_and_keeps_the_link(emulator, synced):
    emulator.configure(display_name_unique=True)
    twin = synced[1]
    customer = edit(synced[0], first_name=twin.first_name, last_name=twin.last_name)

    report = customers_sync(trigger="command")

    customer.refresh_from_db()
    assert not report.ok
    assert customer.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert customer.zoho_billing_customer_id == synced[0].zoho_billing_customer_id
    assert "already exists" in customer.zoho_last_error
    assert customers_sync(trigger="command").selected_count == 0  # left for a person

    edit(customer, last_name="Unique")  # the person fixes it

    assert customers_sync(trigger="command").updated_count == 1
    assert zoho_record(emulator, customer)["last_name"] == "Unique"


def test_a_customer_deleted_in_zoho_needs_a_person(emulator, synced):
    customer = edit(synced[0], phone="+27 82 333")
    emulator.reset()  # Zoho lost every customer (deleted in its web app)

    customers_sync(trigger="command")

    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert "Zoho no longer holds the customer" in customer.zoho_last_error


def test_an_adopted_customer_gets_our_values_once(emulator, make_customer):
    emulator.add_customer(display_name="Paid Online", email="paid@example.co.za")
    adopted = make_customer(email="paid@example.co.za", first_name="Lerato", last_name="M")
    customers_backfill(trigger="command")
    assert zoho_record(emulator, Customer.objects.get(pk=adopted.pk))["display_name"] == (
        "Paid Online"
    )

    report = customers_sync(trigger="command")

    assert report.updated_count == 1
    record = zoho_record(emulator, Customer.objects.get(pk=adopted.pk))
    assert (record["display_name"], record["first_name"]) == ("Lerato M", "Lerato")
    assert customers_sync(trigger="command").selected_count == 0


def test_the_sync_creates_the_missing_and_pushes_the_edited_in_one_run(
    emulator, synced, make_customer
):
    new = make_customer()
    edit(synced[2], phone="+27 82 444")

    output, code = run("zoho_sync_customers")

    assert code == 0
    assert "Found 2 new or edited customer(s)" in output
    assert "Successfully synced: " in output
    assert "(local edits sent to Zoho)" in output
    assert "Of those synced, local edits sent to Zoho: 1" in output
    assert "Zoho is in step with every selected customer!" in output
    assert Customer.objects.get(pk=new.pk).zoho_billing_customer_id
    assert zoho_record(emulator, synced[2])["phone"] == "+27 82 444"


def test_the_schedule_keeps_zoho_in_step(emulator, synced, make_customer):
    new = make_customer()
    edit(synced[3], last_name="Scheduled")

    summary = sync_task()

    assert "2 synced, 0 failed" in summary
    assert "1 of the synced with edits sent to Zoho" in summary
    assert Customer.objects.get(pk=new.pk).zoho_sync_status == SyncStatus.SYNCED
    assert zoho_record(emulator, synced[3])["last_name"] == "Scheduled"


# Drift: Zoho-side edits found by zoho_verify and repaired by --fix


def edit_in_zoho(emulator, customer: Customer, **fields: str) -> None:
    """A person edits the customer in Zoho's web app."""
    record = zoho_record(emulator, customer)
    ZohoClient(zoho_config()).update_customer(
        customer.zoho_billing_customer_id,
        {"display_name": record["display_name"], "email": record["email"], **fields},
    )


def test_verify_names_each_field_zoho_changed_and_fix_sends_ours(emulator, synced):
    customer = synced[0]
    edit_in_zoho(emulator, customer, phone="+1 555 0000", last_name="Changed")

    output, code = run("zoho_verify")

    assert code == 1
    assert "Customers whose Zoho record differs from ours: 1" in output
    assert (
        f"{customer.account_number} (Zoho {customer.zoho_billing_customer_id}): "
        "last_name, phone (changed in Zoho)"
    ) in output

    document, code = run_json("zoho_verify", "--fix")

    assert code == 0
    assert document["drift"] == []
    assert document["fix"]["updated"] == 1
    record = zoho_record(emulator, customer)
    assert (record["phone"], record["last_name"]) == (customer.phone, customer.last_name)


def test_verify_tells_an_edit_not_yet_sent_from_one_made_in_zoho(emulator, synced):
    edit(synced[1], phone="+27 82 555")

    document, code = run_json("zoho_verify")

    assert code == 1
    (drift,) = document["drift"]
    assert (drift["fields"], drift["edited_here"]) == (["phone"], True)
    assert drift["zoho_customer_id"] == synced[1].zoho_billing_customer_id


def test_fix_relinks_a_customer_that_lost_its_zoho_id_by_its_account_number(emulator, synced):
    customer = synced[2]
    zoho_id = customer.zoho_billing_customer_id
    # The id is lost here (a restore, a manual change), and the email changed meanwhile: only
    # the account number still ties the two together.
    Customer.objects.filter(pk=customer.pk).update(
        zoho_billing_customer_id=None,
        zoho_sync_status=SyncStatus.PENDING,
        email="moved@example.co.za",
    )

    document, code = run_json("zoho_verify", "--deep", "--fix")

    customer.refresh_from_db()
    assert code == 0
    assert document["fix"]["relinked"] == 1
    assert customer.zoho_billing_customer_id == zoho_id
    assert len(emulator.customers()) == len(synced)  # relinked, not created again
    assert zoho_record(emulator, customer)["email"] == "moved@example.co.za"


def test_fix_writes_an_account_number_zoho_lacks(emulator, make_customer):
    emulator.configure(unknown_custom_field="drop")
    customer = make_customer()
    customers_backfill(trigger="command")
    # Created while the field was missing, by a version that did not mark it.
    Customer.objects.filter(pk=customer.pk).update(zoho_account_number_missing=False)
    emulator.configure(custom_field_labels=("Account Number",))

    output, code = run("zoho_verify", "--deep")
    assert code == 1
    assert "Account numbers missing or wrong in Zoho: 1" in output

    output, code = run("zoho_verify", "--deep", "--fix")

    assert code == 0, output
    customer.refresh_from_db()
    account = [f["value"] for f in zoho_record(emulator, customer)["custom_fields"]]
    assert account == [customer.account_number]
