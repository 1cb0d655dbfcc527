"""/metrics: Prometheus' text format, read from the database and the broker at scrape time, so
the values tell what happened whichever process did it and whichever process serves them."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.test import Client
from django_q.tasks import async_task

from billing_sync.models import SyncAttempt, SyncRun, SyncStatus
from billing_sync.run.runs import customers_sync
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from billing_sync.zoho.pacing import Budget, RequestGate
from tests.processes import process_env, run_manage
from tests.samples import Labels, Samples, family, samples_of, value


def scrape(client: Client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples_of(response.content.decode())


def answers_at_zoho(emulator) -> dict[Labels, float]:
    """What the emulator answered each API request (status 0: none), as the metric labels it."""
    answers = Counter(
        (str(r.status), "" if r.code is None else str(r.code)) for r in emulator.request_log
    )
    return {
        frozenset({("http_status", status), ("code", code)}): n
        for (status, code), n in answers.items()
    }


def customers(samples: Samples) -> dict[str, float]:
    return {
        status: value(samples, "billing_sync_customers", status=status)
        for status in SyncStatus.values
    }


@pytest.mark.django_db
def test_a_sync_with_a_refused_create_shows_in_every_count(
    client, emulator, make_customer, settings
):
    refused, *fine = [make_customer() for _ in range(4)]
    make_customer(account_type="internal_test")  # never in Zoho, never counted
    emulator.inject("error", method="POST", email=refused.email, status=400, times=None)

    report = customers_sync(trigger="command")
    samples = scrape(client)

    run = SyncRun.objects.get()
    api_requests = emulator.request_log  # the token endpoint is not Zoho's API: not counted
    assert report.run.request_count == len(api_requests) > 4
    assert customers(samples) == {
        "pending": 0,
        "syncing": 0,
        "synced": 3,
        "failed": 0,
        "needs_attention": 1,  # refused while Zoho created the others: its own data
    }
    assert family(samples, "billing_sync_zoho_requests_total") == answers_at_zoho(emulator)
    assert value(samples, "billing_sync_zoho_requests_total", http_status="201", code="0") == 3
    assert family(samples, "billing_sync_zoho_refusals_total") == {
        frozenset({("http_status", "400"), ("code", "-1")}): 1
    }
    assert value(samples, "billing_sync_run_requests_total", kind="sync") == len(api_requests)
    assert value(samples, "billing_sync_run_requests_total", kind="backfill") == 0
    assert value(samples, "billing_sync_daily_requests_used") == len(api_requests)
    assert value(samples, "billing_sync_daily_requests_allowed") == 900
    assert value(samples, "billing_sync_daily_budget_used_ratio") == len(api_requests) / 900
    assert value(samples, "billing_sync_zoho_block_remaining_seconds") == 0
    assert value(samples, "billing_sync_zoho_blocked_seconds_total") == 0
    took = (run.finished_at - run.started_at).total_seconds()
    assert value(samples, "billing_sync_run_duration_seconds_count", kind="sync") == 1
    assert value(samples, "billing_sync_run_duration_seconds_sum", kind="sync") == pytest.approx(
        took
    )
    assert value(samples, "billing_sync_run_duration_seconds_bucket", kind="sync", le="+Inf") == 1
    assert value(samples, "billing_sync_run_duration_seconds_bucket", kind="sync", le="60.0") == 1
    assert value(samples, "billing_sync_last_successful_run_timestamp_seconds") == pytest.approx(
        run.finished_at.timestamp()
    )
    assert value(samples, "billing_sync_queue_depth") == 0
    assert value(samples, "billing_sync_clusters_alive") == 0
    text = client.get("/metrics").content.decode()
    for secret in (settings.ZOHO_CLIENT_SECRET, settings.ZOHO_REFRESH_TOKEN, refused.email):
        assert secret not in text


@pytest.mark.django_db
def test_a_zoho_block_shows_its_remaining_seconds_and_the_429(client, emulator, make_customer):
    make_customer()
    emulator.block_for(120)  # Zoho refuses the organization for 2 minutes

    customers_sync(trigger="command", max_wait=0)
    samples = scrape(client)

    assert 100 < value(samples, "billing_sync_zoho_block_remaining_seconds") <= 120
    assert 0 <= value(samples, "billing_sync_zoho_blocked_seconds_total") < 20
    assert SyncAttempt.objects.filter(http_status=429, zoho_code=44).count() == 1
    assert value(samples, "billing_sync_zoho_refusals_total", http_status="429", code="44") == 1
    assert value(samples, "billing_sync_customers", status="failed") == 1
    assert value(samples, "billing_sync_run_duration_seconds_count", kind="sync") == 1
    # A stopped run is no success.
    assert value(samples, "billing_sync_last_successful_run_timestamp_seconds") == 0


@pytest.mark.django_db
def test_answers_are_counted_as_they_came_back_none_and_html_included(
    client, emulator, make_customer
):
    for _ in range(3):
        make_customer()
    reader = ZohoClient(zoho_config())
    reader.list_customers()  # a token is cached ...
    reader.close()
    emulator.revoke_access_tokens()  # ... and Zoho no longer accepts it: a 401, then a new one
    emulator.inject("drop", method="POST", times=1)  # no answer at all
    emulator.inject("html_error", method="POST", status=502, times=1)  # a proxy's page

    customers_sync(trigger="command")
    samples = scrape(client)

    assert family(samples, "billing_sync_zoho_requests_total") == answers_at_zoho(emulator)
    assert value(samples, "billing_sync_zoho_requests_total", http_status="0", code="") == 1
    assert value(samples, "billing_sync_zoho_refusals_total", http_status="401", code="57") == 1
    assert value(samples, "billing_sync_zoho_refusals_total", http_status="502", code="") == 1
    assert value(samples, "billing_sync_zoho_refusals_total", http_status="0", code="") is None


@pytest.mark.django_db
def test_seconds_blocked_add_up_every_block_and_grow_while_one_lasts(client):
    now = time.time()
    at = [now - 1000]  # the gate's clock: when each 429 came back
    gate = RequestGate(budget=Budget(30, 60), request_timeout=5, max_wait=0, clock=lambda: at[0])

    gate.record_block(seconds=600, reason="code 44")  # from now - 1000 to now - 400
    at[0] = now - 700
    gate.record_block(seconds=400, reason="code 44")  # the same block, longer: to now - 300
    at[0] = now - 100
    gate.record_block(seconds=60, reason="code 44")  # another: to now - 40
    ended = value(scrape(client), "billing_sync_zoho_blocked_seconds_total")
    at[0] = now - 10
    gate.record_block(seconds=600, reason="code 44")  # one going on: 10 s so far
    going = scrape(client)
    later = scrape(client)

    assert ended == pytest.approx(700 + 60)
    assert value(going, "billing_sync_zoho_blocked_seconds_total") == pytest.approx(770, abs=2)
    assert value(going, "billing_sync_zoho_block_remaining_seconds") == pytest.approx(590, abs=2)
    assert value(later, "billing_sync_zoho_blocked_seconds_total") >= value(
        going, "billing_sync_zoho_blocked_seconds_total"
    )


@pytest.mark.django_db
def test_queue_depth_counts_the_tasks_no_worker_took_yet(client):
    for _ in range(2):
        async_task("billing_sync.tasks.sync_task")

    assert value(scrape(client), "billing_sync_queue_depth") == 2


@pytest.mark.django_db(transaction=True)
def test_a_run_in_another_process_counts_at_the_next_scrape(
    client, emulator, make_customer, settings
):
    for _ in range(3):
        make_customer()
    before = scrape(client)

    result = run_manage("zoho_sync_customers", env=process_env(settings))
    after = scrape(client)

    assert result.returncode == 0, result.stderr
    assert customers(before)["pending"] == customers(after)["synced"] == 3
    sent = SyncRun.objects.get().request_count
    assert value(before, "billing_sync_run_requests_total", kind="sync") == 0
    assert value(after, "billing_sync_run_requests_total", kind="sync") == sent > 0
    assert family(after, "billing_sync_zoho_requests_total") == answers_at_zoho(emulator)
    assert value(after, "billing_sync_daily_requests_used") == sent


@pytest.mark.django_db(transaction=True)
def test_requests_of_every_command_count_not_only_runs(client, emulator, make_customer, settings):
    make_customer()
    customers_sync(trigger="command")
    env = process_env(settings)

    for command in ("zoho_verify", "zoho_plan", "zoho_check_credentials"):
        result = run_manage(command, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    samples = scrape(client)

    runs = value(samples, "billing_sync_run_requests_total", kind="sync")
    answered = family(samples, "billing_sync_zoho_requests_total")
    assert answered == answers_at_zoho(emulator)
    assert sum(answered.values()) == len(emulator.request_log) > runs


@pytest.mark.django_db
def test_with_a_token_set_a_scrape_needs_it_or_a_staff_session(client, settings, django_user_model):
    settings.ZOHO_METRICS_TOKEN = "scrape-token-value"

    refused = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer guess"})
    samples = scrape(client, Authorization="Bearer scrape-token-value")
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("op", password="x", is_staff=True))

    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert value(samples, "billing_sync_customers", status="synced") == 0
    assert staff.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_without_a_token_metrics_are_open(client, settings):
    settings.ZOHO_METRICS_TOKEN = ""

    samples = scrape(client)

    assert value(samples, "billing_sync_customers", status="pending") == 0
