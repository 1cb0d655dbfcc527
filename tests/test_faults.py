"""The fault matrix: whatever Zoho does, a run finishes or stops cleanly, with 0 duplicates,
every failure recorded with a clear reason, and a later run completes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncStatus, ZohoApiState
from billing_sync.services.sync import customers_backfill, customers_retry_failed
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from tests.conftest import zoho_account_counts

pytestmark = pytest.mark.django_db

CUSTOMERS = 4


def server_errors(emulator, settings) -> None:
    emulator.inject("error", method="POST", path="/customers", status=500, times=None)


def slow_answers(emulator, settings) -> None:
    settings.ZOHO_TIMEOUT_SECONDS = 0.2
    emulator.inject("slow", method="POST", path="/customers", delay=0.35, times=None)


def dropped_connections(emulator, settings) -> None:
    emulator.inject("drop", times=None)


def lost_create_answers(emulator, settings) -> None:
    emulator.inject("lose_response", method="POST", path="/customers", times=None)


def token_revoked_mid_run(emulator, settings) -> None:
    ZohoClient(zoho_config()).list_customers()  # a token is cached ...
    emulator.revoke_access_tokens()  # ... and Zoho no longer accepts it


def token_endpoint_throttled(emulator, settings) -> None:
    emulator.inject("token_throttle", times=None)


def org_blocked(emulator, settings) -> None:
    emulator.configure(block_seconds=60)
    emulator.block_for(60)


def daily_limit(emulator, settings) -> None:
    emulator.configure(daily_limit=2, daily_window_seconds=120)


def concurrency_limit(emulator, settings) -> None:
    """Another integration keeps a slow request in flight; Zoho allows one at a time."""
    emulator.configure(concurrency_limit=1)
    emulator.inject("slow", method="GET", delay=1.0, times=1)
    token = requests.post(
        f"{emulator.accounts_url}/oauth/v2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": settings.ZOHO_CLIENT_ID,
            "client_secret": settings.ZOHO_CLIENT_SECRET,
            "refresh_token": settings.ZOHO_REFRESH_TOKEN,
        },
        timeout=5,
    ).json()["access_token"]
    other = threading.Thread(
        target=requests.get,
        args=(f"{emulator.api_base_url}/customers",),
        kwargs={
            "headers": {
                "Authorization": f"Zoho-oauthtoken {token}",
                "X-com-zoho-subscriptions-organizationid": settings.ZOHO_ORGANIZATION_ID,
            },
            "timeout": 5,
        },
    )
    other.start()
    deadline = time.monotonic() + 5
    while not emulator.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    _background.append(other)


def html_error_pages(emulator, settings) -> None:
    emulator.inject("html_error", status=502, times=None)


_background: list[threading.Thread] = []


def heal(emulator, settings) -> None:
    """Time passes and Zoho recovers: faults, blocks and limits gone, our creates settled."""
    while _background:
        _background.pop().join()
    emulator.clear_faults()
    emulator.configure(daily_limit=None, concurrency_limit=None)
    emulator.block_for(0)
    ZohoApiState.objects.update(blocked_until=None)  # the block we recorded has run out
    time.sleep(settings.ZOHO_CREATE_SETTLE_SECONDS)


FAULTS: list[Callable] = [
    server_errors,
    slow_answers,
    dropped_connections,
    lost_create_answers,
    token_revoked_mid_run,
    token_endpoint_throttled,
    org_blocked,
    daily_limit,
    concurrency_limit,
    html_error_pages,
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
def test_run_survives_the_fault_and_a_later_run_completes(emulator, make_customer, settings, fault):
    settings.ZOHO_MAX_ATTEMPTS = 2
    customers = [make_customer() for _ in range(CUSTOMERS)]
    fault(emulator, settings)

    first = customers_backfill(trigger="command", max_wait=0)

    assert max(zoho_account_counts(emulator).values(), default=0) <= 1
    assert first.run.finished_at is not None
    for customer in Customer.objects.all():
        assert customer.zoho_sync_status in (SyncStatus.SYNCED, SyncStatus.FAILED)
        if customer.zoho_sync_status == SyncStatus.FAILED:
            assert customer.zoho_last_error, customer
    unexplained = SyncAttempt.objects.exclude(
        outcome__in=[AttemptOutcome.CREATED, AttemptOutcome.ADOPTED]
    ).filter(error_message="")
    assert not unexplained.exists()

    heal(emulator, settings)
    settings.ZOHO_TIMEOUT_SECONDS = 5.0
    later = customers_retry_failed(trigger="command", max_wait=5)

    assert later.ok
    assert zoho_account_counts(emulator) == Counter(c.account_number for c in customers)
    assert Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).count() == CUSTOMERS
    assert not SyncAttempt.objects.filter(outcome=AttemptOutcome.SENDING).exists()
