"""Soak benchmark: sync N customers into the Zoho emulator while it fails at random.

    .venv/bin/python bench/soak.py [--customers 1000] [--fault-rate 0.05] [--seed 7]
                                   [--database-url URL]

The run:
1. Starts the emulator in this process with a budget so large that only injected faults answer
   429, a 1 s block, and random faults on every API request with probability --fault-rate, of
   every kind: error (500), html_error (502), slow (1 s, past our 0.5 s timeout, so the create
   completes at Zoho after we gave up), drop, lose_response (work done, answer lost), rate_limit.
   A create that got no answer is looked for after ZOHO_CREATE_SETTLE_SECONDS (2 s here).
2. Prepares a fresh database (a temporary SQLite file unless --database-url is given; that
   database is FLUSHED) and creates N customers; every 50th shares the previous one's email.
3. Syncs like an operator: `zoho_backfill_customers`, then `zoho_retry_failed` every 2 s until
   no customer is failed (at most 10 retries), in this process via call_command (their output
   is discarded).
4. Turns faults off, lets late requests finish, and compares the database with the emulator.

Reading the report:
  synced / failed    local customers synced / not synced (failed includes needs_attention)
  duplicates         Zoho customers beyond one per account number, plus Zoho customers with no
                     or an unknown account number: each one is a customer billed twice
  lost               local customers with no Zoho id, a Zoho id Zoho does not hold, or a Zoho
                     id whose record carries another account number
  429s, requests     API answers with status 429, and API requests, seen by the emulator
  faults injected    faults that fired, by kind (a fault drawn for a refused request does not)
  rounds             backfill + retry runs; wall time covers them, not the setup
Exit code 0 only when duplicates, lost and failed are all 0.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchlib import emulator_credentials  # noqa: E402

from zoho_emulator import (  # noqa: E402 - needs the project on sys.path
    EmulatorConfig,
    ZohoEmulator,
)
from zoho_emulator.faults import RANDOM_KINDS  # noqa: E402

ACCOUNT_FIELD = "Account Number"
MAX_RETRY_ROUNDS = 10
SLOW_FAULT_SECONDS = 1.0
# Longer than a slow fault: a create we gave up on is looked for once Zoho has finished it.
CREATE_SETTLE_SECONDS = 2.0
SHARED_EMAIL_EVERY = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp folder.")
    return parser.parse_args()


def setup_django(emu: ZohoEmulator, database_url: str) -> None:
    """Point the settings at the emulator and the database, then start Django."""
    os.environ.update(
        {
            **emulator_credentials(),
            "DATABASE_URL": database_url,
            "ZOHO_ACCOUNTS_URL": emu.accounts_url,
            "ZOHO_API_BASE_URL": emu.api_base_url,
            "ZOHO_TIMEOUT_SECONDS": "0.5",
            "ZOHO_RETRY_BACKOFF_SECONDS": "0.05",
            "ZOHO_MAX_ATTEMPTS": "3",
            "ZOHO_RATE_LIMIT_REQUESTS": "100000",
            "ZOHO_RATE_LIMIT_WINDOW_SECONDS": "60",
            "ZOHO_MAX_WAIT_SECONDS": "60",
            "ZOHO_DAILY_LIMIT": "0",
            "ZOHO_CREATE_SETTLE_SECONDS": str(CREATE_SETTLE_SECONDS),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "ERROR"),
        }
    )
    import django

    django.setup()


def prepare_database(count: int) -> None:
    """Migrate, empty the tables and create `count` customers."""
    from django.core.management import call_command

    from billing_sync.models import AccountType, Customer

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    customers = []
    for n in range(1, count + 1):
        shares = n % SHARED_EMAIL_EVERY == 0
        business = n % 10 == 3
        customers.append(
            Customer(
                email=f"customer{n - 1 if shares else n:05d}@soak.test",
                account_number=f"SOAK-{n:06d}",
                first_name="Soak",
                last_name=f"Customer {n}",
                company_name=f"Soak Business {n} (Pty) Ltd" if business else "",
                account_type=AccountType.BUSINESS if business else AccountType.RESIDENTIAL,
            )
        )
    Customer.objects.bulk_create(customers, batch_size=500)


def run_sync() -> int:
    """Backfill, then retry while customers are failed; return how many runs it took."""
    from django.core.management import CommandError, call_command

    from billing_sync.models import Customer, SyncStatus

    rounds = 0
    for command in ["zoho_backfill_customers"] + ["zoho_retry_failed"] * MAX_RETRY_ROUNDS:
        if rounds and not Customer.objects.filter(zoho_sync_status=SyncStatus.FAILED).exists():
            break
        if rounds:
            time.sleep(CREATE_SETTLE_SECONDS)  # as a schedule would, later
        rounds += 1
        output = io.StringIO()
        try:
            call_command(command, stdout=output, stderr=output)
        except CommandError as exc:
            print(f"  round {rounds} ({command}): {exc}")
        else:
            print(f"  round {rounds} ({command}): ok")
    return rounds


def compare(emu: ZohoEmulator) -> tuple[dict[str, int], list[str]]:
    """Hold the database up against the emulator's customers: figures and problems found."""
    from billing_sync.models import Customer, SyncStatus
    from billing_sync.zoho.records import ZohoCustomer

    local = list(Customer.objects.values_list("account_number", "zoho_billing_customer_id"))
    statuses = Counter(Customer.objects.values_list("zoho_sync_status", flat=True))
    zoho = [ZohoCustomer.from_api(r, account_field=ACCOUNT_FIELD) for r in emu.customers()]
    known_accounts = {account for account, _ in local}
    per_account = Counter(c.account_number for c in zoho if c.account_number in known_accounts)
    strays = [c for c in zoho if c.account_number not in known_accounts]
    problems = [f"duplicate {account} x{n}" for account, n in per_account.items() if n > 1]
    problems += [f"stray Zoho {c.customer_id} ({c.account_number})" for c in strays]
    by_id = {c.customer_id: c for c in zoho}
    lost = 0
    for account, zoho_id in local:
        record = by_id.get(zoho_id) if zoho_id else None
        if record is None or record.account_number != account:
            lost += 1
            problems.append(f"lost {account} (zoho id {zoho_id})")
    figures = {
        "customers": len(local),
        "synced": statuses[SyncStatus.SYNCED],
        "failed": len(local) - statuses[SyncStatus.SYNCED],
        "needs_attention": statuses[SyncStatus.NEEDS_ATTENTION],
        "duplicates": sum(n - 1 for n in per_account.values()) + len(strays),
        "lost": lost,
    }
    return figures, problems


def main() -> int:
    args = parse_args()
    config = EmulatorConfig(rate_limit_requests=100000, block_seconds=1)
    emu = ZohoEmulator(config).start(port=0)
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        try:
            setup_django(emu, args.database_url or f"sqlite:///{Path(folder) / 'soak.sqlite3'}")
            prepare_database(args.customers)
            print(f"soak: {args.customers} customers, faults {args.fault_rate}, seed {args.seed}")
            emu.inject_random(
                args.fault_rate, RANDOM_KINDS, seed=args.seed, delay=SLOW_FAULT_SECONDS
            )
            started = time.monotonic()
            rounds = run_sync()
            wall = time.monotonic() - started
            emu.clear_faults()
            emu.wait_idle(timeout=10)
            figures, problems = compare(emu)
        finally:
            if "django.db" in sys.modules:  # close SQLite before its folder goes
                from django.db import connections

                connections.close_all()
            emu.stop()
    counts = emu.fault_counts
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(f"429s: {sum(record.status == 429 for record in emu.request_log)}")
    print(f"faults injected: { {kind: counts.get(kind, 0) for kind in RANDOM_KINDS} }")
    print(f"rounds: {rounds}")
    print(f"requests: {len(emu.request_log)}")
    print(f"wall time: {wall:.1f} s")
    for problem in problems[:20]:
        print(f"  problem: {problem}")
    return 0 if figures["duplicates"] == figures["lost"] == figures["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
