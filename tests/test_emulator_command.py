"""`manage.py zoho_emulator` serves a working emulator in the foreground until interrupted."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from billing_sync.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
)

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_emulator_command_serves_until_interrupted(settings):
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), "zoho_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        url = re.search(r"listening on (http://\S+)", first_line).group(1)
        settings.ZOHO_CLIENT_ID = EMULATOR_CLIENT_ID
        settings.ZOHO_CLIENT_SECRET = EMULATOR_CLIENT_SECRET
        settings.ZOHO_REFRESH_TOKEN = EMULATOR_REFRESH_TOKEN
        settings.ZOHO_ORGANIZATION_ID = EMULATOR_ORGANIZATION_ID
        settings.ZOHO_ACCOUNTS_URL = url
        settings.ZOHO_API_BASE_URL = url + "/billing/v1"

        out = io.StringIO()
        call_command("zoho_check_credentials", stdout=out)

        assert "Read customers: organization answered" in out.getvalue()
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Stopping the emulator." in rest
