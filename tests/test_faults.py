"""The fault matrix: whatever Zoho does, a run finishes or stops cleanly, with 0 duplicates,
every failure recorded with a clear reason, and a later run completes.

Each set-up returns how to tell that Zoho really misbehaved during the run: an injected fault
counted by the emulator, or the answers the emulator gave (a 401 then a new token, a 429 with
the code of the limit)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
import requests
from django.db.models import F

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncStatus, ZohoApiState
from billing_sync.run.runs import customers_backfill, customers_retry_failed
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from tests.helpers import wait_for, zoho_account_counts
from zoho_emulator import ZohoEmulator

pytestmark = pytest.mark.django_db

CUSTOMERS = 4

# Asserts, after the first run, that the set-up's fault really happened.
Fired = Callable[[ZohoEmulator], None]


def injected(kind: str) -> Fired:
    """The injected fault of this kind fired at least once."""

    def fired(emulator: ZohoEmulator) -> None:
        assert emulator.fault_counts.get(kind, 0) >= 1, emulator.fault_counts

    return fired


def answered(status: int, code: int) -> Fired:
    """The emulator answered at least one request with this HTTP status and Zoho code."""

    def fired(emulator: ZohoEmulator) -> None:
        answers = [(r.status, r.code) for r in emulator.request_log]
        assert (status, code) in answers, answers

    return fired


def server_errors(emulator, settings) -> Fired:
    emulator.inject("error", method="POST", path="/customers", status=500, times=None)
    return injected("error")


def slow_answers(emulator, settings) -> Fired:
    settings.ZOHO_TIMEOUT_SECONDS = 0.2
    emulator.inject("slow", method="POST", path="/customers", delay=0.35, times=None)
    return injected("slow")


def dropped_connections(emulator, settings) -> Fired:
    emulator.inject("drop", times=None)
    return injected("drop")


def lost_create_answers(emulator, settings) -> Fired:
    emulator.inject("lose_response", method="POST", path="/customers", times=None)
    return injected("lose_response")


def token_revoked_mid_run(emulator, settings) -> Fired:
    ZohoClient(zoho_config()).list_customers()  # a token is cached ...
    emulator.revoke_access_tokens()  # ... and Zoho no longer accepts it
    since, tokens = len(emulator.request_log), emulator.token_refresh_count

    def fired(emulator: ZohoEmulator) -> None:
        answers = [(r.status, r.code) for r in emulator.request_log[since:]]
        assert answers[:2] == [(401, 57), (200, 0)], answers  # refused, then a new token worked
        assert emulator.token_refresh_count == tokens + 1

    return fired


def token_endpoint_throttled(emulator, settings) -> Fired:
    emulator.inject("token_throttle", times=None)
    return injected("token_throttle")


def org_blocked(emulator, settings) -> Fired:
    emulator.configure(block_seconds=60)
    emulator.block_for(60)
    return answered(429, 44)


def daily_limit(emulator, settings) -> Fired:
    emulator.configure(daily_limit=2, daily_window_seconds=120)
    return answered(429, 45)


def concurrency_limit(emulator, settings) -> Fired:
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
    wait_for(emulator.busy, "the slow request in flight", timeout=5, interval=0.01)
    _background.append(other)

    def fired(emulator: ZohoEmulator) -> None:
        answers = [(r.status, r.code) for r in emulator.request_log]
        assert emulator.fault_counts == {"slow": 1}  # the other request was in flight ...
        assert (429, 1070) in answers, answers  # ... when Zoho refused one of ours

    return fired


def html_error_pages(emulator, settings) -> Fired:
    emulator.inject("html_error", status=502, times=None)
    return injected("html_error")


_background: list[threading.Thread] = []


def heal(emulator, settings) -> None:
    """Time passes and Zoho recovers: faults, blocks and limits gone, our creates settled."""
    while _background:
        _background.pop().join()
    # A create whose answer we gave up on may still be on its way in: settled is after Zoho
    # has done with it (the settle time is for that; the marks below are aged by it).
    assert emulator.wait_idle()
    emulator.clear_faults()
    emulator.configure(daily_limit=None, concurrency_limit=None)
    emulator.block_for(0)
    ZohoApiState.objects.update(blocked_until=None)  # the block we recorded has run out
    # Our unanswered creates have settled: their marks are as old as the settle time.
    settled = timedelta(seconds=settings.ZOHO_CREATE_SETTLE_SECONDS)
    Customer.objects.filter(zoho_create_sent_at__isnull=False).update(
        zoho_create_sent_at=F("zoho_create_sent_at") - settled
    )


FAULTS: list[Callable[..., Fired]] = [
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
    fired = fault(emulator, settings)

    first = customers_backfill(trigger="command", max_wait=0)

    fired(emulator)
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
