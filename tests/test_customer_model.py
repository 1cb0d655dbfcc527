"""A customer's save writes what its caller changed, nothing else: code that sets a sync column
gets what it set, and a stale copy never writes back what a run wrote meanwhile. Editing a field
we send puts a customer that needs attention back in the queue, whoever edits (a database
trigger, on SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import connection

from billing_sync.models import AccountType, Customer, SyncStatus

pytestmark = pytest.mark.django_db


def test_code_that_sets_a_sync_column_gets_what_it_set(make_customer):
    customer = Customer.objects.get(pk=make_customer().pk)

    customer.zoho_sync_status = SyncStatus.FAILED
    customer.zoho_last_error = "HTTP 500 from Zoho"
    customer.save()

    customer.refresh_from_db()
    assert (customer.zoho_sync_status, customer.zoho_last_error) == (
        SyncStatus.FAILED,
        "HTTP 500 from Zoho",
    )


def test_a_stale_copy_writes_only_what_it_changed(make_customer):
    customer = make_customer()
    stale = Customer.objects.get(pk=customer.pk)
    Customer.objects.filter(pk=customer.pk).update(
        zoho_billing_customer_id="6179546000000100001", zoho_sync_status=SyncStatus.SYNCED
    )  # a run linked it meanwhile

    stale.phone = "+27 82 555 0101"
    stale.save()

    customer.refresh_from_db()
    assert (customer.zoho_billing_customer_id, customer.zoho_sync_status, customer.phone) == (
        "6179546000000100001",
        SyncStatus.SYNCED,
        "+27 82 555 0101",
    )


def test_a_partial_refresh_keeps_what_the_caller_changed(make_customer):
    customer = Customer.objects.get(pk=make_customer().pk)
    customer.phone = "+27 82 555 0102"

    customer.refresh_from_db(fields=["zoho_sync_status"])
    customer.save()

    assert Customer.objects.get(pk=customer.pk).phone == "+27 82 555 0102"


@pytest.mark.parametrize("how", ["save", "update", "sql"])
def test_editing_data_we_send_reopens_a_customer_that_needs_attention(make_customer, how):
    customer = make_customer(email="bad", zoho_sync_status=SyncStatus.NEEDS_ATTENTION)

    if how == "save":
        loaded = Customer.objects.get(pk=customer.pk)
        loaded.email = "fixed@example.co.za"
        loaded.save()
    elif how == "update":
        Customer.objects.filter(pk=customer.pk).update(email="fixed@example.co.za")
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE customers SET email = %s WHERE id = %s",
                ["fixed@example.co.za", customer.pk],
            )

    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.PENDING


def test_what_is_not_data_we_send_reopens_nothing_and_a_set_status_stays(make_customer):
    untouched = make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION)
    chosen = make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION)

    Customer.objects.filter(pk=untouched.pk).update(account_type=AccountType.BUSINESS)
    Customer.objects.filter(pk=chosen.pk).update(phone="1", zoho_sync_status=SyncStatus.FAILED)

    untouched.refresh_from_db()
    chosen.refresh_from_db()
    assert untouched.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert chosen.zoho_sync_status == SyncStatus.FAILED
