"""/healthz: 200 while the database, the broker, a worker and a recent run are there, 503 when one
is not; a Zoho block and customers needing a person are warnings; anyone gets the summary, only
staff the details."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone
from django_q.tasks import async_task

from billing_sync.models import SyncRun, SyncStatus, ZohoApiState
from billing_sync.operations.health import alive_clusters, health_report
from billing_sync.run.runs import customers_sync
from tests.helpers import wait_for
from tests.processes import process_env, run_manage, start_manage, stop_process_group

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = ["database", "broker", "worker", "last_run", "zoho_block", "needs_attention"]
# django-q2 keeps a cluster's heartbeat 3 s: gone a little after that.
HEARTBEAT_GONE_SECONDS = 10


@pytest.fixture
def cluster(settings: Any) -> Iterator[subprocess.Popen]:
    """A real `manage.py qcluster` on the test database, once its heartbeat can be seen here;
    stopped afterwards, and its heartbeat gone, so the next test starts without a worker."""
    process = start_manage("qcluster", env=process_env(settings, Q_WORKERS="1"))
    try:
        wait_for(alive_clusters, "the cluster's first heartbeat")
        yield process
    finally:
        if process.returncode is None:
            stop_process_group(process, grace=1)
        wait_for(
            lambda: not alive_clusters(), "the heartbeat to expire", timeout=HEARTBEAT_GONE_SECONDS
        )


@pytest.fixture
def staff_client(django_user_model: Any) -> Client:
    user = django_user_model.objects.create_user("operator", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def healthz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def test_healthy_with_a_worker_alive_and_a_recent_run_then_503_once_the_worker_stops(
    cluster, emulator, client
):
    customers_sync(trigger="command")  # a completed run, as the schedule makes
    SyncRun.objects.update(finished_at=timezone.now() - timedelta(minutes=3))

    assert healthz(client) == (
        200,
        {
            "status": "ok",
            "summary": "OK: worker alive, last run 3 min ago, Zoho not blocking, "
            "0 customers need a person",
            "failing": [],
            "warnings": [],
        },
    )

    stop_process_group(cluster)
    wait_for(
        lambda: not alive_clusters(), "the heartbeat to expire", timeout=HEARTBEAT_GONE_SECONDS
    )

    status, body = healthz(client)
    assert (status, body["status"], body["failing"]) == (503, "unhealthy", ["worker"])
    assert body["summary"].startswith("UNHEALTHY: no worker alive, ")


def test_without_any_worker_anyone_gets_503_the_summary_and_the_names_of_what_fails(
    emulator, client
):
    customers_sync(trigger="command")
    SyncRun.objects.update(finished_at=timezone.now() - timedelta(minutes=3))

    status, body = healthz(client)

    assert status == 503
    assert body == {
        "status": "unhealthy",
        "summary": "UNHEALTHY: no worker alive, last run 3 min ago, Zoho not blocking, "
        "0 customers need a person",
        "failing": ["worker"],
        "warnings": [],
    }


def test_staff_see_every_check_with_its_detail(emulator, staff_client, django_user_model, settings):
    customers_sync(trigger="command")
    SyncRun.objects.update(finished_at=timezone.now() - timedelta(minutes=3))
    async_task("billing_sync.tasks.sync_task")  # nobody takes it: no worker runs
    someone = django_user_model.objects.create_user("someone", password="x")
    other = Client()
    other.force_login(someone)

    status, body = healthz(staff_client)

    assert status == 503
    assert body["summary"] == (
        "UNHEALTHY: no worker alive, last run 3 min ago, Zoho not blocking, "
        "0 customers need a person"
    )
    checks = {check["name"]: check for check in body["checks"]}
    assert list(checks) == CHECKS
    assert {name for name, check in checks.items() if not check["ok"]} == {"worker"}
    assert "start `manage.py qcluster`" in checks["worker"]["detail"]
    assert checks["broker"]["detail"] == "ORM broker answers, 1 task(s) queued"
    assert "completed 3 min ago (limit 50 min" in checks["last_run"]["detail"]
    assert [check["critical"] for check in checks.values()] == [True] * 4 + [False] * 2
    text = str(body)
    for secret in (settings.ZOHO_CLIENT_SECRET, settings.ZOHO_REFRESH_TOKEN, settings.SECRET_KEY):
        assert secret not in text
    # A user who is not staff gets what anyone gets: no detail.
    assert healthz(other) == (503, {key: body[key] for key in body if key != "checks"})


def test_a_zoho_block_and_customers_needing_a_person_are_warnings_not_503(
    cluster, emulator, make_customer, staff_client, client
):
    make_customer(zoho_sync_status=SyncStatus.NEEDS_ATTENTION, zoho_last_error="bad email")
    customers_sync(trigger="command")  # completes: nothing it may take
    make_customer()
    emulator.block_for(120)  # Zoho refuses the organization for 2 minutes
    customers_sync(trigger="command", max_wait=0)  # meets the 429, records the block, stops

    status, anyone = healthz(client)
    assert (status, anyone["failing"], anyone["warnings"]) == (
        200,
        [],
        ["zoho_block", "needs_attention"],
    )
    assert "checks" not in anyone
    status, body = healthz(staff_client)
    checks = {check["name"]: check for check in body["checks"]}
    assert status == 200
    assert body["summary"] == anyone["summary"]
    assert body["summary"].startswith("WARNING: worker alive, last run ")
    assert "Zoho blocking until " in body["summary"]
    assert body["summary"].endswith(", 1 customer needs a person")
    assert "Zoho blocks every request until " in checks["zoho_block"]["detail"]
    assert "?zoho_sync_status__exact=needs_attention" in checks["needs_attention"]["detail"]


def test_the_last_run_counts_only_completed_live_runs_younger_than_the_limit(
    emulator, make_customer, settings
):
    settings.ZOHO_HEALTH_MAX_RUN_AGE_SECONDS = 3600
    assert _check("last_run").detail.startswith("no sync run has completed yet")

    customers_sync(trigger="command")
    SyncRun.objects.update(finished_at=timezone.now() - timedelta(hours=2))  # time passes
    make_customer()
    customers_sync(trigger="command", dry_run=True)  # a preview is not a run of the sync
    emulator.block_for(60)
    customers_sync(trigger="command", max_wait=0)  # stopped by the block: not a success

    report = health_report()
    assert not report.ok
    assert "last_run" in report.failing
    assert "no successful run for 2 h (limit 60 min)" in report.summary

    emulator.reset()  # time passes: the block ends
    ZohoApiState.objects.update(blocked_until=None)
    customers_sync(trigger="command")

    assert _check("last_run").ok
    assert re.search(r", last run \d+ s ago, ", health_report().summary)


def test_with_the_database_down_the_checks_that_need_it_are_not_run(monkeypatch, client):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)

    report = health_report()

    assert report.summary == "UNHEALTHY: database unreachable"
    assert [c.name for c in report.checks if not c.ok] == CHECKS
    assert report.checks[0].detail == "the database does not answer (OperationalError)"
    assert {c.detail for c in report.checks[1:]} == {"not checked: the database is unreachable"}
    assert healthz(client)[0] == 503


def test_with_redis_as_broker_the_broker_and_the_heartbeat_are_read_from_redis(settings, redis_url):
    env = process_env(settings, REDIS_URL=f"{redis_url}/13", Q_WORKERS="1")
    workers = start_manage("qcluster", env=env)
    try:
        wait_for(lambda: "worker" not in probe(env)["failing"], "the cluster's heartbeat in Redis")
        alive = probe(env)
    finally:
        stop_process_group(workers)
    wait_for(
        lambda: "worker" in probe(env)["failing"],
        "the heartbeat to expire",
        timeout=HEARTBEAT_GONE_SECONDS,
    )
    gone = probe(env)

    assert alive["checks"]["broker"].startswith("Redis broker answers, ")
    assert alive["checks"]["worker"].startswith("1 cluster(s) alive: ")
    assert gone["failing"] == ["worker", "last_run"]


def test_a_redis_broker_that_does_not_answer_is_unhealthy(settings):
    env = process_env(settings, REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there

    report = probe(env)

    assert report["failing"] == ["broker", "worker", "last_run"]
    assert report["checks"]["broker"] == "the broker does not answer (ConnectionError)"
    assert "unreachable" in report["summary"]


def test_healthz_answers_get_and_head_only(client):
    assert client.post("/healthz").status_code == 405
    assert client.head("/healthz").status_code == 503


PROBE = """
import json
from billing_sync.operations.health import health_report
report = health_report()
checks = {check.name: check.detail for check in report.checks}
print(json.dumps({"failing": report.failing, "summary": report.summary, "checks": checks}))
"""


def probe(env: dict[str, str]) -> dict[str, Any]:
    """The health report as another process, with the broker `env` sets, sees it."""
    done = run_manage("shell", "-v", "0", "-c", PROBE, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _check(name: str) -> Any:
    (check,) = [c for c in health_report().checks if c.name == name]
    return check
