"""Token refresh across processes: one asks Zoho, no database lock is held while it waits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.db import connection
from django.utils import timezone

from billing_sync.models import ZohoApiState
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from billing_sync.zoho.errors import (
    ZohoAuthError,
    ZohoError,
    ZohoTokenThrottled,
    ZohoTransient,
)
from tests.helpers import wait_for

# Threads stand in for processes: each has its own database connection, so tests must commit.
pytestmark = pytest.mark.django_db(transaction=True)


class Worker(threading.Thread):
    """Runs `work` on a connection of its own and keeps what it returned or raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: Any = None
        self.error: ZohoError | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except ZohoError as exc:
            self.error = exc
        finally:
            connection.close()


def start(*works: Callable[[], Any]) -> list[Worker]:
    workers = [Worker(work) for work in works]
    for worker in workers:
        worker.start()
    return workers


def finish(workers: list[Worker]) -> None:
    for worker in workers:
        worker.join(timeout=30)
        assert not worker.is_alive()


def fetch_token() -> str:
    """What a fresh process does before its first request."""
    client = ZohoClient(zoho_config(), max_wait=0)
    try:
        return client.tokens.get_token()
    finally:
        client.close()


def refresh_in_flight() -> bool:
    """A process has marked the row: its request to the accounts server is on its way."""
    return ZohoApiState.objects.filter(token_refreshing_until__gt=timezone.now()).exists()


def token_request_at_zoho(emulator: Any) -> bool:
    """The accounts server holds a token request (it answers `token_delay_seconds` late)."""
    return not emulator.wait_idle(timeout=0.01)


def test_while_a_refresh_waits_for_zoho_other_writes_go_through(emulator, make_customer):
    emulator.configure(token_delay_seconds=2)
    (refresher,) = start(fetch_token)
    wait_for(lambda: token_request_at_zoho(emulator), "the token request", timeout=5, interval=0.01)

    make_customer()  # a write to another table (on SQLite: the same database lock)...
    ZohoApiState.objects.filter(singleton=1).update(block_reason="written meanwhile")  # ...its row

    # Both writes are done, and the refresher is still waiting for the accounts server.
    assert refresher.is_alive()
    assert token_request_at_zoho(emulator)
    assert emulator.token_refresh_count == 0
    finish([refresher])
    assert refresher.error is None
    state = ZohoApiState.objects.get()
    assert state.access_token == refresher.result
    assert state.block_reason == "written meanwhile"
    assert state.token_refreshing_until is None


def test_processes_needing_a_token_at_once_share_one_refresh(emulator):
    emulator.configure(token_delay_seconds=1)

    workers = start(*[fetch_token] * 6)
    finish(workers)

    assert [w.error for w in workers] == [None] * 6
    assert len({w.result for w in workers}) == 1
    assert emulator.token_refresh_count == 1


def test_a_rejected_token_is_replaced_once_for_every_process_holding_it(emulator):
    rejected = fetch_token()
    emulator.revoke_access_tokens()
    emulator.configure(token_delay_seconds=1)

    def replace() -> str:
        client = ZohoClient(zoho_config(), max_wait=0)
        try:
            return client.tokens.replace_rejected(rejected)
        finally:
            client.close()

    workers = start(*[replace] * 4)
    finish(workers)

    assert [w.error for w in workers] == [None] * 4
    (token,) = {w.result for w in workers}
    assert token != rejected
    assert emulator.token_refresh_count == 2


def test_a_refresher_that_died_is_taken_over_when_its_mark_runs_out(emulator):
    ZohoApiState.objects.create(
        singleton=1,
        token_refresh_id="died-while-asking",
        token_refreshing_until=timezone.now() + timedelta(seconds=1),
    )
    started = time.monotonic()

    token = fetch_token()

    assert time.monotonic() - started >= 0.9  # it waited for the other's answer first
    assert emulator.token_refresh_count == 1
    state = ZohoApiState.objects.get()
    assert (state.access_token, state.token_refreshing_until) == (token, None)
    assert state.token_refresh_id != "died-while-asking"


def throttle(emulator: Any, settings: Any) -> None:
    emulator.inject("token_throttle", times=1)


def wrong_refresh_token(emulator: Any, settings: Any) -> None:
    settings.ZOHO_REFRESH_TOKEN = "1000.not-the-refresh-token"


def accounts_too_slow(emulator: Any, settings: Any) -> None:
    settings.ZOHO_TIMEOUT_SECONDS = 0.5


@pytest.mark.parametrize(
    ("failure", "error_class", "message", "issued"),
    [
        (throttle, ZohoTokenThrottled, "Access Denied", 0),
        (wrong_refresh_token, ZohoAuthError, "ZOHO_REFRESH_TOKEN is invalid", 0),
        # The accounts server issues the token after the refresher stopped waiting for it.
        (accounts_too_slow, ZohoTransient, "timed out asking Zoho accounts", 1),
    ],
)
def test_a_failed_refresh_is_reported_to_the_processes_waiting_for_it(
    emulator, settings, failure, error_class, message, issued
):
    emulator.configure(token_delay_seconds=1.5)
    failure(emulator, settings)
    (refresher,) = start(fetch_token)
    wait_for(refresh_in_flight, "a refresh in flight", timeout=5, interval=0.01)

    waiters = start(*[fetch_token] * 3)
    finish([refresher, *waiters])

    for worker in [refresher, *waiters]:
        assert type(worker.error) is error_class
        assert message in worker.error.message
    # Only the refresher asked the accounts server: a second request would have got a token
    # (the throttle fault fires once) or shown up in the count.
    assert emulator.wait_idle()
    assert emulator.token_refresh_count == issued
    state = ZohoApiState.objects.get()
    assert state.token_refreshing_until is None
    assert message in state.token_refresh_failure["message"]
    recorded = json.dumps(state.token_refresh_failure)
    for secret in (settings.ZOHO_REFRESH_TOKEN, settings.ZOHO_CLIENT_SECRET):
        assert secret not in recorded


def test_a_later_process_asks_again_after_a_failed_refresh(emulator):
    emulator.inject("token_throttle", times=1)
    with pytest.raises(ZohoTokenThrottled):
        fetch_token()

    assert fetch_token() == ZohoApiState.objects.get().access_token
    assert emulator.token_refresh_count == 1


class WatchedSession(requests.Session):
    """Notes, for every HTTP request, whether a database transaction was open around it."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.in_transaction: list[bool] = []

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.in_transaction.append(connection.in_atomic_block)
        return super().request(*args, **kwargs)


def test_no_request_to_zoho_goes_out_inside_a_database_transaction(emulator, settings):
    settings.ZOHO_DAILY_LIMIT = 1000
    session = WatchedSession()
    client = ZohoClient(zoho_config(), session=session, max_wait=5)
    client.list_customers()
    emulator.revoke_access_tokens()  # the next call refreshes the rejected token

    client.list_customers()
    client.create_customer({"display_name": "Ann", "email": "ann@example.co.za"})
    client.close()

    assert emulator.token_refresh_count == 2
    assert session.in_transaction == [False] * 6  # 2 token requests, 4 API requests
