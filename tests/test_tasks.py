"""Tasks and schedules: failed customers get synced by the worker with nobody running a command."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule, Success
from django_q.scheduler import scheduler
from django_q.tasks import async_task

from billing_sync.models import (
    Customer,
    SyncRun,
    SyncRunKind,
    SyncStatus,
    SyncTrigger,
    ZohoApiState,
)
from billing_sync.operations.queueing import customers_requeue
from billing_sync.run.report import ResultCollector
from billing_sync.run.runs import customer_sync
from billing_sync.tasks import sync_task
from tests.helpers import run_queued_tasks, zoho_posts

pytestmark = pytest.mark.django_db(transaction=True)


def block_zoho(seconds: float) -> None:
    ZohoApiState.objects.update_or_create(
        singleton=1,
        defaults={
            "blocked_until": timezone.now() + timedelta(seconds=seconds),
            "block_reason": "test block",
        },
    )


def schedules_due_now() -> None:
    """Time passes: every schedule is due (what the scheduler sees 10 minutes later)."""
    Schedule.objects.update(next_run=timezone.now() - timedelta(seconds=1))


def test_zoho_schedule_is_idempotent_by_name_and_retires_the_old_schedules(settings):
    settings.ZOHO_SYNC_EVERY_MINUTES = 7
    # The schedules of an earlier version, which the sync replaces.
    Schedule.objects.create(name="zoho-backfill", func="billing_sync.tasks.backfill_task")
    Schedule.objects.create(name="zoho-retry-failed", func="billing_sync.tasks.retry_failed_task")
    call_command("zoho_schedule", stdout=io.StringIO())
    Schedule.objects.create(name="zoho-sync", func="billing_sync.tasks.sync_task")
    call_command("zoho_schedule", stdout=io.StringIO())

    (schedule,) = Schedule.objects.all()

    assert (schedule.name, schedule.func) == ("zoho-sync", "billing_sync.tasks.sync_task")
    assert schedule.minutes == 7
    assert (schedule.repeats, schedule.schedule_type) == (-1, Schedule.MINUTES)


def test_zoho_schedule_list_shows_next_runs():
    call_command("zoho_schedule", stdout=io.StringIO())
    out = io.StringIO()

    call_command("zoho_schedule", "--list", stdout=out)

    assert "zoho-sync: billing_sync.tasks.sync_task every 10 minute(s), next run " in (
        out.getvalue()
    )


def test_failed_customer_is_synced_by_schedule_and_worker_after_the_block(emulator, make_customer):
    customer = make_customer(zoho_sync_status=SyncStatus.FAILED, zoho_last_error="rate limited")
    block_zoho(60)
    call_command("zoho_schedule", stdout=io.StringIO())

    scheduler(broker=get_broker())  # the cluster's scheduler tick: the schedule is due
    ran = run_queued_tasks()

    customer.refresh_from_db()
    assert ran == 1
    assert customer.zoho_sync_status == SyncStatus.FAILED
    assert emulator.request_log == []
    assert all("nothing done" in s.result for s in Success.objects.all())

    ZohoApiState.objects.update(blocked_until=timezone.now() - timedelta(seconds=1))
    schedules_due_now()
    scheduler(broker=get_broker())
    run_queued_tasks()

    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.SYNCED
    assert len(emulator.customers()) == 1
    assert set(SyncRun.objects.values_list("trigger", flat=True)) == {SyncTrigger.SCHEDULE}


def test_scheduled_run_stops_at_a_block_and_leaves_customers_for_the_next(emulator, make_customer):
    # A block met mid-run that lasts longer than ZOHO_SCHEDULE_MAX_WAIT_SECONDS stops the run.
    emulator.configure(rate_limit_requests=2, rate_limit_window_seconds=60, block_seconds=600)
    for _ in range(3):
        make_customer()

    async_task("billing_sync.tasks.sync_task")
    run_queued_tasks()

    statuses = sorted(Customer.objects.values_list("zoho_sync_status", flat=True))
    assert statuses == [SyncStatus.FAILED, SyncStatus.FAILED, SyncStatus.SYNCED]
    assert "rate limited by Zoho until" in Success.objects.get().result


def test_a_task_waits_out_a_short_block_and_syncs(emulator, make_customer, settings):
    settings.ZOHO_SCHEDULE_MAX_WAIT_SECONDS = 30
    customer = make_customer(zoho_sync_status=SyncStatus.FAILED, zoho_last_error="rate limited")
    emulator.block_for(2)  # e.g. a concurrency block (code 1070) another process met
    block_zoho(2)
    started = time.monotonic()

    async_task("billing_sync.tasks.sync_task")
    run_queued_tasks()

    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.SYNCED
    assert len(emulator.customers()) == 1
    assert 429 not in {r.status for r in emulator.request_log}  # nothing went before the end
    assert time.monotonic() - started >= 1.5
    assert "1 synced, 0 failed" in Success.objects.get().result


def test_a_task_does_not_wait_for_a_block_longer_than_its_wait(emulator, make_customer, settings):
    settings.ZOHO_SCHEDULE_MAX_WAIT_SECONDS = 30
    customer = make_customer(zoho_sync_status=SyncStatus.FAILED, zoho_last_error="rate limited")
    emulator.block_for(600)
    block_zoho(600)
    until = ZohoApiState.objects.get().blocked_until
    started = time.monotonic()

    result = sync_task()

    assert time.monotonic() - started < 1.0
    assert result == (
        f"Zoho is blocking requests until {until.astimezone(UTC):%H:%M:%S} UTC, longer than "
        "a scheduled run waits (30 s): nothing done"
    )
    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.FAILED
    assert emulator.request_log == []
    assert not SyncRun.objects.exists()


def test_requeue_enqueues_one_task_for_the_selection_and_the_worker_syncs_it_in_one_run(
    emulator, make_customer
):
    customers = [make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION) for _ in range(2)]
    customers += [make_customer(zoho_sync_status=SyncStatus.FAILED) for _ in range(3)]
    customers.append(make_customer())

    result = customers_requeue(customer_ids=[c.pk for c in customers])
    queued = get_broker().queue_size()
    ran = run_queued_tasks()

    assert (len(result.queued), queued, ran) == (6, 1, 1)
    task = Success.objects.get()
    assert task.func == "billing_sync.tasks.sync_selected_task"
    assert task.args == ([c.pk for c in customers],)
    run = SyncRun.objects.get()
    assert (run.kind, run.trigger) == (SyncRunKind.SELECTED, SyncTrigger.ADMIN)
    assert (run.selected_count, run.synced_count) == (6, 6)
    assert set(Customer.objects.values_list("zoho_sync_status", flat=True)) == {SyncStatus.SYNCED}
    assert zoho_posts(emulator) == 6


def test_requeue_twice_queues_two_tasks_and_never_duplicates(emulator, make_customer):
    customer = make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION)

    first = customers_requeue(customer_ids=[customer.pk])
    second = customers_requeue(customer_ids=[customer.pk])
    ran = run_queued_tasks()

    customer.refresh_from_db()
    assert (len(first.queued), len(second.queued), ran) == (1, 1, 2)
    assert customer.zoho_sync_status == SyncStatus.SYNCED
    assert zoho_posts(emulator) == 1
    assert sorted(SyncRun.objects.values_list("synced_count", flat=True)) == [0, 1]


def test_requeue_skips_internal_synced_and_busy_customers(emulator, make_customer):
    internal = make_customer(account_type="internal_test")
    synced = make_customer(zoho_billing_customer_id="1", zoho_sync_status=SyncStatus.SYNCED)
    busy = make_customer(zoho_sync_status=SyncStatus.SYNCING, zoho_claimed_at=timezone.now())
    ready = make_customer()

    result = customers_requeue(customer_ids=[internal.pk, synced.pk, busy.pk, ready.pk])

    assert result.queued == [ready]
    assert {reason: [c.pk for c in cs] for reason, cs in result.skipped.items()} == {
        "internal_test": [internal.pk],
        "already synced": [synced.pk],
        "being synced now": [busy.pk],
    }
    assert run_queued_tasks() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent writers")
def test_two_workers_taking_one_customer_at_once_create_it_once(emulator, make_customer):
    customer = make_customer()
    emulator.inject("slow", method="GET", path="/customers", delay=0.3, times=None)
    outcomes: list[str] = []

    def work() -> None:
        collector = ResultCollector()
        customer_sync(
            customer_id=customer.pk, trigger=SyncTrigger.ADMIN, max_wait=0, observer=collector
        )
        outcomes.extend(r.outcome for r in collector.results)
        connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert zoho_posts(emulator) == 1
    assert sorted(outcomes) in (["created"], ["created", "skipped"])
