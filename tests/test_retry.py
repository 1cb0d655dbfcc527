"""The retry policy: which errors are worth trying again, and after how long. What a customer's
attempt does after each kind of error is asserted by what runs record, against the emulator
(tests/test_run_truth.py, tests/test_sync_service.py, tests/test_first_contact.py)."""

from __future__ import annotations

import pytest

from billing_sync.zoho.errors import (
    ZohoAuthError,
    ZohoInvalidData,
    ZohoNotFound,
    ZohoRateLimited,
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
