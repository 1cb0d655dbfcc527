"""Alerts: one when a condition starts, one when it ends, none in between, none twice."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection

from billing_sync.models import AccountType, Customer, SyncStatus, ZohoApiState
from billing_sync.operations import alerts
from billing_sync.operations.alerts import Alert, AlertCondition, alerts_check
from billing_sync.zoho.config import config_problems
from billing_sync.zoho.errors import DailyBudgetUsed
from billing_sync.zoho.pacing import DAY_SECONDS, LEASE_SECONDS, Budget, DailyBudget, RequestGate

# Real commits: alerts go out once the check's state is committed, and threads need them.
pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
TIMEOUT = 5.0
NEEDS_ATTENTION_LINK = "/admin/billing_sync/customer/?zoho_sync_status__exact=needs_attention"


@pytest.fixture(autouse=True)
def alert_settings(settings: Any) -> Any:
    settings.ZOHO_ALERT_MAIL_ADMINS = True
    settings.ADMINS = [("Operations", "ops@example.co.za")]
    settings.ZOHO_ALERT_ADMIN_URL = ""
    settings.ZOHO_ALERT_BLOCK_SECONDS = 300.0
    settings.ZOHO_ALERT_DAILY_BUDGET_PERCENT = 80.0
    settings.ZOHO_DAILY_LIMIT = 1000
    settings.ZOHO_DAILY_RESERVE = 100
    settings.ZOHO_TIMEOUT_SECONDS = TIMEOUT
    return settings


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def needing_attention(make_customer: Callable[..., Customer], count: int) -> list[Customer]:
    return [make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION) for _ in range(count)]


def block_until(until: datetime, reason: str = "code 44: too many requests") -> None:
    ZohoApiState.objects.update_or_create(
        singleton=1, defaults={"blocked_until": until, "block_reason": reason}
    )


def minute(moment: datetime) -> int:
    return math.floor(moment.timestamp() / 60)


def day_counts(counts: dict[int, int]) -> None:
    """The shared row's requests per minute, keyed as the gate keys them."""
    ZohoApiState.objects.update_or_create(
        singleton=1, defaults={"day_counts": {str(key): n for key, n in counts.items()}}
    )


def only(found: list[Alert], condition: AlertCondition, *, recovered: bool) -> Alert:
    assert [(a.condition, a.recovered) for a in found] == [(condition, recovered)]
    return found[0]


# --- customers needing a person ------------------------------------------------------------------


def test_customers_needing_attention_alert_once_with_count_and_link(make_customer, caplog):
    needing_attention(make_customer, 2)
    make_customer(zoho_sync_status=SyncStatus.SYNCED, zoho_billing_customer_id="z-1")

    alert = only(alerts_check(now=NOW), AlertCondition.NEEDS_ATTENTION, recovered=False)

    assert alert.subject == "2 customers need attention"
    assert alert.link == NEEDS_ATTENTION_LINK
    [sent] = mail.outbox
    assert sent.to == ["ops@example.co.za"]
    assert "2 customers need attention" in sent.subject
    assert "2 customers" in sent.body
    assert NEEDS_ATTENTION_LINK in sent.body
    [record] = [r for r in caplog.records if r.name == "billing_sync.alerts"]
    assert record.levelno == logging.WARNING
    assert NEEDS_ATTENTION_LINK in record.getMessage()

    assert alerts_check(now=at(60)) == []
    assert len(mail.outbox) == 1


def test_more_customers_needing_attention_while_the_alert_stands_is_not_news(make_customer):
    needing_attention(make_customer, 1)
    assert alerts_check(now=NOW)[0].subject == "1 customer needs attention"
    needing_attention(make_customer, 5)

    assert alerts_check(now=at(60)) == []
    assert len(mail.outbox) == 1


def test_recovery_once_when_no_customer_needs_attention(make_customer, caplog):
    customers = needing_attention(make_customer, 3)
    alerts_check(now=NOW)
    Customer.objects.filter(pk__in=[c.pk for c in customers[:2]]).update(
        zoho_sync_status=SyncStatus.PENDING
    )
    assert alerts_check(now=at(60)) == []  # one still needs a person
    Customer.objects.update(zoho_sync_status=SyncStatus.PENDING)
    caplog.clear()

    alert = only(alerts_check(now=at(120)), AlertCondition.NEEDS_ATTENTION, recovered=True)

    assert "3 customers did when we alerted" in alert.message
    assert len(mail.outbox) == 2
    assert NEEDS_ATTENTION_LINK in mail.outbox[1].body
    # Recoveries log at INFO, and the project's LOGGING lets them through whatever LOG_LEVEL says.
    [record] = [r for r in caplog.records if r.name == "billing_sync.alerts"]
    assert record.levelno == logging.INFO
    assert alerts_check(now=at(180)) == []


def test_internal_test_accounts_never_count(make_customer):
    make_customer(
        account_type=AccountType.INTERNAL_TEST, zoho_sync_status=SyncStatus.NEEDS_ATTENTION
    )

    assert alerts_check(now=NOW) == []


def test_with_mail_off_alerts_are_logged_only(make_customer, settings, caplog):
    settings.ZOHO_ALERT_MAIL_ADMINS = False
    needing_attention(make_customer, 1)

    assert len(alerts_check(now=NOW)) == 1

    assert mail.outbox == []
    assert any(r.name == "billing_sync.alerts" for r in caplog.records)


def test_links_are_absolute_under_the_admin_url(make_customer, settings):
    settings.ZOHO_ALERT_ADMIN_URL = "https://billing.circletel.example/"
    needing_attention(make_customer, 1)

    [alert] = alerts_check(now=NOW)

    assert alert.link == "https://billing.circletel.example" + NEEDS_ATTENTION_LINK
    assert alert.link in mail.outbox[0].body


# --- Zoho's block --------------------------------------------------------------------------------


def test_a_long_block_alerts_once_and_recovers_once(caplog):
    block_until(at(600))

    alert = only(alerts_check(now=NOW), AlertCondition.ZOHO_BLOCK, recovered=False)

    assert "2026-12-01 14:10:00 UTC" in alert.subject
    assert "about 10 min from now" in alert.message
    assert "code 44: too many requests" in alert.message
    assert alert.link == "/admin/"
    assert alerts_check(now=at(300)) == []

    recovery = only(alerts_check(now=at(601)), AlertCondition.ZOHO_BLOCK, recovered=True)
    assert "14:10:00 UTC" in recovery.message
    assert alerts_check(now=at(900)) == []
    assert [m.subject.endswith("block has ended") for m in mail.outbox] == [False, True]
    levels = [r.levelno for r in caplog.records if r.name == "billing_sync.alerts"]
    assert levels == [logging.WARNING, logging.INFO]


def test_a_short_block_says_nothing_then_or_after():
    block_until(at(200))

    assert alerts_check(now=NOW) == []
    assert alerts_check(now=at(100)) == []
    assert alerts_check(now=at(300)) == []
    assert mail.outbox == []


def test_a_block_counts_from_the_check_that_first_saw_it():
    block_until(at(200))
    assert alerts_check(now=NOW) == []  # 200 s known: under the threshold

    block_until(at(400))  # extended: known from NOW until 400 s later
    only(alerts_check(now=at(100)), AlertCondition.ZOHO_BLOCK, recovered=False)


def test_a_block_first_seen_late_is_judged_by_what_remains(settings):
    settings.ZOHO_ALERT_BLOCK_SECONDS = 300.0
    block_until(at(600))

    assert alerts_check(now=at(400)) == []  # 200 s remain: we cannot know it was longer


# --- the daily budget ----------------------------------------------------------------------------


def test_the_daily_budget_alerts_at_the_percentage_and_recovers_below_it():
    share = 900  # ZOHO_DAILY_LIMIT 1000 less ZOHO_DAILY_RESERVE 100; 80% is 720
    day_counts({minute(NOW) - 60: 700, minute(NOW) - 1: 19})
    assert alerts_check(now=NOW) == []

    day_counts({minute(NOW) - 60: 700, minute(NOW) - 1: 20})
    alert = only(alerts_check(now=NOW), AlertCondition.DAILY_BUDGET, recovered=False)
    assert alert.subject == "80% of the daily request budget used"
    assert f"720 of the {share} requests" in alert.message
    assert alert.link == "/admin/billing_sync/syncrun/"
    assert alerts_check(now=at(60)) == []

    # A day after the big minute it no longer counts: 20 remain.
    later = NOW + timedelta(seconds=DAY_SECONDS - 3600 + 120)
    recovery = only(alerts_check(now=later), AlertCondition.DAILY_BUDGET, recovered=True)
    assert f"20 of the {share} requests" in recovery.message
    assert len(mail.outbox) == 2


@pytest.mark.parametrize("at_the_edge", [4, 3])
def test_the_daily_budget_counts_what_the_gate_counts(settings, at_the_edge):
    settings.ZOHO_DAILY_LIMIT, settings.ZOHO_DAILY_RESERVE = 10, 0
    settings.ZOHO_ALERT_DAILY_BUDGET_PERCENT = 100.0
    # The oldest minute that still counts, one just older, and the current one.
    first = math.floor((NOW.timestamp() - DAY_SECONDS - TIMEOUT - LEASE_SECONDS) / 60)
    day_counts({first - 1: 50, first: at_the_edge, minute(NOW): 6})

    found = alerts_check(now=NOW)

    gate = RequestGate(
        budget=Budget(1000, 1.0),
        request_timeout=TIMEOUT,
        max_wait=0,
        clock=NOW.timestamp,
        daily=DailyBudget(10, 0),
    )
    try:
        gate.acquire("GET", "/customers")
        gate_refused = False
    except DailyBudgetUsed:
        gate_refused = True
    finally:
        gate.close()
    assert bool(found) == gate_refused == (at_the_edge + 6 >= 10)
    if found:
        assert "10 of the 10 requests" in found[0].message


def test_no_daily_budget_alert_when_the_day_is_not_counted(settings):
    settings.ZOHO_DAILY_LIMIT = 0
    day_counts({minute(NOW): 5000})

    assert alerts_check(now=NOW) == []


# --- together ------------------------------------------------------------------------------------


def test_two_checks_at_once_send_one_alert(make_customer, monkeypatch):
    needing_attention(make_customer, 2)
    read_conditions = alerts._conditions

    def slow_conditions(now: datetime) -> Any:
        found = read_conditions(now)
        time.sleep(0.3)  # both checks are inside their transaction at once, unless one waits
        return found

    monkeypatch.setattr(alerts, "_conditions", slow_conditions)
    start = threading.Barrier(2)
    results: list[list[Alert]] = []
    errors: list[BaseException] = []

    def check() -> None:
        try:
            start.wait()
            results.append(alerts_check(now=NOW))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(len(found) for found in results) == [0, 1]
    assert len(mail.outbox) == 1


def test_alerts_carry_no_secret(make_customer, settings):
    settings.ZOHO_CLIENT_SECRET = "client-secret-value"
    settings.ZOHO_REFRESH_TOKEN = "refresh-token-value"
    needing_attention(make_customer, 1)
    ZohoApiState.objects.update_or_create(
        singleton=1,
        defaults={"access_token": "access-token-value", "blocked_until": at(900)},
    )
    day_counts({minute(NOW): 900})

    found = alerts_check(now=NOW)

    assert len(found) == 3
    sent = " ".join(m.subject + m.body for m in mail.outbox)
    for secret in ("client-secret-value", "refresh-token-value", "access-token-value"):
        assert secret not in sent


def test_bad_alert_settings_are_named(settings):
    settings.ZOHO_ALERT_BLOCK_SECONDS = -1
    settings.ZOHO_ALERT_DAILY_BUDGET_PERCENT = 120
    settings.ZOHO_ALERT_ADMIN_URL = "https://billing.example/admin/"

    problems = " ".join(config_problems())

    assert "ZOHO_ALERT_BLOCK_SECONDS" in problems
    assert "ZOHO_ALERT_DAILY_BUDGET_PERCENT" in problems
    assert "ZOHO_ALERT_ADMIN_URL" in problems
