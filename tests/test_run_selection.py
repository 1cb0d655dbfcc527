"""A run reads its customers a chunk at a time, keeps counts, and writes creates ahead in groups."""

from __future__ import annotations

import pytest

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncStatus
from billing_sync.run import selection as run_selection
from billing_sync.run.report import ResultCollector, RunObserver
from billing_sync.run.runs import customers_backfill, customers_retry_failed
from tests.helpers import zoho_account_counts, zoho_posts
from zoho_emulator.customers import FIRST_CUSTOMER_ID

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(run_selection, "CHUNK_SIZE", 3)


class AddsACustomerMidRun(RunObserver):
    """A person adds a customer while the run works on its second customer."""

    def __init__(self, make_customer) -> None:
        self.make_customer = make_customer
        self.added: Customer | None = None
        self.listed: list[str] = []

    def run_started(self, run, customers) -> None:
        self.listed = [customer.account_number for customer in customers]

    def customer_started(self, index, total, customer) -> None:
        if index == 2:
            self.added = self.make_customer()


def test_run_reads_chunk_after_chunk_in_order_and_leaves_later_customers(
    emulator, make_customer, small_chunks
):
    customers = [make_customer() for _ in range(8)]
    observer = AddsACustomerMidRun(make_customer)

    report = customers_backfill(trigger="command", observer=observer)

    assert report.ok
    assert (report.selected_count, report.synced_count, report.attempted_count) == (8, 8, 8)
    assert observer.listed == [customer.account_number for customer in customers]
    synced_order = SyncAttempt.objects.filter(run=report.run).order_by("finished_at", "pk")
    assert [a.account_number for a in synced_order] == observer.listed
    observer.added.refresh_from_db()
    assert observer.added.zoho_sync_status == SyncStatus.PENDING  # the next run takes it

    later = customers_backfill(trigger="command")

    assert (later.selected_count, later.synced_count) == (1, 1)
    assert set(zoho_account_counts(emulator).values()) == {1}
    assert len(emulator.customers()) == 9


def test_stopped_run_leaves_failed_exactly_its_unfinished_customers_across_chunks(
    emulator, make_customer, small_chunks
):
    emulator.configure(rate_limit_requests=4, rate_limit_window_seconds=60, block_seconds=1)
    customers = [make_customer() for _ in range(8)]
    collector = ResultCollector()

    report = customers_backfill(trigger="command", max_wait=0, observer=collector, limit=7)

    statuses = [Customer.objects.get(pk=c.pk).zoho_sync_status for c in customers]
    # 1 list + 3 creates fit the budget; the 4th create is refused; the 8th is past the limit.
    assert statuses == [SyncStatus.SYNCED] * 3 + [SyncStatus.FAILED] * 4 + [SyncStatus.PENDING]
    # Four attempted (the 4th refused by the block), three never reached: failed all the same.
    assert (report.synced_count, report.failed_count, report.attempted_count) == (3, 4, 4)
    assert report.unreached_count == report.run.unreached_count == 3
    assert [r.outcome for r in collector.results] == [AttemptOutcome.CREATED] * 3 + [
        AttemptOutcome.RATE_LIMITED
    ]
    assert report.run.failed_count == 4


def test_creates_written_ahead_but_never_sent_are_undone_when_the_run_stops(
    emulator, make_customer, settings
):
    # Our budget 100 per minute: groups (and leases) of 10. Zoho allows 14: the list, the first
    # group's 10 creates, and 3 of the second group's creates, whose rest was written ahead.
    settings.ZOHO_RATE_LIMIT_REQUESTS = 100
    emulator.configure(rate_limit_requests=14, rate_limit_window_seconds=60, block_seconds=1)
    customers = [make_customer() for _ in range(15)]

    report = customers_backfill(trigger="command", max_wait=0)

    assert report.synced_count == 13
    refused, never_sent = (Customer.objects.get(pk=c.pk) for c in customers[13:])
    assert [a.outcome for a in SyncAttempt.objects.filter(customer=refused)] == ["rate_limited"]
    assert not SyncAttempt.objects.filter(customer=never_sent).exists()
    for customer in (refused, never_sent):
        assert customer.zoho_sync_status == SyncStatus.FAILED
        assert customer.zoho_create_sent_at is None  # nothing in doubt: no search needed
    assert not SyncAttempt.objects.filter(outcome=AttemptOutcome.SENDING).exists()
    posts_before = zoho_posts(emulator)
    requests_before = len(emulator.request_log)

    retry = customers_retry_failed(trigger="command")

    assert retry.ok
    assert zoho_posts(emulator) == posts_before + 2
    assert len(emulator.request_log) == requests_before + 2 + 1  # one list, two creates
    assert len(emulator.customers()) == 15
    assert set(zoho_account_counts(emulator).values()) == {1}


def test_a_created_id_linked_elsewhere_fails_that_customer_and_the_rest_are_written(
    emulator, make_customer, settings
):
    settings.ZOHO_RATE_LIMIT_REQUESTS = 100  # groups of 10: the second group's are written together
    customers = [make_customer() for _ in range(13)]
    # Someone linked another local customer by hand to the id Zoho gives the 12th create.
    taken = str(FIRST_CUSTOMER_ID + 11)
    make_customer(zoho_billing_customer_id=taken, zoho_sync_status=SyncStatus.SYNCED)

    report = customers_backfill(trigger="command")

    assert (report.synced_count, report.failed_count) == (12, 1)
    assert not report.ok
    unlinked = Customer.objects.get(pk=customers[11].pk)
    assert unlinked.zoho_sync_status == SyncStatus.FAILED
    assert "already linked to another local customer" in unlinked.zoho_last_error
    attempt = SyncAttempt.objects.get(customer=unlinked)
    assert (attempt.outcome, attempt.zoho_customer_id) == (AttemptOutcome.FAILED, taken)
    others = Customer.objects.filter(pk__in=[c.pk for i, c in enumerate(customers) if i != 11])
    assert {c.zoho_sync_status for c in others} == {SyncStatus.SYNCED}
    assert report.run.synced_count == 12
