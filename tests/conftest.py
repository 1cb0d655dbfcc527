"""Shared fixtures: the Zoho emulator on loopback, settings pointing at it, customer factory."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
from django.utils import timezone

from billing_sync.models import AccountStatus, Customer, SyncTrigger
from billing_sync.run.runs import customers_backfill, customers_sync
from tests.helpers import ZohoClock, authorize
from tests.source_db import QUERY, SourceDatabase, source_alias, source_database
from zoho_emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
    EmulatorConfig,
    ZohoEmulator,
)


@pytest.fixture(autouse=True)
def no_sync_on_save(settings: Any) -> None:
    """Saving a customer queues its sync only in the tests of that (tests/test_sync_on_save.py):
    elsewhere such a task would run in the tests that run the queue and change what they check."""
    settings.ZOHO_SYNC_ON_SAVE = False


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[ZohoEmulator]:
    """One real emulator HTTP server for the whole session, on a free loopback port."""
    server = ZohoEmulator().start(host="127.0.0.1", port=0)
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server: ZohoEmulator, settings: Any) -> Iterator[ZohoEmulator]:
    """A fresh emulator state, with the project's Zoho settings pointing at it."""
    emulator_server.reset(EmulatorConfig())
    settings.ZOHO_CLIENT_ID = EMULATOR_CLIENT_ID
    settings.ZOHO_CLIENT_SECRET = EMULATOR_CLIENT_SECRET
    settings.ZOHO_REFRESH_TOKEN = EMULATOR_REFRESH_TOKEN
    settings.ZOHO_ORGANIZATION_ID = EMULATOR_ORGANIZATION_ID
    settings.ZOHO_ACCOUNTS_URL = emulator_server.accounts_url
    settings.ZOHO_API_BASE_URL = emulator_server.api_base_url
    settings.ZOHO_TIMEOUT_SECONDS = 5.0
    settings.ZOHO_RETRY_BACKOFF_SECONDS = 0.01
    settings.ZOHO_CREATE_SETTLE_SECONDS = 0.3
    settings.ZOHO_MAX_WAIT_SECONDS = 30.0
    settings.ZOHO_RATE_LIMIT_REQUESTS = 30
    settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 60.0
    yield emulator_server
    # A slow request may still be in the server: let it finish before the next test's reset.
    assert emulator_server.wait_idle(), "the emulator is still busy after the test"


@pytest.fixture(params=["sqlite", "postgresql"])
def company(request, tmp_path, settings) -> Iterator[SourceDatabase]:
    """The company's database with the runbook's 15 customers, set up as the source."""
    with source_database(request.param, tmp_path) as source, source_alias(source.url):
        source.add_demo_customers()
        settings.CUSTOMER_SOURCE_URL = source.url
        settings.CUSTOMER_SOURCE_QUERY = QUERY
        settings.CUSTOMER_SOURCE_WRITEBACK_TABLE = "customers"
        yield source


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis the broker tests use, without a database number (add `/<db>`).

    TEST_REDIS_URL, default redis://127.0.0.1:6379. When it does not answer, the tests that need
    it skip and say why, so `make test` needs no Redis; in CI (CI is set) they fail instead.
    """
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port or 6379}"
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {where} ({error}); CI must run these tests")
        pytest.skip(f"Redis is not reachable at {where} (start redis-server); CI runs these tests")
    finally:
        client.close()
    return url


_sequence = itertools.count(1)


@pytest.fixture
def make_customer(db: None) -> Callable[..., Customer]:
    """Create a customer; every field can be overridden."""

    def make(**fields: Any) -> Customer:
        n = next(_sequence)
        values: dict[str, Any] = {
            "email": f"customer{n}@example.co.za",
            "account_number": f"CT-2025-{n:05d}",
            "first_name": "Test",
            "last_name": f"Customer {n}",
        }
        values.update(fields)
        return Customer.objects.create(**values)

    return make


@pytest.fixture
def every_case(
    emulator: ZohoEmulator, make_customer: Callable[..., Customer], settings: Any
) -> dict[str, Any]:
    """One customer for each thing a run may do."""
    settings.ZOHO_CREATE_SETTLE_SECONDS = 600
    edited, saved, untouched = make_customer(), make_customer(), make_customer()
    closed, reopened = make_customer(), make_customer()
    assert customers_backfill(trigger=SyncTrigger.COMMAND).ok
    Customer.objects.filter(pk=reopened.pk).update(account_status=AccountStatus.CLOSED)
    assert customers_sync(trigger=SyncTrigger.COMMAND).ok  # marked inactive in Zoho
    Customer.objects.filter(pk=reopened.pk).update(account_status=AccountStatus.ACTIVE)
    Customer.objects.filter(pk=closed.pk).update(account_status=AccountStatus.CLOSED)
    edited.refresh_from_db()
    edited.phone = "+27 82 123 4567"
    edited.save()
    Customer.objects.get(pk=saved.pk).save()  # saved without a change to what Zoho holds
    theirs = emulator.add_customer(
        display_name="Paid Online",
        email="elsewhere@example.co.za",
        custom_fields=[{"label": "Account Number", "value": "CT-PLAN-00001"}],
    )
    emulator.add_customer(display_name="Hosted Page", email="hosted@example.co.za")
    gone = make_customer()  # linked to a customer deleted in Zoho since, and edited here
    Customer.objects.filter(pk=gone.pk).update(
        zoho_billing_customer_id="6179546000000999999", zoho_sync_status="synced"
    )
    return {
        "new": make_customer(),
        "ours_by_account": make_customer(
            account_number="CT-PLAN-00001", email="elsewhere@example.co.za"
        ),
        "by_email": make_customer(email="hosted@example.co.za"),
        "invalid": make_customer(email="not-an-email"),
        "settling": make_customer(zoho_create_sent_at=timezone.now() - timedelta(seconds=5)),
        "failed_before": make_customer(zoho_sync_status="failed", zoho_last_error="HTTP 500"),
        "edited": edited,
        "saved": saved,
        "untouched": untouched,
        "closed": closed,
        "reopened": reopened,
        "closed_before": make_customer(account_status=AccountStatus.CLOSED),
        "gone": gone,
        "theirs_id": theirs["customer_id"],
    }


@pytest.fixture
def zoho_clock(emulator_server: ZohoEmulator) -> Iterator[ZohoClock]:
    """Zoho's time (the emulator's clock), in the test's hands."""
    emulator_server.clock = ZohoClock(time.time())
    yield emulator_server.clock
    emulator_server.clock = time.time


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A plain HTTP session (to speak to the emulator as any client would)."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def api(emulator: ZohoEmulator, http: requests.Session) -> requests.Session:
    """A session carrying a fresh access token and the organization header."""
    return authorize(http, emulator)
