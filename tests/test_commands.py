"""The zoho_* commands: what an operator reads, and the exit codes scripts rely on."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing_sync.models import Customer, SyncRun, SyncStatus
from tests.commands import run

pytestmark = pytest.mark.django_db


def failed_customer(make_customer, email: str, account: str, first: str, last: str) -> Customer:
    return make_customer(
        email=email,
        account_number=account,
        first_name=first,
        last_name=last,
        zoho_sync_status=SyncStatus.FAILED,
        zoho_last_error="rate limited by Zoho until 21:55:00 UTC",
    )


@pytest.fixture
def three_failed(make_customer):
    return [
        failed_customer(make_customer, "circletelsa@gmail.com", "CT-2025-00015", "Circle", "Tel"),
        failed_customer(make_customer, "mitchadams39@gmail.com", "CT-2025-00023", "Mitch", "User"),
        failed_customer(
            make_customer, "jeffrey.de.wee@circletel.co.za", "CT-2025-00024", "Jeffrey", "De Wee"
        ),
    ]


def test_retry_failed_dry_run_lists_like_the_runbook(emulator, three_failed):
    output, code = run("zoho_retry_failed", "--dry-run")

    assert code == 0
    assert "Mode: 🔍 DRY RUN" in output
    assert (
        "Found 3 failed customer(s):\n"
        "  1. circletelsa@gmail.com - CT-2025-00015\n"
        "  2. mitchadams39@gmail.com - CT-2025-00023\n"
        "  3. jeffrey.de.wee@circletel.co.za - CT-2025-00024\n"
    ) in output
    assert "🔍 DRY RUN: Would retry these customers" in output
    assert emulator.request_log == []
    assert Customer.objects.filter(zoho_sync_status=SyncStatus.FAILED).count() == 3


def test_retry_failed_live_prints_each_customer_and_the_results(emulator, three_failed):
    output, code = run("zoho_retry_failed")

    assert code == 0
    assert "Mode: ✅ LIVE SYNC" in output
    ids = {c["email"]: c["customer_id"] for c in emulator.customers()}
    assert (
        "[1/3] Retrying: circletelsa@gmail.com\n"
        "  Account: CT-2025-00015\n"
        "  Name: Circle Tel\n"
        f"  ✅ Successfully synced: {ids['circletelsa@gmail.com']}\n"
    ) in output
    assert "[3/3] Retrying: jeffrey.de.wee@circletel.co.za" in output
    assert "Total Attempted: 3\n✅ Successfully Synced: 3\n❌ Failed: 0\n" in output
    assert re.search(r"Duration: \d+\.\d\d seconds", output)
    assert "✅ All failed customers successfully synced!" in output


def test_retry_failed_exits_non_zero_and_says_why_when_customers_stay_failed(
    emulator, three_failed, settings
):
    settings.ZOHO_MAX_ATTEMPTS = 1
    emulator.inject("error", method="POST", email="mitchadams39@gmail.com", times=None)

    output, code = run("zoho_retry_failed")

    assert code == 1
    assert "❌ Failed: Internal error (HTTP 500, code -1)" in output
    assert "Successfully Synced: 2\n❌ Failed: 1" in output


def test_ascii_markers_when_the_terminal_cannot_show_emoji(emulator, three_failed):
    terminal = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")

    output, code = run("zoho_retry_failed", stdout=terminal)

    assert code == 0
    assert "Mode: [OK] LIVE SYNC" in output
    assert "[OK] Successfully Synced: 3" in output
    assert "[FAIL] Failed: 0" in output
    assert "ğŸ" not in output


def test_nothing_to_retry_exits_zero(emulator):
    output, code = run("zoho_retry_failed")

    assert code == 0
    assert "Found 0 failed customer(s):" in output
    assert emulator.request_log == []


def test_backfill_limit_and_max_wait(emulator, make_customer):
    emulator.configure(rate_limit_requests=2, rate_limit_window_seconds=60, block_seconds=30)
    for _ in range(3):
        make_customer()

    output, code = run("zoho_backfill_customers", "--limit", "3", "--max-wait", "0")

    assert code == 1
    assert "Run stopped: rate limited by Zoho until" in output
    # The block stops the run at the second customer: the third was never attempted.
    assert "Total Attempted: 2\n✅ Successfully Synced: 1\n❌ Failed: 2" in output
    assert "Not reached (the run stopped first): 1" in output
    assert SyncRun.objects.get().trigger == "command"


def test_bad_configuration_exits_2_naming_the_setting(emulator, make_customer, settings):
    make_customer()
    settings.ZOHO_CLIENT_ID = ""
    settings.ZOHO_DATA_CENTER = "moon"

    with pytest.raises(CommandError, match="ZOHO_CLIENT_ID is not set") as caught:
        call_command("zoho_backfill_customers", stdout=io.StringIO())

    assert caught.value.returncode == 2
    assert "ZOHO_DATA_CENTER='moon'" in str(caught.value)


def test_dry_run_with_bad_configuration_fails_too(emulator, settings):
    settings.ZOHO_ORGANIZATION_ID = ""

    _, code = run("zoho_retry_failed", "--dry-run")

    assert code == 2


def test_load_demo_is_idempotent(db):
    run("zoho_load_demo")
    output, code = run("zoho_load_demo")

    assert code == 0
    assert "0 created, 15 already present" in output
    assert Customer.objects.count() == 15
    assert Customer.objects.filter(account_type="internal_test").count() == 2


def test_verify_passes_after_a_full_sync(emulator, make_customer):
    for _ in range(3):
        make_customer()
    run("zoho_backfill_customers")

    output, code = run("zoho_verify", "--deep")

    assert code == 0
    assert "  synced           | 3" in output
    assert "Zoho customers: 3" in output
    assert "Duplicate customers in Zoho: 0" in output
    assert "Account numbers missing or wrong in Zoho: 0" in output


def test_verify_names_duplicates_missing_ids_and_unknown_ids(emulator, make_customer):
    synced = make_customer(email="dup@example.co.za")
    run("zoho_backfill_customers")
    twin = emulator.add_customer(display_name="Twin", email="DUP@example.co.za")
    make_customer(email="never@example.co.za", account_number="CT-2025-55555")
    ghost = make_customer(
        zoho_billing_customer_id="6179546000000000001", zoho_sync_status=SyncStatus.SYNCED
    )

    output, code = run("zoho_verify")

    synced.refresh_from_db()
    assert code == 1
    assert f"{synced.zoho_billing_customer_id}, {twin['customer_id']}" in output
    assert "never@example.co.za - CT-2025-55555 (pending)" in output
    assert f"{ghost.account_number}: 6179546000000000001" in output


def test_verify_deep_finds_account_number_missing_in_zoho(emulator, make_customer):
    bare = emulator.add_customer(display_name="Bare", email="bare@example.co.za")
    make_customer(
        email="bare@example.co.za",
        zoho_billing_customer_id=bare["customer_id"],
        zoho_sync_status=SyncStatus.SYNCED,
    )

    output, code = run("zoho_verify", "--deep")

    assert code == 1
    assert f"Zoho customer {bare['customer_id']} carries none" in output


def test_check_credentials_passes_against_the_emulator(emulator, settings):
    output, code = run("zoho_check_credentials")

    assert code == 0
    assert "Token refresh: Zoho issued an access token" in output
    assert "Read customers: organization answered" in output
    for secret in (settings.ZOHO_CLIENT_SECRET, settings.ZOHO_REFRESH_TOKEN):
        assert secret not in output


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("ZOHO_CLIENT_SECRET", "bad-secret-123", "ZOHO_CLIENT_SECRET is wrong"),
        ("ZOHO_CLIENT_ID", "1000.OTHERDC", "check it and ZOHO_DATA_CENTER"),
        ("ZOHO_ORGANIZATION_ID", "999", "check ZOHO_ORGANIZATION_ID"),
        ("ZOHO_REFRESH_TOKEN", "", "ZOHO_REFRESH_TOKEN is not set"),
        ("ZOHO_API_BASE_URL", "ftp://zoho", "must start with http"),
    ],
)
def test_check_credentials_says_what_is_wrong(emulator, settings, setting, value, expected):
    setattr(settings, setting, value)

    output, code = run("zoho_check_credentials")

    assert code == 2
    assert expected in output
    assert "bad-secret-123" not in output


def test_check_credentials_spots_a_token_from_another_data_center(emulator, settings):
    settings.ZOHO_API_BASE_URL = ""
    settings.ZOHO_DATA_CENTER = "eu"

    output, code = run("zoho_check_credentials")

    assert code == 2
    assert "set ZOHO_DATA_CENTER to the account's data center" in output
