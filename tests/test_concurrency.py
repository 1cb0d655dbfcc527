"""Two commands and several django-q workers at once: each customer worked by one of them,
0 duplicates, and no lost update to a customer row."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django_q.tasks import async_task

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt
from tests.helpers import zoho_account_counts
from tests.processes import process_env, start_manage, stop_process_group, wait_until_synced

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS = 30


def test_commands_and_workers_at_once_sync_each_customer_exactly_once(
    emulator, make_customer, settings
):
    customers = [make_customer() for _ in range(CUSTOMERS)]
    # Slow answers keep every process busy at the same time.
    emulator.inject("slow", delay=0.05, times=None)
    env = process_env(settings, Q_WORKERS="3", ZOHO_RATE_LIMIT_REQUESTS="1000")
    for customer in customers:
        async_task("billing_sync.tasks.sync_customer_task", customer.pk)

    workers = start_manage("qcluster", env=env)
    commands = [start_manage("zoho_backfill_customers", env=env) for _ in range(2)]
    try:
        # Meanwhile a person edits customers: those edits must survive the sync.
        for customer in customers[::3]:
            Customer.objects.filter(pk=customer.pk).update(phone="+27 82 000 0000")
            time.sleep(0.02)
        for command in commands:
            command.wait(timeout=120)
        wait_until_synced()
    finally:
        stop_process_group(workers)
        for command in commands:
            if command.poll() is None:
                stop_process_group(command)
    emulator.clear_faults()

    accounts = zoho_account_counts(emulator)
    assert accounts == Counter(c.account_number for c in customers)
    successes = Counter(
        SyncAttempt.objects.filter(
            outcome__in=[AttemptOutcome.CREATED, AttemptOutcome.ADOPTED]
        ).values_list("customer_id", flat=True)
    )
    assert successes == Counter(c.pk for c in customers)  # each worked by one process
    # A run that found a customer taken by another records that it skipped it; no more.
    runs_per_customer = Counter(
        SyncAttempt.objects.exclude(outcome__in=[AttemptOutcome.DRY_RUN, AttemptOutcome.SKIPPED])
        .values_list("customer_id", "run_id")
        .distinct()
        .values_list("customer_id", flat=True)
    )
    assert max(runs_per_customer.values()) == 1
    edited = Customer.objects.filter(pk__in=[c.pk for c in customers[::3]])
    assert set(edited.values_list("phone", flat=True)) == {"+27 82 000 0000"}
    assert not SyncAttempt.objects.filter(outcome=AttemptOutcome.SENDING).exists()
