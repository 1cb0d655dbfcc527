"""The one way tests start processes: manage.py commands (on the test database, or not),
the `zoho_emulator` command, and a Python interpreter; and the way they stop them."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.db import connection

from tests.helpers import wait_for

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


def start_manage(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
    text: bool = False,
) -> subprocess.Popen:
    """Start `manage.py ARGS` in a process group of its own (`env` None: this environment).

    Output goes nowhere unless `stdout`/`stderr` say otherwise (e.g. subprocess.PIPE).
    """
    return subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        env=None if env is None else dict(env),
        stdout=stdout,
        stderr=stderr,
        text=text,
        start_new_session=True,
    )


def run_manage(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `manage.py ARGS` to its end (`input` on its stdin); its output and exit code."""
    return run_python(
        str(PROJECT / "manage.py"), *args, env=env, cwd=cwd, timeout=timeout, input=input
    )


def run_python(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python ARGS` (this interpreter) to its end; its output and exit code, as text."""
    return subprocess.run(
        [sys.executable, *args],
        env=None if env is None else dict(env),
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop_process_group(process: subprocess.Popen, grace: float = 5) -> None:
    """Stop the cluster and its worker processes, so none holds the test database open.

    qcluster's own shutdown can take minutes; a test worker past its grace is killed.
    """
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    kill_process_group(process)


def kill_process_group(process: subprocess.Popen) -> None:
    """kill -9 the process and its children, as a crash would, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def interrupt(process: subprocess.Popen, timeout: float = 10) -> str:
    """Ctrl-C for a process: SIGINT, wait for it to end, return the rest of its output."""
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=timeout)
    return rest or ""


@dataclass(frozen=True)
class EmulatorCommand:
    """A running `manage.py zoho_emulator`, its base URL and what it announced on start."""

    process: subprocess.Popen
    url: str
    announcement: str


def start_emulator_command(*options: str) -> EmulatorCommand:
    """Start `manage.py zoho_emulator --port 0 OPTIONS` and read its announcement.

    Returns once it has said where it listens ("Press Ctrl-C" ends the announcement), so it
    answers at once; stop it with `interrupt(command.process)`.
    """
    process = start_manage(
        "zoho_emulator",
        "--port",
        "0",
        *options,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    while not lines or (lines[-1] and "Press Ctrl-C" not in lines[-1]):
        lines.append(process.stdout.readline())
    announcement = "".join(lines)
    found = re.search(r"listening on (http://\S+)", announcement)
    if found is None:
        kill_process_group(process)
        raise AssertionError(f"zoho_emulator did not start: {announcement}{process.stderr.read()}")
    return EmulatorCommand(process, found.group(1), announcement)


def wait_until_synced(customers: Any = None, timeout: float = 60) -> None:
    """Wait until the given customers (default: all) are synced by other processes."""
    from billing_sync.models import Customer, SyncStatus

    pending = Customer.objects.exclude(zoho_sync_status=SyncStatus.SYNCED)
    if customers is not None:
        pending = pending.filter(pk__in=[c.pk for c in customers])
    wait_for(lambda: not pending.exists(), "every customer synced", timeout=timeout, interval=0.2)
