"""Crash safety: kill -9 a backfill at any moment, then a normal run ends with every customer
in Zoho exactly once and the interrupted attempt visible in the audit."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRun,
    SyncRunStatus,
    SyncStatus,
)
from tests.helpers import wait_for, zoho_account_counts
from tests.processes import kill_process_group, process_env, run_manage, start_manage

pytestmark = pytest.mark.django_db(transaction=True)

STALE_SECONDS = 1.0
SETTLE_SECONDS = 1.0


def posts_answered(emulator) -> int:
    return sum(1 for r in emulator.request_log if r.method == "POST" and r.status == 201)


def kill_backfill(env, moment) -> None:
    process = start_manage("zoho_backfill_customers", env=env)
    try:
        moment()
    finally:
        kill_process_group(process)


def test_killed_backfills_leave_nothing_a_normal_run_cannot_finish(
    emulator, make_customer, settings
):
    customers = [make_customer() for _ in range(12)]
    emulator.inject("slow", method="POST", path="/customers", delay=0.3, times=None)
    env = process_env(
        settings,
        ZOHO_STALE_CLAIM_SECONDS=str(STALE_SECONDS),
        ZOHO_CREATE_SETTLE_SECONDS=str(SETTLE_SECONDS),
    )
    chance = random.Random(4)  # noqa: S311 - picks kill moments, not secrets

    # 1. While Zoho is working on a create: it completes after we died.
    kill_backfill(env, lambda: wait_for(emulator.busy, "a request in flight", interval=0.01))
    # 2. Right after Zoho answered a create: between Zoho's create and our save.
    answered = posts_answered(emulator)
    kill_backfill(
        env,
        lambda: wait_for(
            lambda: posts_answered(emulator) > answered, "a create answered", interval=0.01
        ),
    )
    # 3. At a random moment.
    kill_backfill(env, lambda: time.sleep(chance.uniform(0.3, 1.5)))
    assert emulator.wait_idle(timeout=10)

    time.sleep(max(STALE_SECONDS, SETTLE_SECONDS))  # the next run comes later
    emulator.clear_faults()
    done = run_manage("zoho_backfill_customers", env=env)
    output = done.stdout

    assert done.returncode == 0, output
    assert zoho_account_counts(emulator) == Counter(c.account_number for c in customers)
    assert Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).count() == len(customers)
    interrupted = SyncAttempt.objects.filter(outcome=AttemptOutcome.INTERRUPTED)
    assert interrupted.exists()
    assert all("interrupted" in a.error_message for a in interrupted)
    assert not SyncAttempt.objects.filter(outcome=AttemptOutcome.SENDING).exists()
    assert interrupted.first().run.status == SyncRunStatus.INTERRUPTED
    # Every killed run's record is closed by the run after them: none is left running.
    assert set(SyncRun.objects.values_list("status", flat=True)) == {
        SyncRunStatus.INTERRUPTED,
        SyncRunStatus.COMPLETED,
    }
    finals = SyncAttempt.objects.filter(final=True).values_list("run", "customer")
    assert len(finals) == len(set(finals))  # one final attempt per customer per run
