"""Separate processes share one access token and one view of Zoho, as a schedule would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.processes import run_manage
from zoho_emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
)


def manage(tmp_path: Path, emulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZOHO_")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'procs.sqlite3'}",
        "ZOHO_CLIENT_ID": EMULATOR_CLIENT_ID,
        "ZOHO_CLIENT_SECRET": EMULATOR_CLIENT_SECRET,
        "ZOHO_REFRESH_TOKEN": EMULATOR_REFRESH_TOKEN,
        "ZOHO_ORGANIZATION_ID": EMULATOR_ORGANIZATION_ID,
        "ZOHO_ACCOUNTS_URL": emulator.accounts_url,
        "ZOHO_API_BASE_URL": emulator.api_base_url,
    }
    return run_manage(*args, env=env, cwd=tmp_path)


def test_commands_in_separate_processes_refresh_the_token_once(emulator, tmp_path):
    assert manage(tmp_path, emulator, "migrate", "-v", "0").returncode == 0
    assert manage(tmp_path, emulator, "zoho_load_demo").returncode == 0

    backfill = manage(tmp_path, emulator, "zoho_backfill_customers")
    verify = manage(tmp_path, emulator, "zoho_verify")

    assert backfill.returncode == 0, backfill.stderr
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "synced           | 13" in verify.stdout
    assert emulator.token_refresh_count == 1
    assert len(emulator.customers()) == 13
