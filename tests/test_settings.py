"""Settings come from the environment, then .env.local, then .env; production is strict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.processes import PROJECT, run_python

PROBE = (
    "import json; from circletel import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default'], 'debug': s.DEBUG, "
    "'client': s.ZOHO_CLIENT_ID, 'org': s.ZOHO_ORGANIZATION_ID, 'key': s.SECRET_KEY}))"
)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The settings package alone in a folder of its own, so .env files can be written there."""
    shutil.copytree(PROJECT / "circletel", tmp_path / "circletel")
    return tmp_path


def load_settings(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DJANGO_"))}
    clean.pop("DATABASE_URL", None)
    return run_python(
        "-c", PROBE, env={**clean, "PYTHONPATH": str(folder), **env}, cwd=folder, timeout=60
    )


def test_defaults_to_sqlite_file_with_wal_and_busy_timeout(project_copy):
    result = load_settings(project_copy)

    db = json.loads(result.stdout)["db"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(project_copy / "db.sqlite3")
    assert db["OPTIONS"]["timeout"] >= 30
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]


def test_database_url_selects_postgresql(project_copy):
    result = load_settings(project_copy, DATABASE_URL="postgres://postgres@127.0.0.1:5432/circle")

    db = json.loads(result.stdout)["db"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["HOST"], db["PORT"]) == ("circle", "127.0.0.1", 5432)


def test_environment_beats_env_local_beats_env(project_copy):
    (project_copy / ".env").write_text("ZOHO_CLIENT_ID=from-env\nZOHO_ORGANIZATION_ID=org-env\n")
    (project_copy / ".env.local").write_text("ZOHO_CLIENT_ID=from-env-local\n")

    from_files = json.loads(load_settings(project_copy).stdout)
    from_environment = json.loads(load_settings(project_copy, ZOHO_CLIENT_ID="from-shell").stdout)

    assert (from_files["client"], from_files["org"]) == ("from-env-local", "org-env")
    assert from_environment["client"] == "from-shell"


def test_production_refuses_to_start_without_a_secret_key(project_copy):
    result = load_settings(project_copy, DJANGO_ENV="production")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_turns_debug_off(project_copy):
    result = load_settings(project_copy, DJANGO_ENV="production", DJANGO_SECRET_KEY="k" * 50)

    loaded = json.loads(result.stdout)
    assert loaded["debug"] is False
    assert loaded["key"] == "k" * 50
