"""Secrets stay secret; production settings are strict; bad settings say what is wrong."""

from __future__ import annotations

import io
import logging
import os
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing_sync.models import Customer, SyncAttempt, SyncRun, ZohoApiState
from tests.processes import run_manage

STRONG_KEY = "k3y-" + "".join(chr(65 + (i * 7) % 26) for i in range(60))


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DJANGO_"))}
    return run_manage(*args, env={**base, **env})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ZOHO_TIMEOUT_SECONDS", "abc", "ZOHO_TIMEOUT_SECONDS='abc' is not a number."),
        ("ZOHO_MAX_ATTEMPTS", "3.5", "ZOHO_MAX_ATTEMPTS='3.5' is not a whole number."),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG='maybe' is not one of: true, false"),
        ("DATABASE_URL", "postgres//no-scheme:s3cret@x", "DATABASE_URL is not a database URL"),
    ],
)
def test_a_bad_setting_stops_start_up_with_a_clear_message(variable, value, message):
    result = manage("zoho_backfill_customers", "--dry-run", **{variable: value})

    assert result.returncode == 2
    assert f"Configuration error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr


def test_production_needs_a_secret_key_and_says_so():
    result = manage("check", DJANGO_ENV="production")

    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY must be set when DJANGO_ENV=production" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_deploy_is_clean_in_production():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_ALLOWED_HOSTS="billing.circletel.co.za",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db
def test_secrets_never_reach_logs_output_audit_or_errors(emulator, make_customer, settings, caplog):
    caplog.set_level(logging.DEBUG)
    for n in range(4):
        make_customer(email="not-an-email" if n == 0 else f"s{n}@example.co.za")
    emulator.inject("error", method="POST", times=1)
    emulator.inject("lose_response", method="POST", times=1)
    out, err = io.StringIO(), io.StringIO()
    errors: list[str] = []

    def run(command: str) -> None:
        try:
            call_command(command, stdout=out, stderr=err)
        except CommandError as exc:
            errors.append(str(exc))

    run("zoho_backfill_customers")  # a bad email, a 500, a lost answer
    tokens = [ZohoApiState.objects.get().access_token]
    emulator.revoke_access_tokens()
    run("zoho_verify")  # refreshes once
    tokens.append(ZohoApiState.objects.get().access_token)
    settings.ZOHO_CLIENT_SECRET = "a-wrong-secret-value"
    emulator.revoke_access_tokens()
    for command in ("zoho_retry_failed", "zoho_check_credentials", "zoho_verify"):
        run(command)

    recorded = [
        caplog.text,
        out.getvalue(),
        err.getvalue(),
        *errors,
        *SyncAttempt.objects.values_list("error_message", flat=True),
        *SyncRun.objects.values_list("stop_reason", flat=True),
        *Customer.objects.values_list("zoho_last_error", flat=True),
    ]
    text = "\n".join(recorded)
    assert "Zoho token refresh failed: ZOHO_CLIENT_SECRET is wrong" in text  # it did fail
    secrets = [
        *tokens,
        settings.ZOHO_REFRESH_TOKEN,
        "a-wrong-secret-value",
        "emulator-client-secret",
    ]
    for secret in secrets:
        assert secret
        assert secret not in text
