"""Pacing: never more than the budget in any window, and a Zoho block pauses everything."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRunStatus,
    SyncStatus,
    ZohoApiState,
    ZohoRequestLog,
)
from billing_sync.run.runs import customers_backfill, customers_retry_failed
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from billing_sync.zoho.errors import RateLimitWaitExceeded, ZohoRateLimited
from billing_sync.zoho.pacing import LEASE_SECONDS, Budget, DailyBudget, RequestGate
from tests.helpers import FakeClock, most_in_any_window, new_gate

pytestmark = pytest.mark.django_db


def test_gate_admits_the_budget_then_waits_for_the_oldest_to_leave_the_window():
    clock = FakeClock()
    gate = RequestGate(
        budget=Budget(3, 10.0), request_timeout=5, max_wait=0, clock=clock, sleep=clock.sleep
    )
    for _ in range(3):
        gate.release(gate.acquire("GET", "/customers"), 200)
        clock.now += 1.0
    # Answers came back at +0, +1, +2 s; the first leaves the window 10 s after its answer.
    gate.release(gate.acquire("GET", "/customers"), 200)

    assert clock.slept == [pytest.approx(7.0)]


def test_gate_counts_an_unanswered_request_until_its_timeout():
    clock = FakeClock()
    gate = RequestGate(
        budget=Budget(1, 10.0), request_timeout=5, max_wait=0, clock=clock, sleep=clock.sleep
    )
    gate.acquire("POST", "/customers")  # its process died: never released

    gate.acquire("GET", "/customers")

    # Its timeout, plus the most it can have waited in its lease before going out, plus the window.
    assert sum(clock.slept) == pytest.approx(5 + LEASE_SECONDS + 10, abs=0.1)


def test_gates_in_two_processes_share_the_budget_lease_by_lease():
    clock = FakeClock()
    first, second = new_gate(clock, Budget(100, 10.0)), new_gate(clock, Budget(100, 10.0))
    assert first.lease_size == second.lease_size == 10

    for _ in range(95):
        first.release(first.acquire("POST", "/customers"), 201)
    # Its last lease holds 5 unsent requests: the whole budget is taken until it gives them back.
    assert ZohoRequestLog.objects.count() == 100
    first.close()
    for _ in range(5):
        second.release(second.acquire("POST", "/customers"), 201)
    assert clock.slept == []
    assert ZohoRequestLog.objects.count() == 100

    second.acquire("POST", "/customers")

    assert sum(clock.slept) == pytest.approx(10.0)


def test_closing_gives_back_unsent_requests_to_the_budget_and_the_day():
    clock = FakeClock()
    gate = new_gate(clock, Budget(100, 10.0), daily=DailyBudget(1000, 0))
    for _ in range(3):
        gate.release(gate.acquire("GET", "/customers"), 200)

    gate.close()

    logged = ZohoRequestLog.objects.order_by("pk")
    assert [(r.method, r.path, r.http_status) for r in logged] == [("GET", "/customers", 200)] * 3
    assert all(r.done_at is not None for r in logged)
    assert ZohoApiState.objects.get().day_counts == {str(int(1_000_000 // 60)): 3}


def test_a_lease_older_than_its_lifetime_is_given_back_before_sending():
    clock = FakeClock()
    gate = new_gate(clock, Budget(100, 10.0))
    gate.release(gate.acquire("GET", "/customers"), 200)
    clock.now += LEASE_SECONDS + 0.1

    gate.release(gate.acquire("POST", "/customers"), 201)
    gate.close()

    sent = sorted(r.sent_at.timestamp() for r in ZohoRequestLog.objects.all())
    assert sent == [pytest.approx(1_000_000.0), pytest.approx(clock.now)]


def test_run_never_exceeds_the_budget_in_any_window(emulator, make_customer, settings):
    settings.ZOHO_RATE_LIMIT_REQUESTS = 5
    settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 0.5
    emulator.configure(rate_limit_requests=5, rate_limit_window_seconds=0.5, block_seconds=30)
    for _ in range(12):
        make_customer()

    started = time.monotonic()
    report = customers_backfill(trigger="command")
    elapsed = time.monotonic() - started

    assert report.ok
    statuses = {r.status for r in emulator.request_log}
    assert 429 not in statuses
    arrivals = [r.time for r in emulator.request_log]
    assert len(arrivals) == 13
    assert most_in_any_window(arrivals, 0.5) <= 5
    assert elapsed >= 1.0  # 13 requests at 5 per 0.5 s need at least two full windows


def test_block_delays_the_run_and_it_completes(emulator, make_customer):
    emulator.configure(rate_limit_requests=4, rate_limit_window_seconds=60, block_seconds=1)
    customers = [make_customer() for _ in range(6)]

    report = customers_backfill(trigger="command")

    assert report.ok
    assert len(emulator.customers()) == 6
    assert all(
        c.zoho_sync_status == SyncStatus.SYNCED
        for c in Customer.objects.filter(pk__in=[c.pk for c in customers])
    )
    limited = SyncAttempt.objects.filter(outcome=AttemptOutcome.RATE_LIMITED)
    assert limited.count() == 1
    assert limited.get().zoho_code == 44


def test_max_wait_zero_stops_at_first_block_and_leaves_the_rest_failed(emulator, make_customer):
    emulator.configure(rate_limit_requests=3, rate_limit_window_seconds=60, block_seconds=1)
    customers = [make_customer() for _ in range(5)]

    report = customers_backfill(trigger="command", max_wait=0)

    assert not report.ok
    assert report.run.status == SyncRunStatus.STOPPED
    assert report.stop_reason.startswith("rate limited by Zoho until ")
    statuses = [Customer.objects.get(pk=c.pk).zoho_sync_status for c in customers]
    assert statuses == [SyncStatus.SYNCED] * 2 + [SyncStatus.FAILED] * 3
    failed = Customer.objects.filter(zoho_sync_status=SyncStatus.FAILED)
    assert all(c.zoho_last_error.startswith("rate limited by Zoho until") for c in failed)
    assert report.run.failed_count == 3

    retry = customers_retry_failed(trigger="command")

    assert retry.ok
    assert len(emulator.customers()) == 5


def test_429_for_one_customer_pauses_the_org_not_that_customer(emulator, make_customer):
    emulator.configure(block_seconds=1)  # its Retry-After
    emulator.inject("rate_limit", method="POST", email="blocked@example.co.za", times=1)
    make_customer(email="blocked@example.co.za")
    make_customer()

    report = customers_backfill(trigger="command")

    assert report.ok
    assert Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).count() == 2


def test_a_block_seen_by_one_process_holds_back_another(emulator, make_customer):
    emulator.configure(block_seconds=60)
    emulator.block_for(60)
    first = ZohoClient(zoho_config(), max_wait=0)
    with pytest.raises(ZohoRateLimited):
        first.list_customers()  # gets the 429 and records the block for everyone
    sent = len(emulator.request_log)

    second = ZohoClient(zoho_config(), max_wait=0)
    with pytest.raises(RateLimitWaitExceeded) as caught:
        second.list_customers()

    assert len(emulator.request_log) == sent  # the second sent nothing
    assert caught.value.until > datetime.now(tz=UTC) + timedelta(seconds=50)
    assert ZohoApiState.objects.get().block_reason.startswith("For security reasons")


def test_without_retry_after_the_documented_default_block_applies(emulator, settings):
    settings.ZOHO_DEFAULT_BLOCK_SECONDS = 1.5
    emulator.configure(send_retry_after=False)
    emulator.inject("rate_limit", times=1)
    client = ZohoClient(zoho_config(), max_wait=0)
    before = datetime.now(tz=UTC)

    with pytest.raises(ZohoRateLimited) as caught:
        client.list_customers()

    assert caught.value.retry_after is None
    until = ZohoApiState.objects.get().blocked_until
    assert timedelta(seconds=1.4) < until - before < timedelta(seconds=2)
    started = time.monotonic()
    ZohoClient(zoho_config(), max_wait=5).list_customers()
    assert time.monotonic() - started >= 1.0


def test_daily_budget_stops_a_run_cleanly_and_says_when_the_next_request_may_go(
    emulator, make_customer, settings
):
    settings.ZOHO_DAILY_LIMIT = 5
    settings.ZOHO_DAILY_RESERVE = 2
    customers = [make_customer() for _ in range(4)]
    started = datetime.now(tz=UTC)

    report = customers_backfill(trigger="command")

    # 3 requests are ours today: the list and two creates; two are kept for others.
    assert len(emulator.request_log) == 3
    assert report.run.status == SyncRunStatus.STOPPED
    assert (
        "the daily Zoho budget is used (3 of 5 requests in the last 24 hours, "
        "2 kept for other integrations)" in report.stop_reason
    )
    state = ZohoApiState.objects.get()
    first_minute = datetime.fromtimestamp(60 * min(map(int, state.day_counts)), tz=UTC)
    assert (
        timedelta(0)
        <= first_minute - started.replace(second=0, microsecond=0)
        <= timedelta(minutes=1)
    )
    # A day after the end of the minute they went, plus the 5 s they may have taken to arrive.
    next_at = first_minute + timedelta(days=1, minutes=2)
    assert f"at {next_at:%Y-%m-%d %H:%M:%S} UTC" in report.stop_reason
    statuses = [Customer.objects.get(pk=c.pk).zoho_sync_status for c in customers]
    assert statuses == [SyncStatus.SYNCED] * 2 + [SyncStatus.FAILED] * 2

    # In minutes: a day and two, so the counted requests have left the last 24 hours and the
    # seconds they may have taken to arrive, whatever the second of the minute is now.
    a_day = 24 * 60 + 2
    state.day_counts = {str(int(minute) - a_day): n for minute, n in state.day_counts.items()}
    state.save()
    assert customers_retry_failed(trigger="command").ok


def test_budget_counts_requests_of_every_client_together(emulator, make_customer, settings):
    settings.ZOHO_RATE_LIMIT_REQUESTS = 4
    settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 0.5
    emulator.configure(rate_limit_requests=4, rate_limit_window_seconds=0.5, block_seconds=30)
    clients = [ZohoClient(zoho_config()) for _ in range(3)]

    for _ in range(4):
        for client in clients:
            client.list_customers()

    arrivals = [r.time for r in emulator.request_log]
    assert len(arrivals) == 12
    assert 429 not in {r.status for r in emulator.request_log}
    assert most_in_any_window(arrivals, 0.5) <= 4
