"""The daily cap: never more than the day's share in any 24 hours, on whatever clock Zoho counts."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing_sync.models import Customer, SyncRunStatus, SyncStatus, ZohoApiState
from billing_sync.run.runs import customers_backfill, customers_retry_failed
from billing_sync.zoho.errors import DailyBudgetUsed
from billing_sync.zoho.pacing import (
    DAY_SECONDS,
    LEASE_SECONDS,
    DailyBudget,
    RequestGate,
)
from tests.helpers import CLOCK_START, GATE_TIMEOUT, FakeClock, most_in_any_window, new_gate

pytestmark = pytest.mark.django_db

# The longest a request can take to arrive at Zoho after its lease: it counts that much longer.
ARRIVAL = GATE_TIMEOUT + LEASE_SECONDS


def send(gate: RequestGate, count: int) -> None:
    """Send `count` requests now, then settle the gate's books (as a run does at its end)."""
    for _ in range(count):
        gate.release(gate.acquire("GET", "/customers"), 200)
    gate.close()


def leaves_count_at(sent_at: float) -> float:
    """When a request sent at `sent_at` leaves the count: a day and the time it may have taken
    to arrive after the end of its minute."""
    return (math.floor(sent_at / 60) + 1) * 60 + DAY_SECONDS + ARRIVAL


def next_request_at(sent_at: float) -> float:
    """What the message names: that time rounded up to the minute."""
    return math.ceil(leaves_count_at(sent_at) / 60) * 60


def most_in_any_day(times: list[float]) -> int:
    return most_in_any_window(times, DAY_SECONDS)


def test_requests_late_in_one_day_still_count_early_in_the_next():
    # The old rule began a day with its first request and reset the count 24 hours later: the
    # seven requests sent in that day's last minutes would have been forgotten at its end.
    clock = FakeClock()
    gate = new_gate(clock, daily=DailyBudget(10, 2))  # a share of 8 a day
    send(gate, 1)
    clock.now = CLOCK_START + DAY_SECONDS - 120
    send(gate, 7)
    late = clock.now

    clock.now = CLOCK_START + DAY_SECONDS + 120  # the first request has left the last 24 hours
    send(gate, 1)
    with pytest.raises(DailyBudgetUsed) as caught:
        send(gate, 1)

    assert caught.value.resets_at.timestamp() == next_request_at(late)
    assert sum(ZohoApiState.objects.get().day_counts.values()) == 8


def test_the_message_names_when_the_next_request_may_go():
    clock = FakeClock()
    clock.now = datetime(2026, 12, 1, 14, 0, 30, tzinfo=UTC).timestamp()
    gate = new_gate(clock, daily=DailyBudget(5, 1))
    send(gate, 2)
    clock.now += 3 * 60
    send(gate, 2)

    clock.now += 3600
    with pytest.raises(DailyBudgetUsed) as caught:
        send(gate, 1)

    # The two of 14:00 leave at 14:01:00 + 24 h + 5.5 s: one more may go from 14:02 the next day.
    assert "(4 of 5 requests in the last 24 hours, 1 kept for other integrations)" in str(
        caught.value
    )
    assert "at 2026-12-02 14:02:00 UTC" in str(caught.value)
    clock.now = caught.value.resets_at.timestamp() - 60
    with pytest.raises(DailyBudgetUsed):
        send(gate, 1)
    clock.now += 60
    send(gate, 2)
    with pytest.raises(DailyBudgetUsed) as caught:
        send(gate, 1)
    # Now the two of 14:03 are next: they leave at 14:04:00 + 24 h + 5.5 s.
    assert "at 2026-12-02 14:05:00 UTC" in str(caught.value)


def test_the_count_frees_up_once_the_last_24_hours_have_passed():
    clock = FakeClock()
    gate = new_gate(clock, daily=DailyBudget(3, 0))
    send(gate, 3)
    clock.now = leaves_count_at(CLOCK_START) - 0.5
    with pytest.raises(DailyBudgetUsed):
        send(gate, 1)

    clock.now += 0.5
    send(gate, 3)

    assert ZohoApiState.objects.get().day_counts == {str(math.floor(clock.now / 60)): 3}


def test_never_more_than_the_share_in_any_24_hours_over_days_of_bursts():
    clock = FakeClock()
    share = 50
    gates = [new_gate(clock, daily=DailyBudget(share + 10, 10)) for _ in range(2)]  # two processes
    draw = random.Random(7)
    sent: list[float] = []
    refused: list[tuple[float, float]] = []  # (when, the time the message named)
    while clock.now < CLOCK_START + 4 * DAY_SECONDS:
        clock.now += draw.choice([1, 30, 600, 3600, 5 * 3600])
        gate = draw.choice(gates)
        try:
            for _ in range(draw.randint(1, 12)):
                gate.release(gate.acquire("GET", "/customers"), 200)
                sent.append(clock.now)
        except DailyBudgetUsed as exc:
            refused.append((clock.now, exc.resets_at.timestamp()))
        finally:
            gate.close()

    assert len(refused) > 3  # the cap bound again and again...
    assert len(sent) > 2 * share
    assert most_in_any_day(sent) <= share  # ...and held in every 24 hours
    assert all(now < next_at <= now + DAY_SECONDS + 120 for now, next_at in refused)


def test_unsent_requests_given_back_leave_the_count():
    clock = FakeClock()
    gate = new_gate(clock, daily=DailyBudget(100, 0))  # a lease takes up to 50
    gate.release(gate.acquire("GET", "/customers"), 200)
    assert sum(ZohoApiState.objects.get().day_counts.values()) == 50  # the whole lease counts

    gate.close()

    assert ZohoApiState.objects.get().day_counts == {str(math.floor(CLOCK_START / 60)): 1}


def test_a_block_gives_the_lease_back_to_the_day_too():
    clock = FakeClock()
    gate = new_gate(clock, daily=DailyBudget(100, 0))
    gate.release(gate.acquire("GET", "/customers"), 429)

    gate.record_block(seconds=60, reason="code 44")

    assert ZohoApiState.objects.get().day_counts == {str(math.floor(CLOCK_START / 60)): 1}


def test_a_lease_prunes_the_minutes_that_left_and_stays_flat():
    clock = FakeClock()
    clock.now = CLOCK_START + 2 * DAY_SECONDS
    minutes_back = 30 * 60  # a request in every minute of the last 30 hours
    now_minute = math.floor(clock.now / 60)
    ZohoApiState.objects.create(
        singleton=1, day_counts={str(now_minute - m): 1 for m in range(1, minutes_back + 1)}
    )
    gate = new_gate(clock, daily=DailyBudget(5000, 0))

    with CaptureQueriesContext(connection) as full:
        gate.acquire("GET", "/customers")

    counts = ZohoApiState.objects.get().day_counts
    # What is left: the minutes that still touch the last 24 hours and 5.5 s, and this lease.
    assert len(counts) <= 24 * 60 + 2
    assert min(map(int, counts)) == math.floor((clock.now - DAY_SECONDS - ARRIVAL) / 60)
    ZohoApiState.objects.update(day_counts={})
    with CaptureQueriesContext(connection) as empty:
        new_gate(clock, daily=DailyBudget(5000, 0)).acquire("GET", "/customers")
    assert len(full) == len(empty)


def test_with_the_daily_limit_off_the_state_row_is_not_written():
    clock = FakeClock()
    gate = new_gate(clock, daily=DailyBudget(0, 0))

    with CaptureQueriesContext(connection) as queries:
        send(gate, 3)

    writes = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert not any("zohoapistate" in sql.lower() for sql in writes)
    assert ZohoApiState.objects.get().day_counts == {}


def minute_key(moment: datetime) -> str:
    return str(math.floor(moment.timestamp() / 60))


def test_a_run_after_a_day_turned_over_stops_until_the_last_24_hours_allow(
    emulator, make_customer, settings
):
    settings.ZOHO_DAILY_LIMIT = 10
    settings.ZOHO_DAILY_RESERVE = 2
    # The whole share went 23 h 50 min ago: whichever day Zoho counts, the next may have begun.
    went_at = datetime.now(tz=UTC) - timedelta(hours=23, minutes=50)
    ZohoApiState.objects.create(singleton=1, day_counts={minute_key(went_at): 8})
    customer = make_customer()

    report = customers_backfill(trigger="command")

    assert emulator.request_log == []
    assert report.run.status == SyncRunStatus.STOPPED
    next_at = datetime.fromtimestamp(next_request_at(went_at.timestamp()), tz=UTC)
    assert f"at {next_at:%Y-%m-%d %H:%M:%S} UTC" in report.stop_reason
    assert "; 1 customer(s) remain, which the schedule takes up again from then" in (
        report.stop_reason
    )
    assert Customer.objects.get(pk=customer.pk).zoho_sync_status == SyncStatus.FAILED

    # A quarter of an hour later those requests have left the last 24 hours.
    went_at -= timedelta(minutes=15)
    ZohoApiState.objects.update(day_counts={minute_key(went_at): 8})

    assert customers_retry_failed(trigger="command").ok
    assert Customer.objects.get(pk=customer.pk).zoho_sync_status == SyncStatus.SYNCED
    assert len(emulator.customers()) == 1
