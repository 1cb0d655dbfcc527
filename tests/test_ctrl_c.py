"""Ctrl-C stops a run in one line (no traceback), exit 130 as a shell sees it, its record
closed `stopped`, what it had not finished left `failed` for a retry, its document whole; the
retry then finishes with no duplicate. The run is waiting for the shared budget when it is
interrupted (the pacing sleep), as a person watching a slow backfill would press it."""

from __future__ import annotations

import json
import signal
import subprocess
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
from tests.helpers import wait_for, zoho_account_counts, zoho_posts
from tests.processes import process_env, run_manage, start_manage

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS = 8


def interrupted_backfill(emulator, settings, *args: str) -> tuple[subprocess.Popen, str, str]:
    """A backfill paced to 3 requests a minute, interrupted once it has sent 2 creates."""
    env = process_env(
        settings,
        ZOHO_RATE_LIMIT_REQUESTS="3",
        ZOHO_RATE_LIMIT_WINDOW_SECONDS="60",
        ZOHO_CREATE_SETTLE_SECONDS="1",
    )
    process = start_manage(
        "zoho_backfill_customers", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for(lambda: zoho_posts(emulator) >= 2, "two creates sent")
    wait_for(lambda: not emulator.busy(), "the second create answered")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return process, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_ctrl_c_stops_a_run_in_one_line_and_the_retry_finishes(
    emulator, make_customer, settings, as_json
):
    customers = [make_customer() for _ in range(CUSTOMERS)]
    process, stdout, stderr = interrupted_backfill(
        emulator, settings, *(["--json"] if as_json else [])
    )

    assert process.returncode == -signal.SIGINT  # a shell shows 130
    assert "Traceback" not in stdout + stderr
    (line,) = [line for line in stderr.splitlines() if "Interrupted (Ctrl-C)" in line]
    run = SyncRun.objects.get()
    assert line.endswith(f"(run #{run.pk}).")
    assert run.status == SyncRunStatus.STOPPED
    assert run.stop_reason.startswith("Interrupted (Ctrl-C)")
    assert not SyncAttempt.objects.filter(outcome=AttemptOutcome.SENDING).exists()
    statuses = Counter(Customer.objects.values_list("zoho_sync_status", flat=True))
    assert statuses[SyncStatus.SYNCING] == 0  # nothing held by the stopped run
    assert statuses[SyncStatus.SYNCED] + statuses[SyncStatus.FAILED] == CUSTOMERS
    if as_json:
        document = json.loads(stdout)
        assert (document["exit_code"], document["run_id"]) == (130, run.pk)
        assert document["problems"] == [line]
        assert {entry["customer_id"] for entry in document["customers"]} == set(
            SyncAttempt.objects.filter(run=run, final=True).values_list("customer_id", flat=True)
        )

    retried = run_manage(
        "zoho_retry_failed", env=process_env(settings, ZOHO_CREATE_SETTLE_SECONDS="1")
    )

    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).count() == CUSTOMERS
    assert zoho_account_counts(emulator) == Counter(c.account_number for c in customers)
