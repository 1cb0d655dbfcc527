"""The retry policy: which errors are worth trying again, after how long, and what a customer's
attempt does next after each kind of error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError

from billing_sync.services.customer_sync import Next, next_step
from billing_sync.services.run_stops import AccountFieldUnchecked
from billing_sync.zoho.errors import (
    RateLimitWaitExceeded,
    ZohoAuthError,
    ZohoError,
    ZohoInvalidData,
    ZohoNotFound,
    ZohoOrganizationError,
    ZohoRateLimited,
    ZohoTokenThrottled,
    ZohoTransient,
)
from billing_sync.zoho.retry import backoff_seconds, should_retry


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (ZohoTransient("500"), True),
        (ZohoTransient("timed out", request_sent=False), True),
        (ZohoInvalidData("refused"), False),
        (ZohoRateLimited("blocked"), False),
        (ZohoNotFound("gone"), False),
        (ZohoAuthError("no"), False),
    ],
)
def test_only_passing_failures_are_tried_again(error, retry):
    assert should_retry(error) is retry


def test_backoff_doubles_up_to_its_cap_with_jitter_between_half_and_all():
    lowest = [backoff_seconds(n, base=2, cap=60, chance=lambda: 0.0) for n in range(1, 8)]
    highest = [backoff_seconds(n, base=2, cap=60, chance=lambda: 0.999999) for n in range(1, 8)]

    assert lowest == [1, 2, 4, 8, 16, 30, 30]
    assert [round(h) for h in highest] == [2, 4, 8, 16, 32, 60, 60]


def test_backoff_spreads_processes_that_retry_together():
    delays = {backoff_seconds(3, base=2) for _ in range(50)}

    assert len(delays) > 1
    assert all(4 <= delay <= 8 for delay in delays)


@pytest.mark.parametrize(
    ("error", "step"),
    [
        (RateLimitWaitExceeded(until=datetime(2026, 1, 1, tzinfo=UTC)), Next.STOP_RUN),
        (ZohoTokenThrottled("access denied"), Next.STOP_RUN),
        (ZohoOrganizationError("not a user of this organization"), Next.STOP_RUN),
        (ZohoAuthError("scope"), Next.STOP_RUN),
        (AccountFieldUnchecked(ZohoTransient("500")), Next.STOP_RUN),
        (ZohoRateLimited("code 1070"), Next.WAIT_FOR_BLOCK),
        (ZohoInvalidData("refused"), Next.PLACE_REFUSAL),
        (ZohoTransient("502"), Next.RETRY),
        (ZohoNotFound("gone"), Next.GIVE_UP),
        (ZohoError("teapot"), Next.GIVE_UP),
        (IntegrityError("linked elsewhere"), Next.GIVE_UP),
    ],
)
def test_what_a_customer_attempt_does_after_each_kind_of_error(error, step):
    assert next_step(error) is step
