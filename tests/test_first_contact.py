"""First contact with a real Zoho organization: safe whatever Zoho answers.

Each test plays one way a real organization may answer differently from what we assumed (the
emulator's switches), and checks what a user relies on: no customer parked for the
organization's fault, no duplicate, nothing lost, the exit code and message, the requests spent.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncStatus
from billing_sync.run.report import RunObserver
from billing_sync.run.runs import customer_sync, customers_backfill, customers_retry_failed
from tests.commands import run
from tests.helpers import edit, zoho_account_counts, zoho_posts
from zoho_emulator import EMULATOR_ORGANIZATION_ID

pytestmark = pytest.mark.django_db

CUSTOMERS = 20
WHAT_TO_CHECK = ("ZOHO_ORGANIZATION_ID", "scopes", "ZOHO_DATA_CENTER")
LABEL = "Account Number"
SCOPE_READ = "ZohoSubscriptions.customers.READ"
ALL = tuple(f"ZohoSubscriptions.customers.{action}" for action in ("CREATE", "READ", "UPDATE"))


@pytest.fixture
def customers(make_customer, settings) -> list[Customer]:
    settings.ZOHO_RATE_LIMIT_REQUESTS = 100  # the emulator's own budget: no pacing waits here
    return [make_customer() for _ in range(CUSTOMERS)]


def statuses() -> Counter:
    return Counter(Customer.objects.values_list("zoho_sync_status", flat=True))


def requests_spent(emulator, since: int) -> int:
    return len(emulator.request_log) - since


def assert_nothing_lost_or_duplicated(emulator) -> None:
    """Every account in Zoho at most once; every synced customer linked to a Zoho record."""
    assert max(zoho_account_counts(emulator).values(), default=0) <= 1
    emails = Counter(record["email"] for record in emulator.customers())
    assert max(emails.values(), default=0) <= 1
    in_zoho = {record["customer_id"] for record in emulator.customers()}
    for customer in Customer.objects.all():
        assert customer.zoho_sync_status in (SyncStatus.SYNCED, SyncStatus.FAILED), customer
        if customer.zoho_sync_status == SyncStatus.SYNCED:
            assert customer.zoho_billing_customer_id in in_zoho


def assert_all_synced_once(emulator, customers: list[Customer]) -> None:
    assert statuses() == {SyncStatus.SYNCED: len(customers)}
    assert zoho_account_counts(emulator) == Counter(c.account_number for c in customers)


# 1. Refusals of requests that carry no customer data are the organization's


@pytest.mark.parametrize("status", [400, 401, 403])
@pytest.mark.parametrize(
    ("style", "zoho_says"),
    [
        ("2", "Invalid value passed for organization_id"),
        ("6041", "This user is not associated with the CompanyID/CompanyName:999"),
        ("9017", "not associated with any organization"),
    ],
)
def test_a_wrong_organization_stops_at_the_first_read_in_every_form(
    emulator, settings, customers, style, zoho_says, status
):
    emulator.configure(organization_error=style, organization_error_status=status)
    settings.ZOHO_ORGANIZATION_ID = "999"

    output, code = run("zoho_backfill_customers")

    assert code == 2
    assert zoho_says in output
    for setting in WHAT_TO_CHECK:
        assert setting in output
    assert statuses() == {SyncStatus.FAILED: CUSTOMERS}
    assert len(emulator.request_log) == 1  # the list; no create, no token refresh loop
    assert emulator.customers() == []


def test_a_token_without_the_create_scope_stops_and_names_the_scope(emulator, customers):
    emulator.configure(scopes=("ZohoSubscriptions.customers.READ",))

    output, code = run("zoho_backfill_customers")

    assert code == 2
    assert "lacks the scope ZohoSubscriptions.customers.CREATE" in output
    assert statuses() == {SyncStatus.FAILED: CUSTOMERS}
    # The list, then one create, refused again after one token refresh.
    assert [(r.method, r.status) for r in emulator.request_log] == [
        ("GET", 200),
        ("POST", 401),
        ("POST", 401),
    ]
    assert emulator.token_refresh_count == 2


def test_a_refused_search_is_not_the_customers_fault(emulator, make_customer, settings):
    customer = make_customer()
    emulator.configure(organization_error="6041", organization_error_status=403)
    settings.ZOHO_ORGANIZATION_ID = "999"

    report = customers_backfill(trigger="command")  # one customer: a search, not a list

    customer.refresh_from_db()
    assert report.stop_needs_setup
    assert customer.zoho_sync_status == SyncStatus.FAILED
    assert [(r.method, r.status) for r in emulator.request_log] == [("GET", 403)]
    assert SyncAttempt.objects.get().outcome == AttemptOutcome.FAILED


# 2. The same refusal for several customers in a row is the organization refusing


def test_an_organization_refusing_every_create_stops_after_three(emulator, customers):
    emulator.configure(refuse_creates=True)

    output, code = run("zoho_backfill_customers")

    assert code == 2
    assert "refused the creates of 3 customers in a row" in output
    assert "maximum number of customers allowed" in output
    assert zoho_posts(emulator) == 3
    assert statuses() == {SyncStatus.FAILED: CUSTOMERS}
    refused = SyncAttempt.objects.filter(http_status=400)
    assert refused.count() == 3
    assert set(refused.values_list("outcome", flat=True)) == {AttemptOutcome.FAILED}

    emulator.configure(refuse_creates=False)  # the plan is upgraded
    assert customers_retry_failed(trigger="command").ok
    assert_all_synced_once(emulator, customers)


def test_a_refusal_naming_nothing_is_the_customers_own_once_another_is_created(
    emulator, make_customer
):
    refused, fine = make_customer(), make_customer()
    emulator.inject("error", method="POST", email=refused.email, status=400, times=None)

    report = customers_backfill(trigger="command")

    refused.refresh_from_db()
    assert not report.ok
    assert not report.stop_reason
    assert refused.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert SyncAttempt.objects.get(customer=refused).outcome == AttemptOutcome.INVALID
    assert Customer.objects.get(pk=fine.pk).zoho_sync_status == SyncStatus.SYNCED


def test_a_lone_refusal_stays_retryable_until_zoho_creates_another(emulator, make_customer):
    refused = make_customer()
    emulator.inject("error", method="POST", email=refused.email, status=400, times=None)

    customers_backfill(trigger="command")
    refused.refresh_from_db()
    # Nothing tells yet whether Zoho refuses everyone: it stays for the retry.
    assert refused.zoho_sync_status == SyncStatus.FAILED
    assert "named none of this customer's fields" in refused.zoho_last_error

    other = make_customer()
    customer_sync(customer_id=other.pk, trigger="admin")  # Zoho accepts creates meanwhile
    refused.refresh_from_db()
    assert refused.zoho_sync_status == SyncStatus.FAILED
    customers_retry_failed(trigger="command")  # the same refusal again, alone in its run

    refused.refresh_from_db()
    assert refused.zoho_sync_status == SyncStatus.NEEDS_ATTENTION
    assert zoho_posts(emulator) == 3


def test_two_refusals_then_a_create_were_the_customers_own(emulator, make_customer):
    refused = [make_customer(), make_customer()]
    make_customer()
    for customer in refused:
        emulator.inject("error", method="POST", email=customer.email, status=400, times=None)

    report = customers_backfill(trigger="command")

    assert not report.stop_reason
    assert statuses() == {SyncStatus.NEEDS_ATTENTION: 2, SyncStatus.SYNCED: 1}
    # Their attempts are written once, as what they turned out to be, with Zoho's own words.
    for customer in refused:
        attempt = SyncAttempt.objects.get(customer=customer)
        customer.refresh_from_db()
        assert (attempt.outcome, attempt.final) == (AttemptOutcome.INVALID, True)
        assert attempt.error_message == customer.zoho_last_error
        assert "retried" not in attempt.error_message


def test_a_refusal_naming_our_field_is_the_customers_at_once(emulator, make_customer):
    emulator.configure(display_name_unique=True)
    emulator.add_customer(display_name="Test Twin", email="twin@example.co.za")
    twin = make_customer(first_name="Test", last_name="Twin")

    customers_backfill(trigger="command")

    twin.refresh_from_db()
    assert twin.zoho_sync_status == SyncStatus.NEEDS_ATTENTION


# 3. The account number must arrive


def test_a_field_the_organization_drops_links_the_customer_and_stops(emulator, customers):
    emulator.configure(unknown_custom_field="drop")

    output, code = run("zoho_backfill_customers")

    assert code == 2
    assert "ZOHO_ACCOUNT_NUMBER_FIELD" in output
    assert "carries none in the custom field 'Account Number'" in output
    assert zoho_posts(emulator) == 1
    (record,) = emulator.customers()
    first = Customer.objects.get(zoho_billing_customer_id=record["customer_id"])
    assert first.zoho_sync_status == SyncStatus.SYNCED
    assert first.zoho_account_number_missing
    assert statuses() == {SyncStatus.SYNCED: 1, SyncStatus.FAILED: CUSTOMERS - 1}

    # Until the field keeps our account number, no run creates another customer without it.
    before = len(emulator.request_log)
    output, code = run("zoho_retry_failed")
    assert code == 2
    assert [(r.method, r.path) for r in emulator.request_log[before:]] == [
        ("PUT", f"/customers/{record['customer_id']}")
    ]

    emulator.configure(custom_field_labels=("Account Number",))  # someone adds the field
    output, code = run("zoho_retry_failed")

    assert code == 0
    assert_all_synced_once(emulator, customers)
    assert not Customer.objects.filter(zoho_account_number_missing=True).exists()
    assert run("zoho_verify", "--deep")[1] == 0


def test_the_repair_is_made_before_a_create_never_for_an_edit(emulator, make_customer):
    flagged, edited = make_customer(), make_customer()
    assert customers_backfill(trigger="command").ok
    Customer.objects.filter(pk=flagged.pk).update(zoho_account_number_missing=True)
    flagged.refresh_from_db()
    edit(edited, phone="+27 82 555 0700")
    before = len(emulator.request_log)

    assert customer_sync(customer_id=edited.pk, trigger="edit").ok  # an edit's task

    sent = [(r.method, r.path) for r in emulator.request_log[before:]]
    assert sent == [("PUT", f"/customers/{edited.zoho_billing_customer_id}")]  # no repair

    make_customer()
    before = len(emulator.request_log)
    assert customers_backfill(trigger="command").ok  # a run that creates: the repair first

    sent = [(r.method, r.path) for r in emulator.request_log[before:]]
    assert sent[0] == ("PUT", f"/customers/{flagged.zoho_billing_customer_id}")
    assert sent[-1] == ("POST", "/customers")
    assert not Customer.objects.filter(zoho_account_number_missing=True).exists()


def test_a_repair_in_vain_is_tried_again_once_an_interval_or_when_a_person_asks(
    emulator, make_customer
):
    emulator.configure(unknown_custom_field="drop")
    make_customer()
    assert customers_backfill(trigger="command").stop_needs_setup  # created, linked, flagged
    flagged = Customer.objects.get(zoho_account_number_missing=True)
    new = make_customer()
    before = len(emulator.request_log)

    report = customer_sync(customer_id=new.pk, trigger="edit")  # a new customer's task

    assert report.stop_needs_setup
    assert "no customer is created until it does" in report.stop_reason
    assert len(emulator.request_log) == before  # tried moments ago: no request
    new.refresh_from_db()  # untouched: the schedule takes it once Zoho keeps the number
    assert (new.zoho_sync_status, new.zoho_billing_customer_id) == (SyncStatus.PENDING, None)

    output, code = run("zoho_sync_customers")  # a person asks: tried again at once
    assert code == 2
    sent = [(r.method, r.path) for r in emulator.request_log[before:]]
    assert sent == [("PUT", f"/customers/{flagged.zoho_billing_customer_id}")]


def test_a_field_that_changes_the_value_is_caught(emulator, customers):
    emulator.configure(number_custom_fields=("Account Number",))

    output, code = run("zoho_backfill_customers")

    assert code == 2
    assert re.search(r"carries '2025\d+' in the custom field 'Account Number'", output)
    assert zoho_posts(emulator) == 1
    assert Customer.objects.filter(zoho_account_number_missing=True).count() == 1


def test_an_organization_refusing_the_label_is_told_once(emulator, customers):
    emulator.configure(unknown_custom_field="refuse")

    output, code = run("zoho_backfill_customers")

    assert code == 2
    assert "Zoho refused the custom field 'Account Number'" in output
    assert "ZOHO_ACCOUNT_NUMBER_FIELD" in output
    # One report: the customer at hand and the run's stop, not a line per customer.
    assert len(re.findall(r"^  \S+ Failed: ", output, flags=re.MULTILINE)) == 1
    assert zoho_posts(emulator) == 1
    assert emulator.customers() == []
    assert statuses() == {SyncStatus.FAILED: CUSTOMERS}


def test_an_adoption_that_cannot_write_the_account_number_is_linked_and_stops(
    emulator, make_customer
):
    emulator.configure(unknown_custom_field="drop")
    paid = emulator.add_customer(display_name="Paid Online", email="paid@example.co.za")
    customer = make_customer(email="paid@example.co.za")

    report = customers_backfill(trigger="command")

    customer.refresh_from_db()
    assert report.stop_needs_setup
    assert customer.zoho_billing_customer_id == paid["customer_id"]
    assert customer.zoho_sync_status == SyncStatus.SYNCED
    assert customer.zoho_account_number_missing
    assert len(emulator.customers()) == 1


def test_check_credentials_checks_the_field_as_far_as_reads_tell(emulator, make_customer):
    output, code = run("zoho_check_credentials")
    assert code == 0
    assert "cannot tell, the organization has no customer" in output

    emulator.add_customer(display_name="Someone", email="someone@example.co.za")
    output, code = run("zoho_check_credentials")
    assert code == 0
    assert "cannot tell, Zoho customer" in output

    emulator.configure(number_custom_fields=("Account Number",))
    make_customer()
    customers_backfill(trigger="command")
    output, code = run("zoho_check_credentials")
    assert code == 2
    assert re.search(r"linked to our CT-2025-\d+, carries '2025\d+'", output)
    assert "ZOHO_ACCOUNT_NUMBER_FIELD" in output


def test_check_credentials_confirms_a_field_that_keeps_our_account_numbers(emulator, make_customer):
    make_customer()
    customers_backfill(trigger="command")

    output, code = run("zoho_check_credentials")

    assert code == 0
    assert "Custom field 'Account Number' keeps our account numbers" in output


# 4. Every create without a clear answer is an unknown outcome


@pytest.mark.parametrize(
    ("fault", "options"),
    [
        ("error_after_commit", {}),  # a JSON 500 after the commit
        ("empty_success", {}),  # a 201 without the customer
        ("error", {"status": 201}),  # "success" with an error code
        ("html_error", {"status": 200}),  # a body that does not parse
        ("lose_response", {}),  # the connection drops after the commit
        ("drop", {}),  # the connection drops before Zoho
    ],
)
def test_a_create_without_a_clear_answer_is_looked_for_after_it_settles(
    emulator, make_customer, settings, fault, options
):
    settings.ZOHO_CREATE_SETTLE_SECONDS = 0.6
    emulator.configure(list_lag_seconds=0.4)  # Zoho's search lags behind its creates
    unclear = [make_customer() for _ in range(3)]
    others = [make_customer() for _ in range(3)]
    for customer in unclear:
        emulator.inject(fault, method="POST", email=customer.email, **options)

    report = customers_backfill(trigger="command")

    assert report.ok
    assert_all_synced_once(emulator, unclear + others)
    for customer in unclear:
        first, last = SyncAttempt.objects.filter(customer=customer).order_by("id")
        assert first.outcome == AttemptOutcome.FAILED
        assert last.outcome in (AttemptOutcome.ADOPTED, AttemptOutcome.CREATED)


def test_creates_that_commit_then_fail_while_search_lags_make_no_duplicate(
    emulator, make_customer, settings
):
    settings.ZOHO_RATE_LIMIT_REQUESTS = 100
    settings.ZOHO_CREATE_SETTLE_SECONDS = 1.0
    emulator.configure(list_lag_seconds=0.8)
    customers = [make_customer() for _ in range(40)]
    for customer in customers[::6]:
        emulator.inject("error_after_commit", method="POST", email=customer.email)

    assert customers_backfill(trigger="command").ok
    assert_all_synced_once(emulator, customers)


# 5. Waiting for a create to settle is not a failure to repeat


def test_a_schedule_meeting_unsettled_creates_makes_no_attempt_and_says_until_when(
    emulator, make_customer, settings
):
    from billing_sync.tasks import sync_task

    settings.ZOHO_CREATE_SETTLE_SECONDS = 600
    customers = [make_customer() for _ in range(3)]
    for customer in customers:
        emulator.inject("lose_response", method="POST", email=customer.email)
    customers_backfill(trigger="command", max_wait=0)
    attempts = SyncAttempt.objects.exclude(outcome=AttemptOutcome.WAITING).count()
    left_waiting = SyncAttempt.objects.filter(outcome=AttemptOutcome.WAITING).count()
    requests = len(emulator.request_log)

    summaries = [sync_task() for _ in range(3)]

    # Each run records how it left them (waiting), and makes no attempt at Zoho.
    assert SyncAttempt.objects.exclude(outcome=AttemptOutcome.WAITING).count() == attempts
    waiting = SyncAttempt.objects.filter(outcome=AttemptOutcome.WAITING, final=True).count()
    assert waiting - left_waiting == 9
    assert len(emulator.request_log) == requests
    assert statuses() == {SyncStatus.FAILED: 3}
    for summary in summaries:
        assert "3 waiting" in summary
    for customer in Customer.objects.all():
        assert "looking in Zoho after" in customer.zoho_last_error


def test_a_retry_command_waits_for_settling_creates_then_looks(emulator, make_customer, settings):
    settings.ZOHO_CREATE_SETTLE_SECONDS = 0.5
    customer = make_customer()
    emulator.inject("lose_response", method="POST", email=customer.email)
    customers_backfill(trigger="command", max_wait=0)

    output, code = run("zoho_retry_failed")

    assert code == 0
    assert "for its earlier create to settle in Zoho" in output
    assert "adopted existing Zoho customer" in output
    assert len(emulator.customers()) == 1


def test_a_retry_without_wait_left_says_until_when(emulator, make_customer, settings):
    settings.ZOHO_CREATE_SETTLE_SECONDS = 600
    customer = make_customer()
    emulator.inject("lose_response", method="POST", email=customer.email)
    customers_backfill(trigger="command", max_wait=0)

    output, code = run("zoho_retry_failed", "--max-wait", "60")

    assert code == 1
    assert "Left for a later run: Zoho may still be creating this customer" in output
    assert "Waiting for an earlier create to settle: 1" in output
    assert SyncAttempt.objects.exclude(outcome=AttemptOutcome.WAITING).count() == 1
    left = SyncAttempt.objects.filter(outcome=AttemptOutcome.WAITING).latest("id")
    assert left.waiting_until == Customer.objects.get().zoho_create_sent_at + timedelta(seconds=600)


# 6. Another integration creates our customers during a run


class OtherIntegration(RunObserver):
    """At the run's `at`-th customer, a hosted payment page creates some of ours in Zoho."""

    def __init__(self, emulator, customers: list[Customer], *, at: int) -> None:
        self.emulator, self.customers, self.at = emulator, customers, at

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        if index != self.at:
            return
        for other in self.customers:
            fields: dict[str, Any] = {"display_name": other.display_name, "email": other.email}
            self.emulator.add_customer(**fields)


@pytest.mark.parametrize("sort_ignored", [False, True], ids=["newest-first", "order-ignored"])
def test_customers_created_elsewhere_during_a_run_are_adopted(
    emulator, customers, settings, sort_ignored
):
    # No index is young enough to create by without catching up: as if time passed between
    # every two creates (the run reads only what changed since its last read).
    settings.ZOHO_INDEX_MAX_AGE_SECONDS = 0
    emulator.configure(sort_ignored=sort_ignored)
    elsewhere = customers[14:19]

    report = customers_backfill(
        trigger="command", observer=OtherIntegration(emulator, elsewhere, at=5)
    )

    assert report.ok
    assert_all_synced_once(emulator, customers)
    adopted = SyncAttempt.objects.filter(outcome=AttemptOutcome.ADOPTED)
    assert sorted(adopted.values_list("customer_id", flat=True)) == [c.pk for c in elsewhere]
    assert zoho_posts(emulator) == CUSTOMERS - len(elsewhere)


# 9. Every variant through the backfill, the retry and the schedule


def wrong_organization(style: str, status: int):
    def setup(emulator, settings, customers) -> None:
        emulator.configure(organization_error=style, organization_error_status=status)
        settings.ZOHO_ORGANIZATION_ID = "999"

    def heal(emulator, settings) -> None:
        settings.ZOHO_ORGANIZATION_ID = EMULATOR_ORGANIZATION_ID

    return setup, heal


def configured(**changes: Any):
    def setup(emulator, settings, customers) -> None:
        emulator.configure(**changes)

    return setup


def healed(**changes: Any):
    def heal(emulator, settings) -> None:
        emulator.configure(**changes)

    return heal


def faulty_creates(kind: str, *, every: int, **changes: Any):
    def setup(emulator, settings, customers) -> None:
        emulator.configure(**changes)
        for customer in customers[::every]:
            emulator.inject(kind, method="POST", path="/customers", email=customer.email)

    return setup


def nothing_to_heal(emulator, settings) -> None:
    pass


LABEL_DEFINED = healed(custom_field_labels=("Account Number",), number_custom_fields=())
# (variant, setup, heal, whether the fault is the organization's)
VARIANTS = [
    ("organization-code-2", *wrong_organization("2", 400), True),
    ("organization-code-6041-403", *wrong_organization("6041", 403), True),
    ("organization-code-9017-401", *wrong_organization("9017", 401), True),
    ("token-without-create-scope", configured(scopes=(SCOPE_READ,)), healed(scopes=ALL), True),
    ("custom-field-created", configured(), nothing_to_heal, False),
    ("custom-field-dropped", configured(unknown_custom_field="drop"), LABEL_DEFINED, True),
    ("custom-field-refused", configured(unknown_custom_field="refuse"), LABEL_DEFINED, True),
    ("custom-field-a-number", configured(number_custom_fields=(LABEL,)), LABEL_DEFINED, True),
    ("every-create-refused", configured(refuse_creates=True), healed(refuse_creates=False), True),
    (
        "commit-then-500-search-lags",
        faulty_creates("error_after_commit", every=4, list_lag_seconds=0.2),
        nothing_to_heal,
        False,
    ),
    ("search-and-list-lag", configured(list_lag_seconds=0.5), nothing_to_heal, False),
    (
        "email-filter-ignored",
        faulty_creates("lose_response", every=7, email_filter_ignored=True),
        nothing_to_heal,
        False,
    ),
    ("token-endpoint-slow", configured(token_delay_seconds=0.5), nothing_to_heal, False),
]
HANDFUL = 5


@pytest.mark.parametrize(
    ("setup", "heal", "organization_at_fault"),
    [variant[1:] for variant in VARIANTS],
    ids=[variant[0] for variant in VARIANTS],
)
def test_every_variant_through_backfill_retry_and_schedule(
    emulator, settings, customers, setup, heal, organization_at_fault
):
    from billing_sync.tasks import sync_task

    setup(emulator, settings, customers)
    steps = [
        lambda: run("zoho_backfill_customers"),
        lambda: run("zoho_retry_failed"),
        sync_task,
        lambda: run("zoho_sync_customers"),
    ]
    for step in steps:
        before = len(emulator.request_log)
        step()
        assert_nothing_lost_or_duplicated(emulator)
        assert not Customer.objects.filter(zoho_sync_status=SyncStatus.NEEDS_ATTENTION).exists()
        if organization_at_fault:
            assert requests_spent(emulator, before) <= HANDFUL

    heal(emulator, settings)
    output, code = run("zoho_retry_failed")

    assert code == 0, output
    assert_all_synced_once(emulator, customers)
