"""The sync service: idempotent, audited, never a duplicate, never a lost customer."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing_sync.models import (
    AccountType,
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRun,
    SyncRunStatus,
    SyncStatus,
)
from billing_sync.run.runs import customer_sync, customers_backfill, customers_retry_failed
from tests.helpers import zoho_account_counts, zoho_posts

pytestmark = pytest.mark.django_db


def emails_in_zoho(emulator) -> list[str]:
    return sorted(c["email"] for c in emulator.customers())


def account_in_zoho(record: dict) -> str | None:
    for field in record.get("custom_fields", []):
        if field["label"] == "Account Number":
            return field["value"]
    return None


def test_backfill_creates_every_customer_once_with_account_number(emulator, make_customer):
    customers = [make_customer() for _ in range(3)]
    customers.append(make_customer(company_name="Karoo Farms", phone="+27 21 555 0100"))

    report = customers_backfill(trigger="command")

    assert report.ok
    assert report.synced_count == 4
    records = {r["email"]: r for r in emulator.customers()}
    assert len(records) == 4
    for customer in customers:
        customer.refresh_from_db()
        record = records[customer.email]
        assert customer.zoho_sync_status == SyncStatus.SYNCED
        assert customer.zoho_billing_customer_id == record["customer_id"]
        assert customer.zoho_last_synced_at is not None
        assert account_in_zoho(record) == customer.account_number
        assert record["first_name"] == customer.first_name
        assert record["last_name"] == customer.last_name
        assert record["display_name"] == customer.display_name
    assert records[customers[0].email]["display_name"] == f"Test {customers[0].last_name}"
    business = records[customers[3].email]
    assert (business["display_name"], business["company_name"], business["phone"]) == (
        "Karoo Farms",
        "Karoo Farms",
        "+27 21 555 0100",
    )
    run = SyncRun.objects.get()
    assert (run.status, run.selected_count, run.synced_count, run.failed_count) == (
        SyncRunStatus.COMPLETED,
        4,
        4,
        0,
    )
    outcomes = list(SyncAttempt.objects.values_list("outcome", flat=True))
    assert outcomes == [AttemptOutcome.CREATED] * 4
    # Zoho is listed once, then each customer is created: nothing else is sent.
    calls = [(r.method, r.path) for r in emulator.request_log]
    assert calls == [("GET", "/customers")] + [("POST", "/customers")] * 4


def test_second_backfill_sends_nothing(emulator, make_customer):
    for _ in range(3):
        make_customer()
    customers_backfill(trigger="command")
    requests_after_first = len(emulator.request_log)
    refreshes_after_first = emulator.token_refresh_count

    report = customers_backfill(trigger="command")

    assert report.selected_count == 0
    assert len(emulator.request_log) == requests_after_first
    assert emulator.token_refresh_count == refreshes_after_first
    assert len(emulator.customers()) == 3


def test_internal_test_accounts_never_reach_zoho(emulator, make_customer):
    make_customer(email="qa@circletel.co.za", account_type=AccountType.INTERNAL_TEST)
    make_customer(email="real@example.co.za")

    customers_backfill(trigger="command")

    assert emails_in_zoho(emulator) == ["real@example.co.za"]
    internal = Customer.objects.get(email="qa@circletel.co.za")
    assert internal.zoho_billing_customer_id is None
    assert internal.zoho_sync_status == SyncStatus.PENDING


def test_adopts_zoho_customer_carrying_our_account_number(emulator, make_customer):
    existing = emulator.add_customer(
        display_name="Old Name",
        email="other-address@example.co.za",
        custom_fields=[{"label": "Account Number", "value": "CT-2025-90001"}],
    )
    emulator.add_customer(display_name="Same email, other account", email="x@example.co.za")
    customer = make_customer(account_number="CT-2025-90001", email="other-address@example.co.za")

    report = customers_backfill(trigger="command")

    customer.refresh_from_db()
    assert customer.zoho_billing_customer_id == existing["customer_id"]
    assert SyncAttempt.objects.get(run=report.run).outcome == AttemptOutcome.ADOPTED
    assert zoho_posts(emulator) == 0


def test_adopts_single_email_match_without_account_number_and_labels_it(emulator, make_customer):
    existing = emulator.add_customer(display_name="Circle Tel", email="CircleTelSA@gmail.com")
    customer = make_customer(email="circletelsa@gmail.com", account_number="CT-2025-00015")

    customers_backfill(trigger="command")

    customer.refresh_from_db()
    assert customer.zoho_billing_customer_id == existing["customer_id"]
    assert zoho_posts(emulator) == 0
    (record,) = emulator.customers()
    assert account_in_zoho(record) == "CT-2025-00015"


def test_email_match_with_another_account_number_is_not_adopted(emulator, make_customer):
    emulator.add_customer(
        display_name="Someone else",
        email="shared@example.co.za",
        custom_fields=[{"label": "Account Number", "value": "CT-2025-99999"}],
    )
    customer = make_customer(email="shared@example.co.za")

    customers_backfill(trigger="command")

    customer.refresh_from_db()
    assert zoho_posts(emulator) == 1
    assert len(emulator.customers()) == 2
    assert customer.zoho_sync_status == SyncStatus.SYNCED


def test_two_local_customers_sharing_an_email_become_two_zoho_customers(emulator, make_customer):
    first = make_customer(email="family@example.co.za")
    second = make_customer(email="family@example.co.za")

    customers_backfill(trigger="command")

    first.refresh_from_db()
    second.refresh_from_db()
    assert len(emulator.customers()) == 2
    assert first.zoho_billing_customer_id != second.zoho_billing_customer_id
    accounts = sorted(account_in_zoho(r) for r in emulator.customers())
    assert accounts == sorted([first.account_number, second.account_number])


def test_single_customer_sync_searches_by_email_instead_of_listing(emulator, make_customer):
    for _ in range(3):
        make_customer()
    customers_backfill(trigger="command")
    customer = make_customer(email="one@example.co.za")
    before = len(emulator.request_log)

    report = customer_sync(customer_id=customer.pk, trigger="admin")

    assert report.ok
    new_requests = emulator.request_log[before:]
    assert [(r.method, r.path) for r in new_requests] == [
        ("GET", "/customers"),
        ("POST", "/customers"),
    ]
    assert SyncRun.objects.get(pk=report.run.pk).trigger == "admin"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"email": "not-an-email"}, "email: 'not-an-email' is not a valid email address"),
        ({"email": "  "}, "email: is blank"),
        ({"first_name": "", "last_name": "", "company_name": ""}, "name: first_name, last_name"),
        ({"last_name": "x" * 101}, "last_name: 101 characters, Zoho accepts at most 100"),
        pytest.param(
            {"first_name": "Nul\x00Byte"},
            "first_name: contains a NUL byte",
            marks=pytest.mark.skipif(
                connection.vendor == "postgresql", reason="PostgreSQL cannot store a NUL byte"
            ),
        ),
    ],
)
def test_invalid_customer_fails_naming_the_field_and_the_run_goes_on(
    emulator, make_customer, fields, expected
):
    bad = make_customer(**fields)
    good = make_customer()

    report = customers_backfill(trigger="command")

    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert expected in bad.zoho_last_error
    assert good.zoho_sync_status == SyncStatus.SYNCED
    assert emails_in_zoho(emulator) == [good.email]
    attempt = SyncAttempt.objects.get(customer=bad)
    assert attempt.outcome == AttemptOutcome.INVALID
    assert expected in attempt.error_message
    assert not report.ok
    # Waits for a person: no later backfill or retry takes it again.
    assert customers_backfill(trigger="schedule").selected_count == 0
    assert customers_retry_failed(trigger="schedule").selected_count == 0


def test_unicode_names_sync(emulator, make_customer):
    customer = make_customer(first_name="Zoë", last_name="Ndlovu-Søren 🚀")

    customers_backfill(trigger="command")

    (record,) = emulator.customers()
    assert record["display_name"] == "Zoë Ndlovu-Søren 🚀"
    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.SYNCED


def test_zoho_refusing_the_data_needs_attention_and_is_not_retried(emulator, make_customer):
    emulator.configure(display_name_unique=True)
    emulator.add_customer(display_name="Test Twin", email="twin@example.co.za")
    refused = make_customer(first_name="Test", last_name="Twin")
    fine = make_customer()

    customers_backfill(trigger="command")
    retry = customers_retry_failed(trigger="command")

    refused.refresh_from_db()
    assert refused.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert "already exists" in refused.zoho_last_error
    attempt = SyncAttempt.objects.get(customer=refused)
    assert (attempt.http_status, attempt.zoho_code) == (400, 3062)
    fine.refresh_from_db()
    assert fine.zoho_sync_status == SyncStatus.SYNCED
    assert retry.selected_count == 0


def let_zoho_settle(settings) -> None:
    """Time passes: Zoho has finished any create we gave up on."""
    time.sleep(settings.ZOHO_CREATE_SETTLE_SECONDS)


@pytest.mark.parametrize(
    ("fault", "options", "reason"),
    [
        ("lose_response", {}, "connection to Zoho failed"),
        ("drop", {}, "connection to Zoho failed"),
        ("html_error", {"status": 504}, "not JSON"),
    ],
)
def test_create_without_an_answer_is_looked_for_later_not_repeated(
    emulator, make_customer, settings, fault, options, reason
):
    customer = make_customer()
    emulator.inject(fault, method="POST", path="/customers", times=1, **options)

    first = customers_backfill(trigger="command", max_wait=0)

    customer.refresh_from_db()
    assert not first.ok
    assert first.waiting_count == 1
    assert customer.zoho_sync_status == SyncStatus.FAILED
    assert customer.zoho_create_sent_at is not None
    assert "Zoho may still be creating this customer" in customer.zoho_last_error
    assert zoho_posts(emulator) == 1  # it did not create again in the same run
    outcomes = list(SyncAttempt.objects.order_by("id").values_list("outcome", "error_message"))
    # The create's failure, then how the run left it: waiting (no request).
    assert [o for o, _ in outcomes] == [AttemptOutcome.FAILED, AttemptOutcome.WAITING]
    assert reason in outcomes[0][1]

    requests_before = len(emulator.request_log)
    too_soon = customers_retry_failed(trigger="command", max_wait=0)
    # Too soon to look, and no time to wait: left as it was, no attempt, no request.
    assert not too_soon.ok
    assert too_soon.waiting_count == 1
    assert SyncAttempt.objects.filter(run=too_soon.run).get().outcome == AttemptOutcome.WAITING
    assert len(emulator.request_log) == requests_before

    later = customers_retry_failed(trigger="command")  # may wait: it waits, then looks

    assert later.ok
    customer.refresh_from_db()
    assert len(emulator.customers()) == 1
    assert customer.zoho_create_sent_at is None
    if fault == "lose_response":
        (record,) = emulator.customers()
        assert customer.zoho_billing_customer_id == record["customer_id"]
        assert SyncAttempt.objects.get(run=later.run).outcome == AttemptOutcome.ADOPTED


def test_a_run_that_may_wait_looks_for_its_unanswered_create_at_its_end(
    emulator, make_customer, settings
):
    lost, other = make_customer(), make_customer()
    emulator.inject("lose_response", method="POST", path="/customers", email=lost.email)

    report = customers_backfill(trigger="command")

    assert report.ok
    assert (report.synced_count, report.waiting_count) == (2, 0)
    assert sorted(zoho_account_counts(emulator).values()) == [1, 1]
    lost.refresh_from_db()
    assert lost.zoho_sync_status == SyncStatus.SYNCED
    outcomes = SyncAttempt.objects.filter(customer=lost).order_by("id").values_list("outcome")
    assert [o for (o,) in outcomes] == [AttemptOutcome.FAILED, AttemptOutcome.ADOPTED]
    # The customer it could go on with was not held up by the one settling.
    other_done = SyncAttempt.objects.get(customer=other).finished_at
    assert other_done < SyncAttempt.objects.get(customer=lost, outcome="adopted").started_at


def test_server_error_on_create_is_retried_in_the_run_without_duplicate(emulator, make_customer):
    make_customer()
    emulator.inject("error", method="POST", path="/customers", status=500, times=1)

    report = customers_backfill(trigger="command")

    assert report.ok
    assert len(emulator.customers()) == 1
    outcomes = list(SyncAttempt.objects.order_by("id").values_list("outcome", "http_status"))
    assert outcomes == [(AttemptOutcome.FAILED, 500), (AttemptOutcome.CREATED, None)]


def test_create_zoho_finishes_after_we_gave_up_is_adopted_not_duplicated(
    emulator, make_customer, settings
):
    settings.ZOHO_TIMEOUT_SECONDS = 0.2
    settings.ZOHO_CREATE_SETTLE_SECONDS = 0.6
    customer = make_customer()
    # Zoho finishes the create 0.5 s after it arrived, long after the client gave up at 0.2 s.
    emulator.inject("slow", method="POST", path="/customers", delay=0.5, times=1)

    first = customers_backfill(trigger="command", max_wait=0)
    let_zoho_settle(settings)
    later = customers_retry_failed(trigger="command", max_wait=0)

    assert not first.ok
    assert later.ok
    (record,) = emulator.customers()
    customer.refresh_from_db()
    assert customer.zoho_billing_customer_id == record["customer_id"]
    assert "did not answer in time" in SyncAttempt.objects.order_by("id").first().error_message


def test_persistent_server_errors_leave_customer_failed_then_a_later_run_completes(
    emulator, make_customer, settings
):
    settings.ZOHO_MAX_ATTEMPTS = 2
    customer = make_customer()
    emulator.inject("error", method="POST", path="/customers", status=503, times=None)

    report = customers_backfill(trigger="command")

    customer.refresh_from_db()
    assert not report.ok
    assert customer.zoho_sync_status == SyncStatus.FAILED
    assert "Zoho may still be creating this customer" in customer.zoho_last_error
    # Each 503 may have followed a commit: it looked in Zoho before the second create.
    attempts = SyncAttempt.objects.filter(customer=customer).order_by("id")
    assert ["Internal error (HTTP 503" in a.error_message for a in attempts[:2]] == [True, True]
    assert attempts[2].outcome == AttemptOutcome.WAITING  # how the run left it
    assert [r.method for r in emulator.request_log].count("POST") == 2
    assert len(emulator.customers()) == 0

    emulator.clear_faults()
    let_zoho_settle(settings)
    retry = customers_retry_failed(trigger="command")

    assert retry.ok
    assert len(emulator.customers()) == 1
    customer.refresh_from_db()
    assert customer.zoho_sync_status == SyncStatus.SYNCED


def test_previous_run_died_after_create_is_adopted_not_recreated(emulator, make_customer):
    created = emulator.add_customer(
        display_name="Test Customer",
        email="died@example.co.za",
        custom_fields=[{"label": "Account Number", "value": "CT-2025-77777"}],
    )
    long_ago = timezone.now() - timedelta(hours=1)
    customer = make_customer(
        email="died@example.co.za",
        account_number="CT-2025-77777",
        zoho_sync_status=SyncStatus.SYNCING,
        zoho_claimed_at=long_ago,
        zoho_create_sent_at=long_ago,
    )

    report = customers_retry_failed(trigger="command")

    assert report.ok
    customer.refresh_from_db()
    assert customer.zoho_billing_customer_id == created["customer_id"]
    assert zoho_posts(emulator) == 0


def test_customer_claimed_by_a_live_run_is_left_alone(emulator, make_customer):
    make_customer(zoho_sync_status=SyncStatus.SYNCING, zoho_claimed_at=timezone.now())

    report = customers_backfill(trigger="command")

    assert report.selected_count == 0
    assert emulator.customers() == []


def test_dry_run_sends_nothing_and_changes_no_customer(emulator, make_customer):
    make_customer(zoho_sync_status=SyncStatus.FAILED, zoho_last_error="rate limited")
    make_customer(email="broken", zoho_sync_status=SyncStatus.FAILED)
    before = list(Customer.objects.values())

    report = customers_retry_failed(trigger="command", dry_run=True)

    assert report.selected_count == 2
    assert emulator.request_log == []
    assert emulator.token_refresh_count == 0
    assert list(Customer.objects.values()) == before
    run = SyncRun.objects.get()
    assert run.dry_run
    outcomes = set(SyncAttempt.objects.values_list("outcome", flat=True))
    assert outcomes == {AttemptOutcome.DRY_RUN}
    assert "email: 'broken'" in SyncAttempt.objects.get(customer_email="broken").error_message


def test_limit_takes_the_oldest_customers(emulator, make_customer):
    customers = [make_customer() for _ in range(3)]

    customers_backfill(trigger="command", limit=2)

    synced = set(
        Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).values_list("pk", flat=True)
    )
    assert synced == {customers[0].pk, customers[1].pk}


def test_attempts_outlive_a_deleted_customer(emulator, make_customer):
    customer = make_customer()
    customers_backfill(trigger="command")

    customer.delete()

    attempt = SyncAttempt.objects.get()
    assert attempt.customer is None
    assert attempt.account_number == customer.account_number


def test_account_number_field_label_is_configurable(emulator, make_customer, settings):
    settings.ZOHO_ACCOUNT_NUMBER_FIELD = "CircleTel Account"
    emulator.add_customer(
        display_name="Existing",
        email="labelled@example.co.za",
        custom_fields=[{"label": "CircleTel Account", "value": "CT-2025-40000"}],
    )
    adopted = make_customer(email="labelled@example.co.za", account_number="CT-2025-40000")
    created = make_customer()

    customers_backfill(trigger="command")

    adopted.refresh_from_db()
    assert adopted.zoho_sync_status == SyncStatus.SYNCED
    assert zoho_posts(emulator) == 1
    new_record = next(r for r in emulator.customers() if r["email"] == created.email)
    assert new_record["custom_fields"][0]["label"] == "CircleTel Account"
    assert new_record["custom_fields"][0]["value"] == created.account_number
