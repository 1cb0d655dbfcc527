"""Scale out: several django-q workers on the Redis broker and a command, syncing together,
stay inside the one budget and together use it."""

from __future__ import annotations

import pytest

from billing_sync.models import AttemptOutcome, SyncAttempt
from tests.helpers import most_in_any_window, zoho_account_counts
from tests.processes import process_env, start_manage, stop_process_group, wait_until_synced

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET, WINDOW = 10, 1.0
REDIS_DB = 14


def test_workers_and_a_command_share_one_budget_and_use_it(
    emulator, make_customer, settings, redis_url
):
    emulator.configure(
        rate_limit_requests=BUDGET, rate_limit_window_seconds=WINDOW, block_seconds=30
    )
    customers = [make_customer() for _ in range(40)]
    env = process_env(
        settings,
        REDIS_URL=f"{redis_url}/{REDIS_DB}",
        Q_WORKERS="3",
        ZOHO_RATE_LIMIT_REQUESTS=str(BUDGET),
        ZOHO_RATE_LIMIT_WINDOW_SECONDS=str(WINDOW),
    )
    enqueue = start_manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django_q.brokers import get_broker; get_broker().purge_queue()\n"
        "from django_q.tasks import async_task\n"
        f"for pk in {[c.pk for c in customers[::2]]}:\n"
        "    async_task('billing_sync.tasks.sync_customer_task', pk)",
        env=env,
    )
    assert enqueue.wait(timeout=60) == 0
    workers = start_manage("qcluster", env=env)
    command = start_manage("zoho_backfill_customers", env=env)
    try:
        command.wait(timeout=120)
        wait_until_synced()
    finally:
        stop_process_group(workers)

    log = emulator.request_log
    arrivals = sorted(r.time for r in log)
    assert 429 not in {r.status for r in log}
    assert most_in_any_window(arrivals, WINDOW) <= BUDGET
    shortest = ((len(arrivals) - 1) // BUDGET) * WINDOW
    assert shortest / (arrivals[-1] - arrivals[0]) >= 0.8  # together they use the budget
    assert zoho_account_counts(emulator) == {c.account_number: 1 for c in customers}
    created_by = set(
        SyncAttempt.objects.filter(outcome=AttemptOutcome.CREATED).values_list(
            "run__trigger", flat=True
        )
    )
    assert created_by == {"edit", "command"}  # the workers' tasks and the command both did part
