"""Saving a customer queues its sync once the transaction commits: with a worker running, an
edit reaches Zoho within seconds, one request, one task however many saves."""

from __future__ import annotations

import pytest
from django.db import transaction
from django_q.models import OrmQ

from billing_sync.models import AccountType, Customer, SyncRun, SyncStatus, SyncTrigger
from billing_sync.run.runs import customers_backfill
from tests.helpers import run_queued_tasks, zoho_record

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def on_save(settings) -> None:
    settings.ZOHO_SYNC_ON_SAVE = True


@pytest.fixture
def synced(emulator, make_customer) -> Customer:
    customer = make_customer()
    assert customers_backfill(trigger=SyncTrigger.COMMAND).ok
    customer.refresh_from_db()
    OrmQ.objects.all().delete()
    return customer


def queued() -> int:
    return OrmQ.objects.count()


def zoho_phone(emulator, customer: Customer) -> str:
    return zoho_record(emulator, customer)["phone"]


def test_a_saved_edit_reaches_zoho_through_one_queued_task(emulator, synced, on_save):
    synced.phone = "+27 82 700 0001"
    synced.save()
    requests = len(emulator.request_log)

    assert queued() == 1
    assert run_queued_tasks() == 1

    assert zoho_phone(emulator, synced) == "+27 82 700 0001"
    assert [r.method for r in emulator.request_log[requests:]] == ["PUT"]
    run = SyncRun.objects.latest("started_at")
    assert (run.trigger, run.synced_count) == (SyncTrigger.EDIT, 1)


def test_many_saves_before_the_worker_comes_cost_one_task(emulator, synced, on_save):
    with transaction.atomic():
        for n in range(3):
            synced.phone = f"+27 82 700 010{n}"
            synced.save()
    for n in range(3, 5):  # more commits, before the worker has taken the task
        synced.phone = f"+27 82 700 010{n}"
        synced.save()

    assert queued() == 1
    run_queued_tasks()

    assert zoho_phone(emulator, synced) == "+27 82 700 0104"


def test_a_save_after_the_task_started_queues_another(emulator, synced, on_save):
    synced.phone = "+27 82 700 0201"
    synced.save()
    run_queued_tasks()
    synced.phone = "+27 82 700 0202"
    synced.save()

    assert queued() == 1
    run_queued_tasks()
    assert zoho_phone(emulator, synced) == "+27 82 700 0202"


def save_then_give_up(customer: Customer) -> None:
    with transaction.atomic():
        customer.phone = "+27 82 700 0301"
        customer.save()
        raise RuntimeError("the edit is abandoned")


def test_a_rolled_back_save_queues_nothing(emulator, synced, on_save):
    with pytest.raises(RuntimeError):
        save_then_give_up(synced)

    assert queued() == 0


def test_update_of_a_field_we_send_queues_and_of_another_does_not(emulator, synced, on_save):
    Customer.objects.filter(pk=synced.pk).update(account_type=AccountType.BUSINESS)
    assert queued() == 0

    Customer.objects.filter(pk=synced.pk).update(last_name="Updated")

    assert queued() == 1
    run_queued_tasks()
    assert zoho_record(emulator, synced)["last_name"] == "Updated"


def test_a_new_customer_is_created_by_its_task(emulator, make_customer, on_save):
    customer = make_customer()

    run_queued_tasks()

    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.SYNCED
    assert len(emulator.customers()) == 1


def test_internal_test_accounts_queue_nothing(emulator, make_customer, on_save):
    make_customer(account_type=AccountType.INTERNAL_TEST)

    assert queued() == 0


def test_off_by_setting(emulator, synced, settings):
    settings.ZOHO_SYNC_ON_SAVE = False
    synced.phone = "+27 82 700 0401"
    synced.save()

    assert queued() == 0
