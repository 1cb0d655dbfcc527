"""End to end in a real browser, on a laptop's screen: the overview leads to the failed
customers, a person re-queues them, the worker syncs them in one run; a person finds the closed
accounts and reads one's billing address; every list fits.

Debian's chromium, driven by Playwright, at 1366×768; the worker is a real `manage.py qcluster`
process on the same database; Zoho is the emulator.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Page, expect

from billing_sync.models import (
    AccountStatus,
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRun,
    SyncRunKind,
    SyncRunStatus,
    SyncStatus,
    SyncTrigger,
)
from billing_sync.operations.health import health_report
from tests.helpers import wait_for
from tests.processes import (
    process_env,
    start_manage,
    stop_process_group,
    wait_until_synced,
)

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
LAPTOP = {"width": 1366, "height": 768}
RATE_LIMITED = (
    "rate limited by Zoho until 21:55:00 UTC (HTTP 429, code 44: the organization sent more "
    "than 30 requests in a minute; Zoho blocks every request of the organization meanwhile)"
)
REFUSED_EMAIL = (
    "email: 'nomvula.dlamini-van-der-merwe@stellenbosch-wine-estates-and-vineyards.co.za ' is "
    "not a valid email address (Zoho code 3004: the field email is invalid; trailing space)"
)

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
def browser_page(monkeypatch) -> Iterator[Page]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are ours.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=LAPTOP)
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        # With Playwright's loop running, the ORM calls in the test got connections of their
        # own context; close them here, where they are visible, so none outlives the test.
        connections.close_all()


def horizontal_overflow(page: Page) -> dict[str, float]:
    """How far the page and the list's own scroller are wider than what shows (0: they fit)."""
    return page.evaluate(
        """() => {
            const results = document.querySelector('#changelist-form .results');
            const table = document.querySelector('#result_list');
            return {
                page: document.documentElement.scrollWidth - window.innerWidth,
                results: results.scrollWidth - results.clientWidth,
                table: table.getBoundingClientRect().right - window.innerWidth,
            };
        }"""
    )


# scrollWidth is a whole number of pixels, rounded up: a table 0.3 px wider than its box
# (fractional column widths) reads as 1 px of overflow, with nothing to scroll to.
ROUNDING_PX = 1


def assert_fits_the_screen(page: Page, rows: int) -> None:
    expect(page.locator("#result_list tbody tr")).to_have_count(rows)
    overflow = horizontal_overflow(page)
    assert all(excess <= ROUNDING_PX for excess in overflow.values()), overflow


def laptop_data(make_customer) -> dict[str, list[Customer]]:
    """A realistic table: long emails and names, 19-digit Zoho ids, long errors, 30 customers."""
    now = timezone.now()
    synced = [
        make_customer(
            email=f"thandeka.nomvula-van-der-merwe.{n}@stellenbosch-wine-estates.co.za",
            first_name="Thandeka Nomvula",
            last_name=f"van der Merwe-Dlamini {n}",
            zoho_billing_customer_id=f"9034000000{n:09d}",
            zoho_sync_status=SyncStatus.SYNCED,
            zoho_last_synced_at=now - timedelta(hours=n),
        )
        for n in range(20)
    ]
    failed = [
        make_customer(
            email=f"accounts.payable.department{n}@johannesburg-fibre-holdings.co.za",
            account_type="business",
            company_name=f"Johannesburg Fibre & Wireless Holdings (Pty) Ltd — branch {n}",
            zoho_sync_status=SyncStatus.FAILED,
            zoho_last_error=RATE_LIMITED,
        )
        for n in range(3)
    ]
    attention = [
        make_customer(
            email="nomvula.dlamini-van-der-merwe@stellenbosch-wine-estates-and-vineyards.co.za ",
            zoho_sync_status=SyncStatus.NEEDS_ATTENTION,
            zoho_last_error=REFUSED_EMAIL,
        )
        for _ in range(2)
    ]
    internal = [
        make_customer(email=f"qa.automation.{n}@circletel.co.za", account_type="internal_test")
        for n in range(2)
    ]
    pending = [make_customer(email=f"new.signup.{n}@gmail.com") for n in range(3)]
    runs = [
        SyncRun.objects.create(
            kind=kind,
            trigger=trigger,
            dry_run=dry_run,
            status=status,
            finished_at=now - timedelta(minutes=n),
            selected_count=13,
            synced_count=10,
            failed_count=3,
            request_count=26,
            stop_reason=RATE_LIMITED if status == SyncRunStatus.STOPPED else "",
        )
        for n, (kind, trigger, dry_run, status) in enumerate(
            [
                (SyncRunKind.SYNC, SyncTrigger.SCHEDULE, False, SyncRunStatus.STOPPED),
                (SyncRunKind.RETRY_FAILED, SyncTrigger.COMMAND, False, SyncRunStatus.COMPLETED),
                (SyncRunKind.SELECTED, SyncTrigger.ADMIN, True, SyncRunStatus.COMPLETED),
                (SyncRunKind.BACKFILL, SyncTrigger.COMMAND, False, SyncRunStatus.INTERRUPTED),
            ]
            * 3
        )
    ]
    SyncRun.objects.update(started_at=now - timedelta(hours=1))
    for customer in failed + attention:
        SyncAttempt.objects.create(
            run=runs[0],
            customer=customer,
            customer_email=customer.email,
            account_number=customer.account_number,
            outcome=AttemptOutcome.RATE_LIMITED if customer in failed else AttemptOutcome.INVALID,
            http_status=429 if customer in failed else 400,
            zoho_code=44 if customer in failed else 3004,
            error_message=customer.zoho_last_error,
        )
    for customer in synced:
        SyncAttempt.objects.create(
            run=runs[1],
            customer=customer,
            customer_email=customer.email,
            account_number=customer.account_number,
            outcome=AttemptOutcome.ADOPTED,
            http_status=200,
            zoho_code=0,
            zoho_customer_id=customer.zoho_billing_customer_id,
        )
    return {
        "synced": synced,
        "failed": failed,
        "attention": attention,
        "internal": internal,
        "pending": pending,
    }


def test_operator_follows_the_overview_to_failed_customers_and_requeues_them_in_one_run(
    live_server, emulator, make_customer, browser_page, worker, tmp_path
):
    User.objects.create_superuser("operator", "ops@circletel.co.za", "correct horse battery")
    data = laptop_data(make_customer)
    failed = data["failed"]
    listed = sum(len(customers) for customers in data.values())
    page = browser_page
    admin = f"{live_server.url}/admin/"

    page.goto(f"{admin}login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")
    expect(page.locator("#zoho-sync-overview")).to_be_visible()
    before = health_report().summary
    page.goto(admin)
    shown = page.locator("#zoho-health").inner_text().strip()
    after = health_report().summary  # the worker may have come up, a second gone by
    assert shown in (before, after)
    counts = page.locator("#zoho-status-counts")
    expect(counts).to_contain_text("Failed (will be retried): 3")
    expect(counts).to_contain_text("Needs attention (fix the data): 2")
    expect(counts).to_contain_text("2 internal_test accounts")

    counts.get_by_role("link", name="Needs attention (fix the data): 2").click()
    page.wait_for_url("**/admin/billing_sync/customer/?zoho_sync_status__exact=needs_attention")
    assert_fits_the_screen(page, rows=2)

    page.goto(admin)
    page.locator("#zoho-internal-test-count").click()
    page.wait_for_url("**/admin/billing_sync/customer/?account_type__exact=internal_test")
    expect(page.locator("#result_list tbody .sync-badge")).to_have_text(
        ["Never sent (internal test)"] * 2
    )

    page.goto(f"{admin}billing_sync/customer/")
    assert_fits_the_screen(page, rows=listed)
    internal_row = page.locator("#result_list tbody tr", has_text="qa.automation.0@")
    expect(internal_row).to_contain_text("Never sent (internal test)")
    expect(internal_row).not_to_contain_text("Pending")

    page.goto(admin)
    counts.get_by_role("link", name="Failed (will be retried): 3").click()
    page.wait_for_url("**/admin/billing_sync/customer/?zoho_sync_status__exact=failed")
    assert_fits_the_screen(page, rows=3)
    error_cell = page.locator("#result_list tbody td.field-last_error .clip").first
    expect(error_cell).to_have_attribute("title", RATE_LIMITED)
    page.check("#action-toggle")
    page.select_option("select[name=action]", "requeue_zoho_sync")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Queued 3 customer(s) for Zoho sync.")

    wait_until_synced(failed)
    by_person = SyncRun.objects.filter(trigger=SyncTrigger.ADMIN, dry_run=False)
    wait_for(
        lambda: by_person.filter(status=SyncRunStatus.COMPLETED).exists(), "the re-queue's run"
    )
    run = by_person.get()
    assert (run.kind, run.selected_count, run.synced_count) == (SyncRunKind.SELECTED, 3, 3)
    assert len(emulator.customers()) == 3
    page.goto(f"{admin}billing_sync/customer/?zoho_sync_status__exact=synced")
    synced_rows = page.locator("#result_list tbody tr").all_inner_texts()
    for customer in failed:
        assert any(customer.email in row and "Synced" in row for row in synced_rows)

    page.goto(f"{admin}billing_sync/syncrun/")
    assert_fits_the_screen(page, rows=SyncRun.objects.count())
    page.goto(f"{admin}billing_sync/syncattempt/")
    assert_fits_the_screen(page, rows=SyncAttempt.objects.count())

    page.goto(admin)
    expect(counts).to_contain_text("Synced: 23")
    expect(page.locator("#zoho-last-run")).to_contain_text("3 synced, 0 failed of 3")
    shot = tmp_path / "admin-overview.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SAVE_ADMIN_SCREENSHOT"):
        shutil.copy(shot, PROJECT / "docs" / "admin-overview.png")


def test_operator_imports_a_spreadsheet_export_after_seeing_its_preview(
    live_server, make_customer, browser_page, tmp_path
):
    User.objects.create_superuser("operator", "ops@circletel.co.za", "correct horse battery")
    make_customer(
        account_number="CT-2025-00014",
        email="accounts@karoo-farms.example",
        first_name="Anele",
        last_name="Dlamini",
        company_name="Karoo Farms",
    )
    spreadsheet = tmp_path / "circletel-customers.csv"
    spreadsheet.write_bytes(
        "\ufeffAccount_Number;Email;First_Name;Last_Name;Company_Name\r\n"
        "CT-2025-00014;accounts@karoo-farms.example;Anele;Dlamini;Karoo Farms (Pty) Ltd\r\n"
        "CT-2025-00015;circletelsa@gmail.com;Circle;Tel;\r\n"
        "CT-2025-00023;mitchadams39@gmail;Mitch;User;\r\n".encode()
    )
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/billing_sync/customer/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")

    page.click("a.import_link")
    page.set_input_files("#id_import_file", str(spreadsheet))
    page.click("input[type=submit][value=Submit]")

    expect(page.locator("#import-preview-counts")).to_contain_text(
        "3 row(s): 1 to create, 1 to update, 0 unchanged, 1 refused."
    )
    expect(page.locator("#import-refused tbody td")).to_have_text(
        ["4", "CT-2025-00023", "Email", "'mitchadams39@gmail' is not a valid email address"]
    )
    expect(page.locator("#import-rows tbody td")).to_have_text(
        [
            *("2", "CT-2025-00014", "update", "company_name"),
            *("3", "CT-2025-00015", "create"),
            "account_number, email, first_name, last_name, company_name",
        ]
    )
    assert Customer.objects.count() == 1  # nothing written before the person confirms

    page.click("input[name=confirm]")

    expect(page.locator(".messagelist .success")).to_contain_text(
        "3 row(s), 1 created, 1 updated, 0 unchanged, 1 refused"
    )
    expect(page.locator(".messagelist .warning")).to_contain_text(
        "Refused, not imported: line 4, Email: 'mitchadams39@gmail' is not a valid email address."
    )
    assert_fits_the_screen(page, rows=2)
    assert Customer.objects.get(account_number="CT-2025-00014").company_name == (
        "Karoo Farms (Pty) Ltd"
    )
    assert Customer.objects.filter(account_number="CT-2025-00015").exists()


def closed_accounts(make_customer) -> list[Customer]:
    """Closed accounts with long names, emails and errors: the widest rows the list shows."""
    return [
        make_customer(
            email="accounts.payable.department@johannesburg-fibre-holdings.co.za",
            account_type="business",
            company_name="Johannesburg Fibre & Wireless Holdings (Pty) Ltd — head office",
            account_status=AccountStatus.CLOSED,
            vat_number="4123456789",
            billing_attention="Accounts payable",
            billing_street="Unit 4, Rosebank Corner",
            billing_street2="191 Jan Smuts Avenue",
            billing_city="Johannesburg",
            billing_state="Gauteng",
            billing_zip="2196",
            billing_country="South Africa",
            zoho_billing_customer_id="9034000000900000001",
            zoho_sync_status=SyncStatus.SYNCED,
            zoho_last_synced_at=timezone.now(),
            zoho_inactive=True,
        ),
        make_customer(
            email="nomvula.dlamini-van-der-merwe@stellenbosch-wine-estates-and-vineyards.co.za ",
            account_status=AccountStatus.CLOSED,
            zoho_sync_status=SyncStatus.NEEDS_ATTENTION,
            zoho_last_error=REFUSED_EMAIL,
        ),
        make_customer(email="closed.before.zoho@gmail.com", account_status=AccountStatus.CLOSED),
    ]


def test_operator_filters_the_closed_accounts_and_reads_ones_billing_address(
    live_server, make_customer, browser_page
):
    User.objects.create_superuser("operator", "ops@circletel.co.za", "correct horse battery")
    listed = sum(len(customers) for customers in laptop_data(make_customer).values())
    closed = closed_accounts(make_customer)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/billing_sync/customer/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")
    assert_fits_the_screen(page, rows=listed + len(closed))

    by_status = page.locator('#changelist-filter details[data-filter-title="account status"]')
    by_status.get_by_role("link", name="Closed (inactive in Zoho)").click()
    page.wait_for_url("**/admin/billing_sync/customer/?account_status__exact=closed")
    assert_fits_the_screen(page, rows=len(closed))
    expect(page.locator("#result_list tbody .account-closed")).to_have_text(["closed"] * 3)
    row = page.locator("#result_list tbody tr", has_text="Johannesburg Fibre & Wireless")
    expect(row.locator(".account-closed")).to_have_attribute("title", "Closed: inactive in Zoho")
    row.locator("th.field-account a").click()

    page.wait_for_url(f"**/admin/billing_sync/customer/{closed[0].pk}/change/**")
    address = page.locator("fieldset", has=page.get_by_role("heading", name="Billing address"))
    expect(address).to_be_visible()
    for label, value in [
        ("Attention:", "Accounts payable"),
        ("Street:", "Unit 4, Rosebank Corner"),
        ("Street (line 2):", "191 Jan Smuts Avenue"),
        ("City:", "Johannesburg"),
        ("State or province:", "Gauteng"),
        ("Postal code:", "2196"),
        ("Country:", "South Africa"),
    ]:
        expect(address.get_by_label(label, exact=True)).to_have_value(value)
    expect(page.get_by_label("Account status:")).to_have_value("closed")
    expect(page.get_by_label("VAT number:")).to_have_value("4123456789")
    zoho = page.locator("fieldset", has=page.get_by_role("heading", name="Zoho Billing"))
    expect(zoho.locator(".field-zoho_inactive .readonly")).to_be_visible()
    expect(page.locator("[name=zoho_inactive], [name=zoho_vat_number_missing]")).to_have_count(0)
