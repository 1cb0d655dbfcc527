"""The admin: sync state at a glance, re-queue with permission, a read-only audit trail."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.templatetags.admin_list import result_headers
from django.contrib.auth.models import User
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django_q.models import OrmQ

from billing_sync.models import (
    AccountStatus,
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRun,
    SyncRunKind,
    SyncStatus,
    SyncTrigger,
    ZohoApiState,
)
from billing_sync.operations.health import HealthCheck, HealthReport, health_report
from billing_sync.operations.schedules import schedules_ensure
from billing_sync.run.selection import edited_since_accepted_q
from circletel import admin as admin_site
from tests.helpers import logged_in, run_queued_tasks

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:billing_sync_customer_changelist")
LONG_ERROR = (
    "rate limited by Zoho until 21:55:00 UTC (HTTP 429, code 44: the organization sent more "
    "than 30 requests in a minute; Zoho blocks every request of the organization meanwhile)"
)


def staff(*permissions: str) -> Client:
    return logged_in(
        "view_customer", "change_customer", "view_syncrun", "view_syncattempt", *permissions
    )


@pytest.fixture
def operator() -> Client:
    return staff("requeue_sync")


def change_url(customer: Customer) -> str:
    return reverse("admin:billing_sync_customer_change", args=[customer.pk])


def form_as_opened(client: Client, customer: Customer) -> dict[str, str]:
    """The customer's change form as a person's browser posts it, unchanged: each of its fields
    with the value it was opened with (and no inline forms)."""
    form = client.get(change_url(customer)).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    return {
        **{name: "" if value is None else str(value) for name, value in data.items()},
        "sync_attempts-TOTAL_FORMS": "0",
        "sync_attempts-INITIAL_FORMS": "0",
    }


def fieldsets(page: str) -> dict[str, str]:
    """The HTML of the change form's fieldsets, by their heading ("" for the first, unnamed)."""
    found = {}
    for chunk in page.split('<fieldset class="module aligned')[1:]:
        html = chunk.split("</fieldset>")[0]
        heading = re.search(r'class="fieldset-heading">([^<]*)</h2>', html)
        found[heading.group(1) if heading else ""] = html
    return found


def accepted_by_zoho(customer: Customer) -> Customer:
    """As a run leaves a customer whose data Zoho accepted: in step, not edited since."""
    Customer.objects.filter(pk=customer.pk).update(zoho_synced_data_at=F("updated_at"))
    customer.refresh_from_db()
    assert not Customer.objects.filter(edited_since_accepted_q(), pk=customer.pk).exists()
    return customer


def action(client: Client, name: str, customers: list[Customer]):
    return client.post(
        CHANGELIST,
        {"action": name, "_selected_action": [c.pk for c in customers]},
        follow=True,
    )


def test_changelist_shows_status_badges_zoho_links_and_errors(operator, make_customer, settings):
    settings.ZOHO_ORGANIZATION_ID = "6179546000000027001"
    settings.ZOHO_DATA_CENTER = "eu"
    make_customer(
        zoho_billing_customer_id="6179546000000100001",
        zoho_sync_status=SyncStatus.SYNCED,
        zoho_last_synced_at=timezone.now(),
    )
    make_customer(zoho_sync_status=SyncStatus.FAILED, zoho_last_error="rate limited by Zoho")
    make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION, zoho_last_error="email: 'x' is not")

    page = operator.get(CHANGELIST).content.decode()

    assert 'class="sync-badge sync-synced" title="Synced"' in page
    assert 'class="sync-badge sync-failed" title="Failed (will be retried)"' in page
    assert 'title="Needs attention (fix the data)"' in page
    assert ">Needs attention</span>" in page
    assert "email: &#x27;x&#x27; is not" in page
    assert (
        'href="https://billing.zoho.eu/app/6179546000000027001#/customers/6179546000000100001"'
        in page
    )
    assert "rate limited by Zoho" in page


def test_changelist_filters_and_searches(operator, make_customer):
    failed = make_customer(zoho_sync_status=SyncStatus.FAILED)
    make_customer(zoho_sync_status=SyncStatus.SYNCED, zoho_billing_customer_id="555")
    make_customer(account_type="internal_test", email="qa@circletel.co.za")

    by_status = operator.get(CHANGELIST, {"zoho_sync_status__exact": "failed"})
    by_type = operator.get(CHANGELIST, {"account_type__exact": "internal_test"})
    by_zoho_id = operator.get(CHANGELIST, {"q": "555"})
    by_account = operator.get(CHANGELIST, {"q": failed.account_number})

    assert [c.pk for c in by_status.context["cl"].result_list] == [failed.pk]
    assert [c.email for c in by_type.context["cl"].result_list] == ["qa@circletel.co.za"]
    assert [c.zoho_billing_customer_id for c in by_zoho_id.context["cl"].result_list] == ["555"]
    assert [c.pk for c in by_account.context["cl"].result_list] == [failed.pk]


def test_customer_list_columns_fit_a_laptop_and_cut_long_errors(operator, make_customer):
    make_customer(
        email="thandeka.nomvula-van-der-merwe@stellenbosch-wine-estates.co.za",
        zoho_sync_status=SyncStatus.FAILED,
        zoho_last_error=LONG_ERROR,
    )

    response = operator.get(CHANGELIST)

    headers = [h["text"] for h in result_headers(response.context["cl"])][1:]  # after the box
    page = response.content.decode()
    assert headers == ["Account", "Customer", "Sync status", "Zoho id", "Last sync", "Last error"]
    assert f'title="{LONG_ERROR}"' in page  # the whole error in the tooltip
    assert LONG_ERROR[:100] in page
    assert f">{LONG_ERROR}<" not in page  # the cell shows it cut
    assert 'title="thandeka.nomvula-van-der-merwe@stellenbosch-wine-estates.co.za"' in page
    assert 'href="/static/billing_sync/admin.css"' in page
    assert 'id="nav-sidebar"' not in page  # its 300 px go to the list


def test_internal_test_customers_read_never_sent_not_pending(operator, make_customer):
    internal = make_customer(account_type="internal_test", email="qa@circletel.co.za")
    make_customer(email="new@example.co.za")

    page = operator.get(CHANGELIST).content.decode()
    change = operator.get(reverse("admin:billing_sync_customer_change", args=[internal.pk]))

    internal_row = next(row for row in page.split("<tr") if "qa@circletel.co.za" in row)
    pending_row = next(row for row in page.split("<tr") if "new@example.co.za" in row)
    assert ">Never sent (internal test)</span>" in internal_row
    assert "Pending" not in internal_row
    assert ">Pending</span>" in pending_row
    assert ">Never sent (internal test)</span>" in change.content.decode()


def test_requeue_queues_one_task_for_the_selection_and_reports_skips(
    operator, make_customer, django_capture_on_commit_callbacks
):
    failed = make_customer(zoho_sync_status=SyncStatus.FAILED)
    attention = make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION)
    pending = make_customer()
    internal = make_customer(account_type="internal_test")
    synced = make_customer(zoho_billing_customer_id="9", zoho_sync_status=SyncStatus.SYNCED)

    with django_capture_on_commit_callbacks(execute=True):
        response = action(
            operator, "requeue_zoho_sync", [failed, attention, pending, internal, synced]
        )

    text = [str(m) for m in response.context["messages"]]
    assert text == [
        "Queued 3 customer(s) for Zoho sync; skipped 2 (1 internal_test, 1 already synced)."
    ]
    queued = OrmQ.objects.get()
    assert queued.func() == "billing_sync.tasks.sync_selected_task"
    assert queued.task["args"] == ([failed.pk, attention.pk, pending.pk],)
    attention.refresh_from_db()
    assert attention.zoho_sync_status == SyncStatus.PENDING


def test_requeue_of_nothing_queues_no_task(
    operator, make_customer, django_capture_on_commit_callbacks
):
    internal = make_customer(account_type="internal_test")

    with django_capture_on_commit_callbacks(execute=True):
        response = action(operator, "requeue_zoho_sync", [internal])

    [message] = response.context["messages"]
    assert str(message) == "Queued 0 customer(s) for Zoho sync; skipped 1 (1 internal_test)."
    assert message.level_tag == "warning"
    assert OrmQ.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_requeued_customers_are_synced_by_the_worker_in_one_run(operator, make_customer, emulator):
    customers = [make_customer(zoho_sync_status=SyncStatus.FAILED) for _ in range(5)]

    action(operator, "requeue_zoho_sync", customers)
    ran = run_queued_tasks()

    assert ran == 1
    run = SyncRun.objects.get()
    assert (run.kind, run.trigger) == (SyncRunKind.SELECTED, SyncTrigger.ADMIN)
    assert (run.selected_count, run.synced_count) == (5, 5)
    assert set(Customer.objects.values_list("zoho_sync_status", flat=True)) == {SyncStatus.SYNCED}
    assert len(emulator.customers()) == 5


def test_preview_reports_data_problems_and_sends_nothing(operator, make_customer, emulator):
    good = make_customer(zoho_sync_status=SyncStatus.FAILED)
    bad = make_customer(email="nope", zoho_sync_status=SyncStatus.NEEDS_ATTENTION)

    response = action(operator, "preview_zoho_sync", [good, bad])

    text = [str(m) for m in response.context["messages"]]
    assert text[0] == (
        "Dry run: 1 would be synced, 1 need attention, 0 would be skipped "
        "(internal_test, synced or being synced)."
    )
    assert text[1] == f"{bad.account_number}: email: 'nope' is not a valid email address"
    assert emulator.request_log == []
    assert OrmQ.objects.count() == 0
    assert SyncRun.objects.get().dry_run


def test_staff_without_the_permission_cannot_requeue(
    make_customer, django_capture_on_commit_callbacks
):
    client = staff()
    customer = make_customer(zoho_sync_status=SyncStatus.FAILED)

    page = client.get(CHANGELIST)
    with django_capture_on_commit_callbacks(execute=True):
        response = action(client, "requeue_zoho_sync", [customer])

    form = page.context["action_form"]  # None when no action is left for this user
    choices = [name for name, _ in form.fields["action"].choices] if form else []
    assert "requeue_zoho_sync" not in choices
    assert "preview_zoho_sync" not in choices
    assert response.status_code == 200
    assert OrmQ.objects.count() == 0
    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.FAILED


def test_customer_page_shows_recent_attempts_read_only(operator, make_customer):
    customer = make_customer()
    run = SyncRun.objects.create(kind="backfill", trigger="command")
    for n in range(25):
        SyncAttempt.objects.create(
            run=run,
            customer=customer,
            customer_email=customer.email,
            account_number=customer.account_number,
            outcome=AttemptOutcome.FAILED,
            error_message=f"attempt number {n:02d}",
        )

    page = operator.get(reverse("admin:billing_sync_customer_change", args=[customer.pk]))

    html = page.content.decode()
    assert "attempt number 24" in html
    assert "attempt number 05" in html
    assert "attempt number 04" not in html  # only the last 20
    assert 'name="sync_attempts-0-error_message"' not in html  # read-only, no inputs


def test_editing_a_customer_that_needs_attention_puts_it_back_in_the_queue(operator, make_customer):
    customer = make_customer(email="bad", zoho_sync_status=SyncStatus.NEEDS_ATTENTION)
    url = reverse("admin:billing_sync_customer_change", args=[customer.pk])
    form = {
        "account_number": customer.account_number,
        "account_type": customer.account_type,
        "email": "fixed@example.co.za",
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "company_name": "",
        "phone": "",
        "account_status": customer.account_status,
        "sync_attempts-TOTAL_FORMS": "0",
        "sync_attempts-INITIAL_FORMS": "0",
    }

    response = operator.post(url, form)

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.email == "fixed@example.co.za"
    assert customer.zoho_sync_status == SyncStatus.PENDING


def test_change_form_edits_the_billing_address_and_vat_number_and_queues_the_edit(
    operator, make_customer
):
    customer = accepted_by_zoho(
        make_customer(
            account_type="business",
            company_name="Karoo Farms (Pty) Ltd",
            billing_attention="Accounts payable",
            billing_street="12 Long Street",
            billing_street2="Unit 4",
            billing_city="Cape Town",
            billing_state="Western Cape",
            billing_zip="8001",
            billing_country="South Africa",
            zoho_billing_customer_id="9034000000000000001",
            zoho_sync_status=SyncStatus.SYNCED,
        )
    )

    page = operator.get(change_url(customer)).content.decode()
    response = operator.post(
        change_url(customer),
        {
            **form_as_opened(operator, customer),
            "billing_city": "Stellenbosch",
            "vat_number": "4123456789",
        },
    )

    address = fieldsets(page)["Billing address"]
    for label, name, value in [
        ("Attention", "billing_attention", "Accounts payable"),
        ("Street", "billing_street", "12 Long Street"),
        ("Street (line 2)", "billing_street2", "Unit 4"),
        ("City", "billing_city", "Cape Town"),
        ("State or province", "billing_state", "Western Cape"),
        ("Postal code", "billing_zip", "8001"),
        ("Country", "billing_country", "South Africa"),
    ]:
        assert f'<label for="id_{name}">{label}:</label>' in address
        assert f'name="{name}" value="{value}"' in address
    person = fieldsets(page)[""]
    assert 'name="vat_number"' in person
    assert '<select name="account_status"' in person
    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.billing_city, customer.vat_number) == ("Stellenbosch", "4123456789")
    assert customer.billing_street == "12 Long Street"  # what the person left, left as it was
    # Edited since Zoho accepted its data: the next sync sends it.
    assert customer.updated_at > customer.zoho_synced_data_at
    assert Customer.objects.filter(edited_since_accepted_q(), pk=customer.pk).exists()


def test_the_sync_columns_of_the_billing_record_are_shown_never_edited(operator, make_customer):
    customer = make_customer(
        zoho_billing_customer_id="9034000000000000002",
        zoho_sync_status=SyncStatus.SYNCED,
        account_status=AccountStatus.CLOSED,
    )
    opened = form_as_opened(operator, customer)
    page = operator.get(change_url(customer)).content.decode()
    # A run marks it inactive in Zoho, and finds Zoho did not keep its VAT number, while the
    # person's form is open.
    Customer.objects.filter(pk=customer.pk).update(zoho_inactive=True, zoho_vat_number_missing=True)

    response = operator.post(
        change_url(customer),
        {**opened, "billing_city": "Durban", "zoho_inactive": "", "zoho_vat_number_missing": ""},
    )

    zoho = fieldsets(page)["Zoho Billing"]
    for name in ("zoho_inactive", "zoho_vat_number_missing"):
        assert f"field-{name}" in zoho  # shown with the sync's columns
        assert f'name="{name}"' not in page  # no input for it
        assert name not in opened
    assert 'name="account_status"' not in zoho
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.billing_city == "Durban"
    assert (customer.zoho_inactive, customer.zoho_vat_number_missing) == (True, True)


def test_changelist_filters_by_account_status_and_finds_a_vat_number(operator, make_customer):
    closed = [
        make_customer(account_status=AccountStatus.CLOSED),
        make_customer(
            account_status=AccountStatus.CLOSED,
            zoho_billing_customer_id="9034000000000000003",
            zoho_sync_status=SyncStatus.SYNCED,
            zoho_inactive=True,
        ),
    ]
    active = make_customer(vat_number="4987654321")

    everyone = operator.get(CHANGELIST)
    by_status = operator.get(CHANGELIST, {"account_status__exact": "closed"})
    by_vat = operator.get(CHANGELIST, {"q": "4987654321"})

    page = everyone.content.decode()
    filters = page.split('id="changelist-filter"')[1].split("</nav>")[0]
    assert 'href="?account_status__exact=closed"' in filters
    assert [c.pk for c in by_status.context["cl"].result_list] == [c.pk for c in closed]
    assert [c.pk for c in by_vat.context["cl"].result_list] == [active.pk]
    rows = page.split("<tr")
    closed_rows = [row for row in rows if any(c.email in row for c in closed)]
    active_row = next(row for row in rows if active.email in row)
    assert [row.count('class="quiet account-closed"') for row in closed_rows] == [1, 1]
    assert 'title="Closed before it reached Zoho: not created there">closed<' in closed_rows[0]
    assert 'title="Closed: inactive in Zoho">closed<' in closed_rows[1]
    assert "account-closed" not in active_row
    headers = [h["text"] for h in result_headers(everyone.context["cl"])][1:]
    assert headers == ["Account", "Customer", "Sync status", "Zoho id", "Last sync", "Last error"]


@pytest.mark.parametrize("model", ["syncrun", "syncattempt"])
def test_audit_admins_are_read_only(operator, make_customer, model):
    customer = make_customer()
    run = SyncRun.objects.create(kind="backfill", trigger="command")
    attempt = SyncAttempt.objects.create(
        run=run, customer=customer, customer_email="x", account_number="y", outcome="created"
    )
    obj = run if model == "syncrun" else attempt
    superuser = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(superuser)

    add = client.get(reverse(f"admin:billing_sync_{model}_add"))
    delete = client.post(
        reverse(f"admin:billing_sync_{model}_delete", args=[obj.pk]), {"post": "yes"}
    )
    change = client.get(reverse(f"admin:billing_sync_{model}_change", args=[obj.pk]))
    listing = client.get(reverse(f"admin:billing_sync_{model}_changelist"))

    assert add.status_code == 403
    assert delete.status_code == 403
    assert change.status_code == 200
    assert 'type="submit"' not in change.content.decode().split('id="content-main"')[1]
    assert listing.status_code == 200
    assert SyncRun.objects.filter(pk=run.pk).exists()


def test_audit_lists_filter_by_outcome_trigger_and_date(operator, make_customer):
    customer = make_customer()
    scheduled = SyncRun.objects.create(kind="retry_failed", trigger="schedule")
    by_hand = SyncRun.objects.create(kind="backfill", trigger="command")
    for run, outcome in ((scheduled, "created"), (by_hand, "failed")):
        SyncAttempt.objects.create(
            run=run, customer=customer, customer_email="e", account_number="a", outcome=outcome
        )
    attempts = reverse("admin:billing_sync_syncattempt_changelist")
    runs = reverse("admin:billing_sync_syncrun_changelist")
    today = timezone.now()

    by_outcome = operator.get(attempts, {"outcome__exact": "failed"})
    by_trigger = operator.get(attempts, {"run__trigger__exact": "schedule"})
    runs_by_trigger = operator.get(runs, {"trigger__exact": "schedule"})
    by_date = operator.get(
        runs,
        {
            "started_at__year": today.year,
            "started_at__month": today.month,
            "started_at__day": today.day,
        },
    )

    assert [a.outcome for a in by_outcome.context["cl"].result_list] == ["failed"]
    assert [a.run_id for a in by_trigger.context["cl"].result_list] == [scheduled.pk]
    assert [r.pk for r in runs_by_trigger.context["cl"].result_list] == [scheduled.pk]
    assert by_date.context["cl"].result_count == 2


def test_index_opens_on_the_sync_overview(operator, make_customer):
    make_customer(zoho_sync_status=SyncStatus.FAILED)
    make_customer(zoho_sync_status=SyncStatus.FAILED)
    make_customer(zoho_billing_customer_id="1", zoho_sync_status=SyncStatus.SYNCED)
    make_customer(account_type="internal_test")
    SyncRun.objects.create(
        kind="retry_failed",
        trigger="schedule",
        status="stopped",
        synced_count=1,
        failed_count=2,
        selected_count=3,
        stop_reason="rate limited by Zoho until 14:32:00 UTC",
    )
    schedules_ensure()
    until = timezone.now() + timedelta(minutes=9)
    ZohoApiState.objects.create(singleton=1, blocked_until=until, block_reason="code 44")

    before = health_report().summary
    page = operator.get(reverse("admin:index")).content.decode()
    after = health_report().summary  # it may say how many seconds ago the last run was

    overview = page.split('id="zoho-sync-overview"')[1].split("</table>")[0]
    assert any(f"<strong>{escape(summary)}</strong>" in overview for summary in (before, after))
    assert "Blocking our requests until" in overview
    assert "Failed (will be retried): <strong>2</strong>" in overview
    assert "Synced: <strong>1</strong>" in overview
    assert "Pending: <strong>0</strong>" in overview
    assert "Stopped early" in overview
    assert "1 synced, 2 failed of 3" in overview
    assert "rate limited by Zoho until 14:32:00 UTC" in overview
    assert "zoho-sync at" in overview


def test_overview_counts_link_to_their_filtered_lists(operator, make_customer):
    make_customer(zoho_sync_status=SyncStatus.FAILED)
    make_customer(zoho_sync_status=SyncStatus.FAILED)
    make_customer(account_type="internal_test")

    page = operator.get(reverse("admin:index")).content.decode()

    counts = page.split('id="zoho-status-counts"')[1].split("</td>")[0]
    for status in SyncStatus.values:
        assert f'href="{CHANGELIST}?zoho_sync_status__exact={status}"' in counts
    assert f'href="{CHANGELIST}?account_type__exact=internal_test"' in counts
    assert "1 internal_test account</a>" in counts
    failed = operator.get(f"{CHANGELIST}?zoho_sync_status__exact=failed")
    internal = operator.get(f"{CHANGELIST}?account_type__exact=internal_test")
    assert failed.context["cl"].result_count == 2
    assert internal.context["cl"].result_count == 1


@pytest.mark.parametrize(
    ("report", "css_class"),
    [
        (HealthReport(ok=True, checks=[], summary="OK: worker alive"), "health-ok"),
        (
            HealthReport(
                ok=True,
                checks=[HealthCheck("needs_person", ok=False, detail="2", critical=False)],
                summary="WARNING: 2 customers need a person",
            ),
            "health-warning",
        ),
        (
            HealthReport(
                ok=False,
                checks=[HealthCheck("worker", ok=False, detail="none")],
                summary="FAILING: no worker seen for 5 minutes",
            ),
            "health-failing",
        ),
    ],
)
def test_overview_shows_the_health_line(operator, monkeypatch, report, css_class):
    monkeypatch.setattr(admin_site, "health_report", lambda: report)

    page = operator.get(reverse("admin:index")).content.decode()

    health = page.split('<td id="zoho-health"')[1].split("</td>")[0]
    assert f'class="{css_class}"' in health
    assert f"<strong>{report.summary}</strong>" in health


def test_overview_says_when_zoho_is_not_blocking(operator):
    page = operator.get(reverse("admin:index")).content.decode()

    assert "Not blocking: requests are going through" in page
    assert "No run yet." in page
    assert "None scheduled" in page
