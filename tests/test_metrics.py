"""/metrics: Prometheus' text format, read from the database and the broker at scrape time, so
the values tell what happened whichever process did it and whichever process serves them."""

from __future__ import annotations

import pytest
from django.test import Client
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from billing_sync.models import SyncAttempt, SyncRun, SyncStatus
from billing_sync.services.runs import customers_sync
from tests.processes import process_env, run_manage

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


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
    assert value(samples, "billing_sync_zoho_requests_total", kind="sync") == len(api_requests)
    assert value(samples, "billing_sync_zoho_requests_total", kind="backfill") == 0
    assert value(samples, "billing_sync_zoho_refusals_total", http_status="400", code="-1") == 1
    assert value(samples, "billing_sync_daily_requests_used") == len(api_requests)
    assert value(samples, "billing_sync_daily_requests_allowed") == 900
    assert value(samples, "billing_sync_daily_budget_used_ratio") == len(api_requests) / 900
    assert value(samples, "billing_sync_zoho_block_remaining_seconds") == 0
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
    assert SyncAttempt.objects.filter(http_status=429, zoho_code=44).count() == 1
    assert value(samples, "billing_sync_zoho_refusals_total", http_status="429", code="44") == 1
    assert value(samples, "billing_sync_customers", status="failed") == 1
    assert value(samples, "billing_sync_run_duration_seconds_count", kind="sync") == 1
    # A stopped run is no success.
    assert value(samples, "billing_sync_last_successful_run_timestamp_seconds") == 0


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
    assert value(before, "billing_sync_zoho_requests_total", kind="sync") == 0
    assert value(after, "billing_sync_zoho_requests_total", kind="sync") == sent > 0
    assert value(after, "billing_sync_daily_requests_used") == sent


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
