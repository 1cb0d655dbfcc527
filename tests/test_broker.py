"""The task broker: the database by default (nothing else to run), Redis when REDIS_URL is set."""

from __future__ import annotations

import os
from pathlib import Path

from tests.processes import run_manage

ROUND_TRIP = """
from multiprocessing import Event, Value
from django_q.brokers import get_broker
from django_q.monitor import monitor
from django_q.pusher import pusher
from django_q.queues import Queue
from django_q.tasks import async_task, result
from django_q.worker import worker

broker = get_broker()
print("broker", type(broker).__name__)
broker.purge_queue()
task_id = async_task("billing_sync.tasks.sync_task")
tasks, results, stop = Queue(), Queue(), Event()
stop.set()
pusher(tasks, stop, broker=broker)
tasks.put("STOP")
worker(tasks, results, Value("f", -1))
results.put("STOP")
monitor(results, broker)
print("result", result(task_id))
"""


def run_round_trip(tmp_path: Path, **env: str) -> str:
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "Q_BROKER_URL")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'broker.sqlite3'}",
        "ZOHO_CLIENT_ID": "id",
        "ZOHO_CLIENT_SECRET": "secret",
        "ZOHO_REFRESH_TOKEN": "refresh",
        "ZOHO_ORGANIZATION_ID": "1",
        **env,
    }
    run_manage("migrate", "-v", "0", env=environment).check_returncode()
    done = run_manage("shell", "-v", "0", "-c", ROUND_TRIP, env=environment)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_database_is_the_broker_by_default(tmp_path):
    output = run_round_trip(tmp_path)

    assert "broker ORM" in output
    assert "result run #1: 0 selected, 0 synced, 0 failed, 0 skipped" in output


def test_redis_is_the_broker_when_redis_url_is_set(tmp_path, redis_url):
    output = run_round_trip(tmp_path, REDIS_URL=f"{redis_url}/15")

    assert "broker Redis" in output
    assert "result run #1: 0 selected, 0 synced, 0 failed, 0 skipped" in output
