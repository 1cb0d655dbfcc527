"""When the work will be done, against figures worked out by hand: bound by the per-minute
budget, bound by the daily share, and with requests the last 24 hours already used; and where
a person reads it (zoho_plan, the admin, /metrics)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from billing_sync.models import ZohoApiState
from billing_sync.run.estimate import estimate_finish
from tests.commands import run, run_json
from tests.samples import samples_of, value

pytestmark = pytest.mark.django_db

# A moment on a minute's boundary: 1,800,000,000 s is minute 30,000,000.
NOW = datetime.fromtimestamp(1_800_000_000, tz=UTC)


@pytest.fixture
def limits(settings):
    settings.ZOHO_TIMEOUT_SECONDS = 30.0  # a counted request may take 30 s (+ 0.5 s leased)
    settings.ZOHO_DAILY_RESERVE = 100
    return settings


def test_bound_by_the_per_minute_budget(limits):
    limits.ZOHO_RATE_LIMIT_REQUESTS, limits.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 30, 60.0
    limits.ZOHO_DAILY_LIMIT = 0  # no daily count

    estimate = estimate_finish(100, now=NOW)

    # 30 a minute: the 100th request (the 99th from 0) goes in the 4th minute, 3 minutes on.
    assert (estimate.requests, estimate.seconds, estimate.limited_by) == (100, 180.0, "rate")
    assert estimate.finishes_at == NOW + timedelta(seconds=180)


def test_bound_by_the_daily_share(limits):
    limits.ZOHO_RATE_LIMIT_REQUESTS, limits.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 1000, 60.0
    limits.ZOHO_DAILY_LIMIT = 1000  # a share of 900 a day

    estimate = estimate_finish(1000, now=NOW)

    # 900 go at once; the 901st waits until the first of them leaves the span: their minute
    # ends at +60 s, plus a day (86,400 s) and 30.5 s for the request to arrive, to the next
    # minute: 86,490.5 s -> 86,520 s. The last 100 all free in that minute.
    assert (estimate.seconds, estimate.limited_by) == (86_520.0, "daily")


def test_requests_the_last_24_hours_used_are_counted(limits):
    limits.ZOHO_RATE_LIMIT_REQUESTS, limits.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 1000, 60.0
    limits.ZOHO_DAILY_LIMIT = 1000
    an_hour_ago = 30_000_000 - 60  # the minute an hour before NOW
    ZohoApiState.objects.create(singleton=1, day_counts={str(an_hour_ago): 500})

    assert estimate_finish(400, now=NOW).seconds == 0.0  # 900 - 500 left today: at once
    estimate = estimate_finish(450, now=NOW)

    # The 401st waits for the first of those 500 to leave: (an_hour_ago + 1) minutes, + a day
    # and 30.5 s, to the minute: 82,890.5 s after NOW -> 82,920 s.
    assert (estimate.seconds, estimate.limited_by) == (82_920.0, "daily")


def test_the_plan_says_when_the_run_finishes_and_what_a_higher_limit_gives(
    emulator, make_customer, settings
):
    settings.ZOHO_DAILY_LIMIT, settings.ZOHO_DAILY_RESERVE = 10, 5  # a share of 5 a day
    for _ in range(12):
        make_customer()

    document, code = run_json("zoho_plan")

    estimate = document["estimate"]
    assert code == 0
    assert estimate["requests"] == document["requests"] + 12  # the reads again, 12 creates
    assert estimate["limited_by"] == "daily"
    assert estimate["seconds"] > 86_400  # the share frees a day later
    assert datetime.fromisoformat(estimate["finishes_at"]).utcoffset() is not None
    output, _ = run("zoho_plan")
    assert "finishes around " in output
    assert "(bound by the daily share)" in output
    assert "With ZOHO_DAILY_LIMIT 2000 (a higher plan, or Zoho support raising it)" in output


def test_metrics_and_the_admin_show_the_backlog_and_when_it_is_done(
    client, emulator, make_customer, settings, admin_client
):
    settings.ZOHO_RATE_LIMIT_REQUESTS, settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 30, 60.0
    settings.ZOHO_DAILY_LIMIT = 0
    for _ in range(40):
        make_customer()

    samples = samples_of(client.get("/metrics").content.decode())

    assert value(samples, "billing_sync_backlog_customers") == 40
    finish = value(samples, "billing_sync_estimated_finish_timestamp_seconds")
    # 40 creates and a list page: 41 requests, 30 a minute: the last a minute on.
    assert 55 <= finish - time.time() <= 65
    page = admin_client.get("/admin/").content.decode()
    assert "40</strong> customers still need a request" in page
    assert "(about 41 requests): at the current limits done around" in page

    settings.ZOHO_RATE_LIMIT_REQUESTS = 1000  # the run itself need not wait
    assert run_json("zoho_backfill_customers")[1] == 0
    samples = samples_of(client.get("/metrics").content.decode())
    assert value(samples, "billing_sync_backlog_customers") == 0
    assert value(samples, "billing_sync_estimated_finish_timestamp_seconds") == 0
    assert "None: every customer that belongs in Zoho is in Zoho and in step" in (
        admin_client.get("/admin/").content.decode()
    )
