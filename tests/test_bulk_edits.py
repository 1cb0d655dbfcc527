"""Edits saved together are queued together: an update() or a transaction that edits many
customers marks them in one statement per batch and queues one selection run per batch of
ZOHO_SCHEDULE_BATCH_SIZE, not one task (and one run) per customer; a lone edit still queues its
own task."""

from __future__ import annotations

import pytest
from django.db import transaction
from django_q.models import OrmQ

from billing_sync.models import AccountType, Customer, SyncRun, SyncRunKind, SyncTrigger
from billing_sync.run.runs import customers_backfill
from tests.helpers import run_queued_tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def synced(emulator, make_customer, settings) -> list[Customer]:
    settings.ZOHO_SYNC_ON_SAVE = False  # the creates come from the backfill below
    settings.ZOHO_RATE_LIMIT_REQUESTS = 10_000
    customers = [make_customer() for _ in range(23)]
    assert customers_backfill(trigger=SyncTrigger.COMMAND).ok
    settings.ZOHO_SYNC_ON_SAVE = True
    settings.ZOHO_SCHEDULE_BATCH_SIZE = 10
    return customers


def phones_in_zoho(emulator) -> dict[str, str]:
    return {record["email"]: record["phone"] for record in emulator.customers()}


def edit_runs() -> list[SyncRun]:
    return list(SyncRun.objects.filter(trigger=SyncTrigger.EDIT).order_by("pk"))


def test_an_update_of_many_customers_queues_one_run_per_batch(emulator, synced):
    requests = len(emulator.request_log)

    edited = Customer.objects.update(phone="+27 21 555 0000")

    assert edited == 23
    assert OrmQ.objects.count() == 3  # 10 + 10 + 3, not 23
    assert run_queued_tasks() == 3
    runs = edit_runs()
    assert [(run.kind, run.selected_count, run.synced_count) for run in runs] == [
        (SyncRunKind.SELECTED, 10, 10),
        (SyncRunKind.SELECTED, 10, 10),
        (SyncRunKind.SELECTED, 3, 3),
    ]
    assert set(phones_in_zoho(emulator).values()) == {"+27 21 555 0000"}
    sent = [r.method for r in emulator.request_log[requests:]]
    assert sent == ["PUT"] * 23  # one request per edit
    assert not Customer.objects.filter(zoho_sync_queued_at__isnull=False).exists()


def test_edits_saved_in_one_transaction_queue_one_run(emulator, synced):
    with transaction.atomic():
        for n, customer in enumerate(synced[:7]):
            customer.refresh_from_db()
            customer.phone = f"+27 82 555 {n:04d}"
            customer.save()

    assert OrmQ.objects.count() == 1
    run_queued_tasks()
    (run,) = edit_runs()
    assert (run.selected_count, run.synced_count) == (7, 7)
    phones = phones_in_zoho(emulator)
    assert [phones[c.email] for c in synced[:7]] == [f"+27 82 555 {n:04d}" for n in range(7)]


def test_a_lone_edit_still_queues_its_own_task(emulator, synced):
    Customer.objects.filter(pk=synced[0].pk).update(phone="+27 82 555 9999")

    (task,) = OrmQ.objects.all()
    assert task.func() == "billing_sync.tasks.sync_customer_task"
    run_queued_tasks()
    (run,) = edit_runs()
    assert (run.kind, run.synced_count) == (SyncRunKind.SINGLE, 1)


def test_a_bulk_edit_leaves_out_internal_test_accounts_and_queued_customers(
    emulator, synced, make_customer
):
    make_customer(account_type=AccountType.INTERNAL_TEST)
    Customer.objects.filter(pk=synced[0].pk).update(phone="+27 82 555 0001")  # queued alone

    Customer.objects.update(last_name="Renamed")

    funcs = [task.func().rpartition(".")[2] for task in OrmQ.objects.order_by("pk")]
    assert funcs == ["sync_customer_task"] + ["sync_selected_task"] * 3
    batches = [task.args()[0] for task in OrmQ.objects.order_by("pk")[1:]]
    assert all(len(batch) <= 10 for batch in batches)
    internal = Customer.objects.get(account_type=AccountType.INTERNAL_TEST).pk
    others = {c.pk for c in synced[1:]}
    assert sorted(pk for batch in batches for pk in batch) == sorted(others)  # not `internal`
    assert internal not in others
    run_queued_tasks()
    assert {record["last_name"] for record in emulator.customers()} == {"Renamed"}


def edit_then_give_up() -> None:
    with transaction.atomic():
        Customer.objects.update(phone="+27 82 555 0404")
        raise RuntimeError("abandoned")


def test_a_rolled_back_bulk_edit_queues_nothing(emulator, synced):
    with pytest.raises(RuntimeError):
        edit_then_give_up()

    assert OrmQ.objects.count() == 0
    Customer.objects.filter(pk=synced[1].pk).update(phone="+27 82 555 0405")
    assert OrmQ.objects.count() == 1  # the next commit queues its own edit only


def edit_in_a_savepoint_then_give_up(customer_ids: list[int]) -> None:
    with transaction.atomic():
        Customer.objects.filter(pk__in=customer_ids).update(phone="lost")
        raise RuntimeError("abandoned")


def test_edits_rolled_back_with_a_savepoint_are_not_sent_and_the_rest_go_in_one_run(
    emulator, synced
):
    requests = len(emulator.request_log)
    with transaction.atomic():
        Customer.objects.filter(pk=synced[0].pk).update(phone="+27 82 555 0501")
        with pytest.raises(RuntimeError):
            edit_in_a_savepoint_then_give_up([synced[1].pk, synced[2].pk])
        Customer.objects.filter(pk=synced[3].pk).update(phone="+27 82 555 0503")

    assert OrmQ.objects.count() == 1  # the transaction's edits, together
    run_queued_tasks()
    phones = phones_in_zoho(emulator)
    assert [phones[c.email] for c in synced[:4]] == [
        "+27 82 555 0501",
        synced[1].phone,
        synced[2].phone,
        "+27 82 555 0503",
    ]
    sent = [r.method for r in emulator.request_log[requests:]]
    assert sent == ["PUT", "PUT"]  # nothing for the edits the savepoint took back
