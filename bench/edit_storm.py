"""Edit storm: one update() edits every customer; how fast and frugally the edits reach Zoho.

    .venv/bin/python bench/edit_storm.py [--edits 10000] [--database-url URL]

A fresh database (SQLite in a temp folder unless --database-url; that database is FLUSHED, a
missing PostgreSQL one is created), an emulator in this process allowing 100 requests per 4 s
(our ZOHO_RATE_LIMIT_* say the same; no daily cap), and a real `manage.py qcluster`
(Q_WORKERS=2, the database as broker) with ZOHO_SYNC_ON_SAVE on. Set-up: --edits customers
that Zoho already holds, seeded in the emulator and bulk-created here linked and in step (with
ZOHO_SYNC_ON_SAVE off: nothing queued); a `customers_sync` run right after must select none.
Then, with the worker up, ONE `Customer.objects.update(phone=...)` over every row, timed: in
autocommit its commit, and so the queueing of the edits (operations/queueing.py), happens inside
the call. Zoho is polled every 0.5 s until it holds the new phone for every customer. Prints:
  update()             seconds the call took, the queueing included
  tasks queued         django-q tasks waiting right after it (OrmQ rows), and done at the end
  runs                 SyncRun rows of trigger `edit`, with their customers synced and failed
  last edit in Zoho    seconds from the update() call until the poll saw every new phone in
                       Zoho (and until the last PUT arrived there)
  budget floor         N / (100 per 4 s) = N * 4 / 100 s, and last edit / floor
  requests per edit    API requests the emulator received after update() / N: PUTs and all
  429s, blocks         answers with status 429, and the org blocks they started
Then each target, met or NOT MET: update() under 1 s; runs <= ceil(N / ZOHO_SCHEDULE_BATCH_SIZE);
requests per edit <= 1.05; 0 blocks; last edit within 1.25x the budget floor. Exits 1 when one
is missed (or Zoho never holds every edit, within 3x the floor and at least 120 s).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchlib import (  # noqa: E402
    emulator_credentials,
    ensure_database,
    judge,
    print_verdicts,
    start_worker,
    stop_worker,
)

from zoho_emulator import EmulatorConfig, RequestRecord, ZohoEmulator  # noqa: E402

BUDGET_REQUESTS = 100
BUDGET_WINDOW_SECONDS = 4
CREATE_CHUNK = 500
NEW_PHONE = "+27 82 555 0100"
POLL_SECONDS = 0.5
WORKER_START_SECONDS = 60.0
RUNS_FINISH_SECONDS = 60.0
# Targets.
UPDATE_SECONDS = 1.0
REQUESTS_PER_EDIT = 1.05
FLOOR_RATIO = 1.25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp folder.")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    folder = tempfile.mkdtemp(prefix="billing_sync-edit-storm-")
    try:
        return measure(
            args.edits,
            args.database_url or f"sqlite:///{folder}/storm.sqlite3",
            flush=args.database_url is not None,
        )
    finally:
        if "django.db" in sys.modules:  # close SQLite before its folder goes
            from django.db import connections

            connections.close_all()
        shutil.rmtree(folder, ignore_errors=True)


def measure(edits: int, url: str, *, flush: bool) -> int:
    emulator = ZohoEmulator(
        EmulatorConfig(
            rate_limit_requests=BUDGET_REQUESTS, rate_limit_window_seconds=BUDGET_WINDOW_SECONDS
        )
    ).start(port=0)
    ensure_database(url)
    env = environment(url, emulator)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("Q_BROKER_URL", None)
    import django

    django.setup()
    logging.getLogger("django-q").setLevel(logging.WARNING)  # not a line per queued task
    prepare_database(flush=flush)
    print(f"edit storm: {edits} customers, budget {BUDGET_REQUESTS} per {BUDGET_WINDOW_SECONDS} s")
    started = time.monotonic()
    create_in_step(emulator, edits)
    print(f"  set-up: {time.monotonic() - started:.1f} s, a sync run right after selects 0")
    cluster = start_worker(env)
    try:
        wait_for_worker()
        storm(emulator, edits)
    finally:
        stop_worker(cluster)
        emulator.stop()
    return 0 if print_verdicts() else 1


def environment(url: str, emulator: ZohoEmulator) -> dict[str, str]:
    return {
        **emulator_credentials(),
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": url,
        "ZOHO_ACCOUNTS_URL": emulator.accounts_url,
        "ZOHO_API_BASE_URL": emulator.api_base_url,
        "ZOHO_RATE_LIMIT_REQUESTS": str(BUDGET_REQUESTS),
        "ZOHO_RATE_LIMIT_WINDOW_SECONDS": str(BUDGET_WINDOW_SECONDS),
        "ZOHO_DAILY_LIMIT": "0",
        "ZOHO_SYNC_ON_SAVE": "true",
        # A run paces itself under the budget; it must never give up waiting for it.
        "ZOHO_SCHEDULE_MAX_WAIT_SECONDS": "3600",
        "Q_WORKERS": "2",
        "LOG_LEVEL": "ERROR",
    }


def prepare_database(*, flush: bool) -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if flush:
        call_command("flush", interactive=False, verbosity=0)


def create_in_step(emulator: ZohoEmulator, count: int) -> None:
    """`count` customers Zoho holds, linked here and in step; checked by a sync run."""
    from django.db.models import F
    from django.test import override_settings
    from django.utils import timezone
    from django_q.models import OrmQ

    from billing_sync.customer_data import (
        customer_zoho_fields,
        customer_zoho_payload,
        zoho_fields_hash,
    )
    from billing_sync.models import Customer, SyncStatus, SyncTrigger
    from billing_sync.run.runs import customers_sync
    from billing_sync.zoho.config import zoho_config

    label = zoho_config().account_number_field
    now = timezone.now()
    with override_settings(ZOHO_SYNC_ON_SAVE=False):
        for first in range(0, count, CREATE_CHUNK):
            chunk = []
            for n in range(first, min(first + CREATE_CHUNK, count)):
                customer = Customer(
                    email=f"storm{n:06d}@example.co.za",
                    account_number=f"CT-STORM-{n:06d}",
                    first_name="Storm",
                    last_name=f"Customer {n}",
                    phone=f"+27 21 {n:07d}",
                    zoho_sync_status=SyncStatus.SYNCED,
                    zoho_last_synced_at=now,
                )
                record = emulator.add_customer(
                    **customer_zoho_payload(customer, account_field=label)
                )
                customer.zoho_billing_customer_id = record["customer_id"]
                fields = customer_zoho_fields(customer, account_field=label)
                customer.zoho_synced_hash = zoho_fields_hash(fields)
                chunk.append(customer)
            Customer.objects.bulk_create(chunk)
        # bulk_create stamps updated_at itself: Zoho holds the data of the rows as written.
        Customer.objects.update(zoho_synced_data_at=F("updated_at"))
        report = customers_sync(trigger=SyncTrigger.COMMAND)
    if report.selected_count:
        raise SystemExit(f"set-up: a sync run selected {report.selected_count}, not 0")
    OrmQ.objects.all().delete()


def wait_for_worker() -> None:
    from billing_sync.operations.health import alive_clusters

    deadline = time.monotonic() + WORKER_START_SECONDS
    while not alive_clusters():
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start in {WORKER_START_SECONDS:g} s")
        time.sleep(0.2)


def storm(emulator: ZohoEmulator, edits: int) -> None:
    """The one update(), then Zoho polled until it holds every edit; figures and verdicts."""
    from django.conf import settings
    from django_q.models import Failure, OrmQ, Success

    from billing_sync.models import Customer

    floor = edits * BUDGET_WINDOW_SECONDS / BUDGET_REQUESTS
    requests_before = len(emulator.request_log)
    started_at = time.time()
    started = time.monotonic()
    edited = Customer.objects.update(phone=NEW_PHONE)
    update_seconds = time.monotonic() - started
    queued = OrmQ.objects.count()  # a task leaves the table once done: the first takes ~20 s
    in_zoho, last_seen = wait_for_zoho(emulator, edits, started, deadline=max(120.0, 3 * floor))
    runs, synced, failed = edit_runs(edits)
    log = emulator.request_log[requests_before:]
    puts = sum(record.method == "PUT" for record in log)
    last_put = max((r.time for r in log if r.method == "PUT" and r.status == 200), default=None)
    too_many = sum(record.status == 429 for record in log)
    blocks = count_blocks(log, emulator.config.block_seconds)
    batch = settings.ZOHO_SCHEDULE_BATCH_SIZE
    most_runs = math.ceil(edits / batch)
    print(f"  update(): {update_seconds:.3f} s for {edited} rows, the queueing included")
    print(
        f"  tasks queued: {queued} (django-q tasks done: {Success.objects.count()}, "
        f"failed: {Failure.objects.count()})"
    )
    print(f"  runs: {runs} (batches of {batch}), {synced} customers synced, {failed} failed")
    print(f"  in Zoho: {in_zoho}/{edits} new phones")
    if last_seen is not None:
        put = "n/a" if last_put is None else f"{last_put - started_at:.1f} s"
        print(f"  last edit in Zoho: {last_seen:.1f} s (the last PUT arrived at {put})")
    ratio = None if last_seen is None else last_seen / floor
    shown_ratio = "n/a" if ratio is None else f"{ratio:.3f}x"
    print(f"  budget floor: {floor:.1f} s; last edit / floor: {shown_ratio}")
    print(f"  requests per edit: {len(log) / edits:.3f} ({puts} PUTs, {len(log)} requests)")
    print(f"  429s: {too_many}, blocks: {blocks}")
    judge(f"update() under {UPDATE_SECONDS:g} s", f"{update_seconds:.3f} s", update_seconds < 1)
    judge(f"runs <= ceil({edits} / {batch}) = {most_runs}", str(runs), runs <= most_runs)
    per_edit = len(log) / edits
    judge(f"requests per edit <= {REQUESTS_PER_EDIT}", f"{per_edit:.3f}", per_edit <= 1.05)
    judge("0 blocks", f"{blocks} blocks, {too_many} 429s", blocks == 0 and too_many == 0)
    judge(
        f"last edit in Zoho within {FLOOR_RATIO}x the budget floor ({floor:.1f} s)",
        "never" if ratio is None else f"{last_seen:.1f} s, {ratio:.3f}x",
        ratio is not None and ratio <= FLOOR_RATIO,
    )


def wait_for_zoho(
    emulator: ZohoEmulator, edits: int, started: float, *, deadline: float
) -> tuple[int, float | None]:
    """Poll Zoho until every customer holds the new phone: (how many do, seconds since
    `started` when all did, None if never within `deadline`)."""
    while True:
        held = sum(record["phone"] == NEW_PHONE for record in emulator.customers())
        elapsed = time.monotonic() - started
        if held == edits:
            return held, elapsed
        if elapsed > deadline:
            return held, None
        time.sleep(POLL_SECONDS)


def edit_runs(edits: int) -> tuple[int, int, int]:
    """The SyncRuns the edit made, once they have finished: (runs, synced, failed)."""
    from django.db.models import Sum
    from django_q.models import OrmQ

    from billing_sync.models import SyncRun, SyncTrigger

    runs = SyncRun.objects.filter(trigger=SyncTrigger.EDIT)
    deadline = time.monotonic() + RUNS_FINISH_SECONDS
    while OrmQ.objects.exists() or runs.filter(finished_at__isnull=True).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    counts = runs.aggregate(synced=Sum("synced_count"), failed=Sum("failed_count"))
    return runs.count(), counts["synced"] or 0, counts["failed"] or 0


def count_blocks(log: list[RequestRecord], block_seconds: float) -> int:
    """Org blocks: a 429 arriving after the last block (started by an earlier 429) ended."""
    blocks, block_ends = 0, float("-inf")
    for arrival in sorted(record.time for record in log if record.status == 429):
        if arrival >= block_ends:
            blocks, block_ends = blocks + 1, arrival + block_seconds
    return blocks


if __name__ == "__main__":
    sys.exit(main())
