"""Backfill benchmark: how fast, how frugal and how polite `zoho_backfill_customers` is.

    .venv/bin/python bench/backfill.py [--customers 1000] [--budget 20] [--window 4]
        [--database-url URL] [--skip-old-policy] [--local-only] [--memory [N ...]]

Every phase starts a fresh emulator and runs the backfill via call_command (its stdout and
stderr go to /dev/null), on a temporary SQLite file unless --database-url is given (that
database is FLUSHED; a missing PostgreSQL database is created). DJANGO_DEBUG is off, as in
production; ZOHO_DAILY_LIMIT is 0 (off), as the emulator has no daily cap. Phases 1 and 3 run
the emulator in a thread of this process; the local cost and memory runs (2 and 4) run it in
its own process (`manage.py zoho_emulator`), as Zoho is not in our process: its memory and CPU
are not ours, and it does not share our GIL.

1. Paced run: the emulator allows --budget requests per --window seconds (a breach blocks the
   org for 30 s) and our ZOHO_RATE_LIMIT_* settings say the same. N customers, one backfill:
     requests per customer  API requests the emulator saw / N (1 + N/200 list pages is ideal)
     budget utilisation     ((k-1)//R)*W / (t_last - t_first), k = requests, R = budget,
                            W = window, t = arrival times at the emulator. Under a sliding
                            window request i (from 0) can go no earlier than t_first +
                            (i//R)*W, so the numerator is the shortest span k requests can
                            take; 100% = as fast as the budget allows (n/a when k <= R)
     429s                   answers with status 429 (should be 0)
     blocks                 org blocks: a 429 arriving after the last block (started by an
                            earlier 429, 30 s long) had ended starts a new one
     wall time              the backfill call only
   Then the backfill runs again over the synced table: `requests for a synced table` must be
   0, with no new access token.
2. Local cost: a flushed database, a fresh emulator in its own process and no budget (10**9
   both sides): N / wall time of the backfill = what the database, Django, HTTP and JSON cost
   per customer; `requests` is the emulator's request count (read from /__emulator__/state as
   a stream, so its customers never enter our memory). Then `peak RSS` of this process
   (ru_maxrss, KiB), which includes all setup before it but not the emulator. Then
   `zoho_sync_customers` over the synced, unchanged table: requests (must be 0) and wall time
   (must stay well under 2 s at 100,000 customers).
3. Old policy (not with --skip-old-policy; it never touches the database): per customer a
   search (GET /customers?email=), a create (POST /customers), then a fixed 2 s * window/60
   wait, with `requests`, against a fresh emulator with the same budget. On a 429 it waits
   Retry-After and goes on with the next customer, which counts as failed.
   speed-up = old wall time / paced wall time, for the same N.
4. --memory [N ...]: the local-cost run alone for N customers (default 10,000 and 100,000),
   each in a clean subprocess (`--rss-only N`: customers created in batches, the emulator in
   a process of its own, peak RSS printed), and the ratio last / first of their peak RSS
   (1.0 = memory does not grow).
--local-only skips phases 1 and 3. At the end, every figure measured is printed against its
target from issue 6 ("met" / "NOT MET"); the exit code is 1 when one is not met.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import requests

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchlib import (  # noqa: E402
    emulator_credentials,
    ensure_database,
    judge,
    print_verdicts,
)

from zoho_emulator import (  # noqa: E402 - needs the project on sys.path
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
    EmulatorConfig,
    RequestRecord,
    ZohoEmulator,
)
from zoho_emulator.emulator import API_PREFIX  # noqa: E402

BLOCK_SECONDS = 30.0
UNCHANGED_SYNC_SECONDS = 2.0  # DECISIONS: well under 2 s of local work for 100,000 customers
UNLIMITED = 10**9
BATCH_SIZE = 1000
OLD_WAIT_SECONDS = 2.0  # per customer, against Zoho's 60 s window
OLD_PROGRESS_EVERY = 100
MEMORY_SIZES = (10_000, 100_000)
TIMEOUT_SECONDS = 5.0
EMULATOR_HOST = "127.0.0.1"
EMULATOR_START_SECONDS = 15.0
EMULATOR_STOP_SECONDS = 5.0
STATE_PATH = "/__emulator__/state"
STATE_TIMEOUT_SECONDS = 60.0  # the state holds every customer: slow to build at 100k
REQUEST_COUNT = re.compile(rb'"request_count":\s*(\d+)')
STATE_CHUNK_BYTES = 64 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=20, help="Requests per window.")
    parser.add_argument("--window", type=float, default=4.0, help="Seconds.")
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp folder.")
    parser.add_argument("--skip-old-policy", action="store_true")
    parser.add_argument("--local-only", action="store_true", help="Only the local cost.")
    parser.add_argument(
        "--memory", nargs="*", type=int, metavar="N", help="Peak RSS at N customers (10k, 100k)."
    )
    parser.add_argument("--rss-only", type=int, default=None, metavar="N", help=argparse.SUPPRESS)
    return parser.parse_args()


def setup_django(database_url: str) -> None:
    """Credentials and the database from the environment; emulator URLs come per phase."""
    ensure_database(database_url)
    os.environ.update(
        {
            **emulator_credentials(),
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": database_url,
            "ZOHO_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            "ZOHO_DAILY_LIMIT": "0",  # the emulator has no daily cap either
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "ERROR"),
        }
    )
    import django

    django.setup()


@contextmanager
def emulator(budget: int, window: float, *, paced: bool = True) -> Iterator[ZohoEmulator]:
    """A fresh emulator with this budget; `paced` points our settings at it, same budget."""
    config = EmulatorConfig(
        rate_limit_requests=budget, rate_limit_window_seconds=window, block_seconds=BLOCK_SECONDS
    )
    emu = ZohoEmulator(config).start(port=0)
    try:
        if not paced:
            yield emu
            return
        from django.test import override_settings

        with override_settings(
            ZOHO_ACCOUNTS_URL=emu.accounts_url,
            ZOHO_API_BASE_URL=emu.api_base_url,
            ZOHO_RATE_LIMIT_REQUESTS=budget,
            ZOHO_RATE_LIMIT_WINDOW_SECONDS=window,
        ):
            yield emu
    finally:
        emu.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((EMULATOR_HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def emulator_process(budget: int, window: float) -> Iterator[str]:
    """`manage.py zoho_emulator` in its own process with this budget, our settings pointed at
    it (same budget); yields its base URL."""
    port = free_port()
    command = [sys.executable, str(PROJECT / "manage.py"), "zoho_emulator"]
    command += ["--host", EMULATOR_HOST, "--port", str(port)]
    command += ["--rate-limit-requests", str(budget), "--rate-limit-window", f"{window:g}"]
    process = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.DEVNULL)
    url = f"http://{EMULATOR_HOST}:{port}"
    try:
        wait_until_answering(process, url)
        from django.test import override_settings

        with override_settings(
            ZOHO_ACCOUNTS_URL=url,
            ZOHO_API_BASE_URL=url + API_PREFIX,
            ZOHO_RATE_LIMIT_REQUESTS=budget,
            ZOHO_RATE_LIMIT_WINDOW_SECONDS=window,
        ):
            yield url
    finally:
        stop_process(process)


def wait_until_answering(process: subprocess.Popen[bytes], url: str) -> None:
    """Poll the emulator's state endpoint until it answers 200 (at most EMULATOR_START_SECONDS)."""
    deadline = time.monotonic() + EMULATOR_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"zoho_emulator exited with status {process.returncode}")
        try:
            if requests.get(url + STATE_PATH, timeout=1.0).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"zoho_emulator did not answer at {url} in {EMULATOR_START_SECONDS:g} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=EMULATOR_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def emulator_request_count(url: str) -> int | None:
    """API requests the emulator saw, from its state read as a stream in small chunks: the state
    lists every customer, which must not land in our memory. None if the count is missing."""
    tail = b""
    with requests.get(url + STATE_PATH, stream=True, timeout=STATE_TIMEOUT_SECONDS) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_content(chunk_size=STATE_CHUNK_BYTES):
            buffer = tail + chunk
            found = REQUEST_COUNT.search(buffer)
            if found and found.end() < len(buffer):  # digits not cut off by the chunk's end
                return int(found.group(1))
            tail = buffer[-64:]
    return None


def customer_fields(n: int) -> dict[str, str]:
    return {
        "email": f"customer{n:06d}@backfill.test",
        "account_number": f"BENCH-{n:06d}",
        "first_name": "Bench",
        "last_name": f"Customer {n}",
    }


def fresh_customers(count: int) -> None:
    """Migrate, flush, and create `count` customers in batches (never all in memory)."""
    from django.core.management import call_command

    from billing_sync.models import Customer

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    rows = (Customer(**customer_fields(n)) for n in range(1, count + 1))
    while batch := list(islice(rows, BATCH_SIZE)):
        Customer.objects.bulk_create(batch)


def timed_backfill(command: str = "zoho_backfill_customers") -> float:
    """Run the backfill command (or `command`); return its wall time."""
    from django.core.management import CommandError, call_command

    with open(os.devnull, "w", encoding="utf-8") as sink:  # a buffer would grow with N
        started = time.monotonic()
        try:
            call_command(command, stdout=sink, stderr=sink)
        except CommandError as exc:
            print(f"  {command}: {exc}")
        return time.monotonic() - started


def synced_count() -> int:
    from billing_sync.models import Customer, SyncStatus

    return Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).count()


def utilisation(times: list[float], budget: int, window: float) -> float | None:
    """None when the requests fit in one window (nothing to pace)."""
    span = max(times) - min(times) if times else 0.0
    if len(times) <= budget or span <= 0:
        return None
    return (len(times) - 1) // budget * window / span


def count_blocks(log: list[RequestRecord]) -> int:
    blocks, block_ends = 0, float("-inf")
    for arrival in sorted(record.time for record in log if record.status == 429):
        if arrival >= block_ends:
            blocks, block_ends = blocks + 1, arrival + BLOCK_SECONDS
    return blocks


def paced_run(count: int, budget: int, window: float) -> float:
    fresh_customers(count)
    with emulator(budget, window) as emu:
        wall = timed_backfill()
        log, tokens = emu.request_log, emu.token_refresh_count
        timed_backfill()
        again = len(emu.request_log) - len(log)
        new_tokens = emu.token_refresh_count - tokens
    used = utilisation([r.time for r in log], budget, window)
    blocks, synced, per_customer = count_blocks(log), synced_count(), len(log) / count
    print(f"paced run: {count} customers, budget {budget} per {window:g} s")
    print(f"  synced: {synced}/{count}")
    print(f"  requests: {len(log)}")
    print(f"  requests per customer: {per_customer:.3f}")
    print(f"  budget utilisation: {'n/a' if used is None else f'{used:.1%}'}")
    print(f"  429s: {sum(r.status == 429 for r in log)}")
    print(f"  blocks: {blocks}")
    print(f"  wall time: {wall:.1f} s")
    print(f"  requests for a synced table: {again} (new tokens: {new_tokens})")
    judge("every customer synced", f"{synced}/{count}", synced == count)
    judge("requests per new customer <= 1.02", f"{per_customer:.3f}", per_customer <= 1.02)
    if used is not None:
        figure = f"{used:.1%}, {blocks} blocks"
        judge("budget utilisation >= 95% with 0 blocks", figure, used >= 0.95 and not blocks)
    figure = f"{again} (new tokens: {new_tokens})"
    judge("requests for a synced table = 0", figure, again == 0 and new_tokens == 0)
    return wall


def local_cost(count: int) -> None:
    fresh_customers(count)
    with emulator_process(UNLIMITED, 60.0) as url:
        wall = timed_backfill()
        requests_seen = emulator_request_count(url)
        unchanged_wall = timed_backfill("zoho_sync_customers")
        unchanged_requests = (emulator_request_count(url) or 0) - (requests_seen or 0)
    synced, rate = synced_count(), count / wall
    print(f"local cost: {rate:.0f} customers/s ({count} in {wall:.2f} s)")
    seen = "n/a" if requests_seen is None else requests_seen
    print(f"  synced: {synced}/{count}, requests: {seen}")
    print(f"  sync of the unchanged table: {unchanged_requests} requests, {unchanged_wall:.2f} s")
    judge("local cost >= 300 customers/s", f"{rate:.0f}/s", rate >= 300 and synced == count)
    figure = f"{unchanged_requests} requests, {unchanged_wall:.2f} s for {count} customers"
    met = unchanged_requests == 0 and unchanged_wall < UNCHANGED_SYNC_SECONDS
    judge(f"sync of an unchanged table: 0 requests, < {UNCHANGED_SYNC_SECONDS:g} s", figure, met)


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def old_policy(count: int, budget: int, window: float) -> float:
    with emulator(budget, window, paced=False) as emu, requests.Session() as session:
        form = {
            "grant_type": "refresh_token",
            "client_id": EMULATOR_CLIENT_ID,
            "client_secret": EMULATOR_CLIENT_SECRET,
            "refresh_token": EMULATOR_REFRESH_TOKEN,
        }
        token_answer = session.post(f"{emu.url}/oauth/v2/token", data=form, timeout=5)
        session.headers["Authorization"] = f"Zoho-oauthtoken {token_answer.json()['access_token']}"
        session.headers["X-com-zoho-subscriptions-organizationid"] = EMULATOR_ORGANIZATION_ID
        url, pause, failed = f"{emu.api_base_url}/customers", OLD_WAIT_SECONDS * window / 60, 0
        started = time.monotonic()
        for n in range(1, count + 1):
            fields = customer_fields(n)
            answer = session.get(url, params={"email": fields["email"]}, timeout=TIMEOUT_SECONDS)
            if answer.status_code == 200 and not answer.json()["customers"]:
                answer = session.post(url, json=old_body(fields), timeout=TIMEOUT_SECONDS)
            if answer.status_code >= 400:
                failed += 1
            if answer.status_code == 429:
                time.sleep(float(answer.headers.get("Retry-After", BLOCK_SECONDS)))
            time.sleep(pause)
            if n % OLD_PROGRESS_EVERY == 0:
                elapsed = time.monotonic() - started
                print(f"  old policy: {n} customers, {failed} failed, {elapsed:.0f} s", flush=True)
        wall = time.monotonic() - started
        log = emu.request_log
    print(f"old policy: {count} customers, search + create + {pause:.3f} s wait each")
    print(f"  created: {len(emu.customers())}/{count}, failed customers: {failed}")
    print(f"  requests: {len(log)}, 429s: {sum(r.status == 429 for r in log)}")
    print(f"  blocks: {count_blocks(log)}")
    print(f"  wall time: {wall:.1f} s")
    return wall


def old_body(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "display_name": f"{fields['first_name']} {fields['last_name']}",
        "email": fields["email"],
        "first_name": fields["first_name"],
        "last_name": fields["last_name"],
        "custom_fields": [{"label": "Account Number", "value": fields["account_number"]}],
    }


def memory_runs(sizes: list[int], database_url: str | None) -> None:
    """Peak RSS of the local-cost run alone, each size in a clean subprocess."""
    peaks = []
    for size in sizes:
        command = [sys.executable, __file__, "--rss-only", str(size)]
        if database_url:
            command += ["--database-url", database_url]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        print(f"memory, {size} customers (subprocess):")
        print("\n".join(f"  {line}" for line in output.splitlines()))
        found = re.search(r"peak RSS: (\d+) KiB", output)
        peaks.append(int(found.group(1)) if found else 0)
    ratio = peaks[-1] / peaks[0]
    print(f"peak RSS ratio {sizes[-1]} / {sizes[0]}: {ratio:.2f}")
    judge(f"peak RSS at {sizes[-1]} within 20% of {sizes[0]}", f"{ratio:.2f}", ratio <= 1.2)


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="backfill-") as folder:
        try:
            setup_django(args.database_url or f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
            if args.rss_only is not None:
                local_cost(args.rss_only)
                print(f"peak RSS: {peak_rss_kib()} KiB")
                return 0
            if not args.local_only:
                paced_wall = paced_run(args.customers, args.budget, args.window)
            local_cost(args.customers)
            print(f"peak RSS: {peak_rss_kib()} KiB (this process, setup included)")
            if not args.local_only and not args.skip_old_policy:
                old_wall = old_policy(args.customers, args.budget, args.window)
                print(f"speed-up: {old_wall / paced_wall:.1f}x")
            if args.memory is not None:
                memory_runs(args.memory or list(MEMORY_SIZES), args.database_url)
            return 0 if print_verdicts() else 1
        finally:
            if "django.db" in sys.modules:  # close SQLite before its folder goes
                from django.db import connections

                connections.close_all()


if __name__ == "__main__":
    sys.exit(main())
