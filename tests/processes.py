"""Helpers for tests that run manage.py in processes of their own, on the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.db import connection

PROJECT = Path(__file__).resolve().parent.parent
ZOHO_SETTINGS = (
    "ZOHO_CLIENT_ID",
    "ZOHO_CLIENT_SECRET",
    "ZOHO_REFRESH_TOKEN",
    "ZOHO_ORGANIZATION_ID",
    "ZOHO_ACCOUNTS_URL",
    "ZOHO_API_BASE_URL",
)


def database_url_for_processes() -> str:
    """The test database, for a process started outside pytest."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def process_env(settings: Any, **extra: str) -> dict[str, str]:
    """The environment of a manage.py process: test database, Zoho settings of this test."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "Q_BROKER_URL")}
    env.update({name: str(getattr(settings, name)) for name in ZOHO_SETTINGS})
    env["DATABASE_URL"] = database_url_for_processes()
    env.update(extra)
    return env


def start_manage(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen:
    """Start `manage.py ARGS` in its own process group."""
    return subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        env=env,
        stdout=popen.pop("stdout", subprocess.DEVNULL),
        stderr=popen.pop("stderr", subprocess.DEVNULL),
        start_new_session=True,
        **popen,
    )


def stop_process_group(process: subprocess.Popen, grace: float = 5) -> None:
    """Stop the cluster and its worker processes, so none holds the test database open.

    qcluster's own shutdown can take minutes; a test worker past its grace is killed.
    """
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_until_synced(customers: Any = None, timeout: float = 60) -> None:
    """Wait until the given customers (default: all) are synced by other processes."""
    from billing_sync.models import Customer, SyncStatus

    pending = Customer.objects.exclude(zoho_sync_status=SyncStatus.SYNCED)
    if customers is not None:
        pending = pending.filter(pk__in=[c.pk for c in customers])
    deadline = time.monotonic() + timeout
    while pending.exists():
        if time.monotonic() > deadline:
            raise AssertionError("not every customer got synced in time")
        time.sleep(0.2)
