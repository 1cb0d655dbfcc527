"""End to end in a real browser: filter failed customers, re-queue them, the worker syncs them.

Debian's chromium, driven by Playwright; the worker is a real `manage.py qcluster` process on
the same database; Zoho is the emulator.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections
from playwright.sync_api import expect

from billing_sync.models import SyncStatus
from tests.processes import process_env, start_manage, stop_process_group, wait_until_synced

PROJECT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian's chromium is not installed (apt-get install chromium); CI installs it",
    ),
]


@pytest.fixture
def worker(emulator, settings) -> Iterator[subprocess.Popen]:
    """`manage.py qcluster` on the test database, talking to the emulator."""
    process = start_manage("qcluster", env=process_env(settings, Q_WORKERS="1"))
    yield process
    stop_process_group(process)


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are ours.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        # With Playwright's loop running, the ORM calls in the test got connections of their
        # own context; close them here, where they are visible, so none outlives the test.
        connections.close_all()


def test_operator_requeues_failed_customers_and_sees_them_synced(
    live_server, emulator, make_customer, browser_page, worker, tmp_path
):
    User.objects.create_superuser("operator", "ops@circletel.co.za", "correct horse battery")
    failed = [
        make_customer(
            email=f"failed{n}@example.co.za",
            zoho_sync_status=SyncStatus.FAILED,
            zoho_last_error="rate limited by Zoho until 21:55:00 UTC",
        )
        for n in range(3)
    ]
    make_customer(
        email="fine@example.co.za", zoho_billing_customer_id="1", zoho_sync_status="synced"
    )
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")
    expect(page.locator("#zoho-sync-overview")).to_be_visible()
    expect(page.locator("#zoho-status-counts")).to_contain_text("Failed (will be retried): 3")

    page.goto(f"{live_server.url}/admin/billing_sync/customer/")
    page.get_by_role("link", name="Failed (will be retried)").first.click()
    page.wait_for_url("**zoho_sync_status__exact=failed**")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    page.check("#action-toggle")
    page.select_option("select[name=action]", "requeue_zoho_sync")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Queued 3 customer(s) for Zoho sync.")

    wait_until_synced(failed)
    page.goto(f"{live_server.url}/admin/billing_sync/customer/?zoho_sync_status__exact=synced")
    synced_rows = page.locator("#result_list tbody tr").all_inner_texts()
    for customer in failed:
        assert any(customer.email in row and "Synced" in row for row in synced_rows)
    assert len(emulator.customers()) == 3

    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#zoho-status-counts")).to_contain_text("Synced: 4")
    shot = tmp_path / "admin-overview.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SAVE_ADMIN_SCREENSHOT"):
        shutil.copy(shot, PROJECT / "docs" / "admin-overview.png")
