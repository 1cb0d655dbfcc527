"""Edit-to-Zoho latency: how long a saved edit takes to reach Zoho with a worker running.

    .venv/bin/python bench/latency.py [--edits 200] [--brokers orm redis] [--database-url URL]

For each broker (the database: ORM; Redis at 127.0.0.1:6379, database 5, which is flushed), in
a process of its own: a fresh database (SQLite in a temp folder unless --database-url; that
database is FLUSHED), an emulator in this process with a budget that never binds, and a real
`manage.py qcluster` (Q_WORKERS=2) with ZOHO_SYNC_ON_SAVE on. Ten customers are created (their
saves queue their creates) and synced by the worker; then --edits edits are saved one after
another, each a new phone number on the next customer, and timed from the moment save()
returns (the transaction committed, the task queued) until Zoho holds the new number. Prints
median, p95 and max per broker; exits 1 when an edit takes longer than 30 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchlib import (  # noqa: E402
    emulator_credentials,
    ensure_database,
    start_worker,
    stop_worker,
)

from zoho_emulator import EmulatorConfig, ZohoEmulator  # noqa: E402 - needs the project on sys.path

CUSTOMERS = 10
EDIT_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.002
REDIS_URL = "redis://127.0.0.1:6379/5"
UNLIMITED = 10**6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--brokers", nargs="+", choices=("orm", "redis"), default=["orm", "redis"])
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp folder.")
    parser.add_argument("--one", choices=("orm", "redis"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.one:
        return measure(args.one, args.edits, args.database_url)
    failed = 0
    for broker in args.brokers:
        command = [sys.executable, __file__, "--one", broker, "--edits", str(args.edits)]
        if args.database_url:
            command += ["--database-url", args.database_url]
        failed |= subprocess.run(command, check=False).returncode
    return failed


def measure(broker: str, edits: int, database_url: str | None) -> int:
    folder = tempfile.mkdtemp(prefix="billing_sync-latency-")
    url = database_url or f"sqlite:///{folder}/latency.sqlite3"
    emulator = ZohoEmulator(
        EmulatorConfig(rate_limit_requests=UNLIMITED, rate_limit_window_seconds=1)
    ).start(port=0)
    ensure_database(url)
    env = environment(url, emulator, broker)
    os.environ.update(env)
    import django

    django.setup()
    logging.getLogger("django-q").setLevel(logging.WARNING)  # not a line per queued task
    prepare_database(broker, flush=database_url is not None)
    cluster = start_worker(env)
    try:
        customers = create_customers()
        latencies = [time_edit(emulator, customers[n % CUSTOMERS], n) for n in range(edits)]
    finally:
        stop_worker(cluster)
        emulator.stop()
    report(broker, latencies)
    return int(max(latencies) >= EDIT_TIMEOUT_SECONDS)


def environment(url: str, emulator: ZohoEmulator, broker: str) -> dict[str, str]:
    env = {
        **emulator_credentials(),
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": url,
        "ZOHO_ACCOUNTS_URL": emulator.accounts_url,
        "ZOHO_API_BASE_URL": emulator.api_base_url,
        "ZOHO_RATE_LIMIT_REQUESTS": str(UNLIMITED),
        "ZOHO_RATE_LIMIT_WINDOW_SECONDS": "1",
        "ZOHO_DAILY_LIMIT": "0",
        "ZOHO_SYNC_ON_SAVE": "true",
        "Q_WORKERS": "2",
        "LOG_LEVEL": "ERROR",
    }
    env.pop("REDIS_URL", None)
    if broker == "redis":
        env["REDIS_URL"] = REDIS_URL
    else:
        os.environ.pop("REDIS_URL", None)
        os.environ.pop("Q_BROKER_URL", None)
    return env


def prepare_database(broker: str, *, flush: bool) -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if flush:
        call_command("flush", interactive=False, verbosity=0)
    if broker == "redis":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()


def create_customers() -> list:
    """Ten customers, created in Zoho by the worker through the tasks their saves queued."""
    from billing_sync.models import Customer, SyncStatus

    customers = [
        Customer.objects.create(
            email=f"latency{n}@example.co.za",
            account_number=f"CT-LAT-{n:05d}",
            first_name="Latency",
            last_name=f"Customer {n}",
        )
        for n in range(CUSTOMERS)
    ]
    deadline = time.monotonic() + 120
    while Customer.objects.exclude(zoho_sync_status=SyncStatus.SYNCED).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not create the customers in 120 s")
        time.sleep(0.1)
    for customer in customers:
        customer.refresh_from_db()
    return customers


def time_edit(emulator: ZohoEmulator, customer, n: int) -> float:
    """Save a new phone number; seconds until Zoho holds it."""
    phone = f"+27 82 {n:07d}"
    customer.phone = phone
    customer.save()
    started = time.monotonic()
    zoho_id = customer.zoho_billing_customer_id
    while time.monotonic() - started < EDIT_TIMEOUT_SECONDS:
        if any(r["customer_id"] == zoho_id and r["phone"] == phone for r in emulator.customers()):
            return time.monotonic() - started
        time.sleep(POLL_SECONDS)
    return EDIT_TIMEOUT_SECONDS


def report(broker: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"{broker} broker: {len(ordered)} edits, median {statistics.median(ordered):.3f} s, "
        f"p95 {p95:.3f} s, max {ordered[-1]:.3f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
