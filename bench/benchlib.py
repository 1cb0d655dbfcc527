"""What the benchmarks share: the emulator's credentials as settings, a database to use, and
their figures judged against their targets.

Imported by the scripts beside it (`python bench/<script>.py` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from zoho_emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
)


def emulator_credentials() -> dict[str, str]:
    """The settings that make our client log in to the emulator (public dummies)."""
    return {
        "DJANGO_SETTINGS_MODULE": "circletel.settings",
        "ZOHO_CLIENT_ID": EMULATOR_CLIENT_ID,
        "ZOHO_CLIENT_SECRET": EMULATOR_CLIENT_SECRET,
        "ZOHO_REFRESH_TOKEN": EMULATOR_REFRESH_TOKEN,
        "ZOHO_ORGANIZATION_ID": EMULATOR_ORGANIZATION_ID,
    }


def ensure_database(url: str) -> None:
    """Create a missing PostgreSQL database (SQLite creates its file itself)."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg
    from psycopg import sql

    try:
        psycopg.connect(url).close()
    except psycopg.OperationalError:
        with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parts.path[1:])))


MANAGE = Path(__file__).resolve().parent.parent / "manage.py"


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """A real `manage.py qcluster` with this environment over ours, in a process group of its
    own (stop it with `stop_worker`), its output discarded."""
    return subprocess.Popen(
        [sys.executable, str(MANAGE), "qcluster"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_worker(cluster: subprocess.Popen) -> None:
    """kill -9 the cluster and its workers, and reap it."""
    os.killpg(cluster.pid, 9)
    cluster.wait()


# (target, figure, met) of every figure judged, printed at the end.
VERDICTS: list[tuple[str, str, bool]] = []


def judge(target: str, figure: str, met: bool) -> None:
    """Note a figure against its target, for the summary at the end."""
    VERDICTS.append((target, figure, met))


def print_verdicts() -> bool:
    """Print every target with its figure; True when some were judged and all are met."""
    print("targets:")
    for target, figure, met in VERDICTS:
        print(f"  {'met' if met else 'NOT MET':8} {target}: {figure}")
    return bool(VERDICTS) and all(met for _, _, met in VERDICTS)
