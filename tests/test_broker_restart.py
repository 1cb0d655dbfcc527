"""A Redis broker restarted under a running cluster (a private redis-server the test owns, killed
and started again empty; the machine's Redis is never touched): edits saved while it is down are
saved all the same (no traceback, no error to the person saving), the cluster takes up the
work again once Redis is back, and the next scheduled run sends what the lost tasks would have:
nothing lost, nothing sent twice."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from billing_sync.models import Customer, SyncTrigger
from billing_sync.run.runs import customers_backfill
from tests.helpers import wait_for, zoho_account_counts
from tests.processes import process_env, run_manage, start_manage, stop_process_group

pytestmark = pytest.mark.django_db(transaction=True)

EDITS = 5


class PrivateRedis:
    """A redis-server on a port of its own, keeping nothing on disk."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, "redis-server to answer", timeout=10)

    def kill(self) -> None:
        """As a crash or a restart does: everything it held is gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


def save_edits(env: dict[str, str], customers: list[Customer], phone: str) -> str:
    """Save a new phone for each customer in a process on the Redis broker; its output."""
    code = "\n".join(
        [
            "from billing_sync.models import Customer",
            f"for pk in {[c.pk for c in customers]}:",
            "    customer = Customer.objects.get(pk=pk)",
            f"    customer.phone = {phone!r}",
            "    customer.save()",
            "print('saved')",
        ]
    )
    saved = run_manage("shell", "-v", "0", "-c", code, env=env)
    assert saved.returncode == 0, saved.stderr
    return saved.stdout + saved.stderr


def phones(emulator, customers: list[Customer]) -> list[str]:
    held = {record["email"]: record["phone"] for record in emulator.customers()}
    return [held[c.email] for c in customers]


def test_edits_survive_a_redis_restart_under_a_running_cluster(
    emulator, make_customer, settings, redis
):
    customers = [make_customer() for _ in range(3 * EDITS)]
    assert customers_backfill(trigger=SyncTrigger.COMMAND).ok
    before, during, after = (customers[n * EDITS : (n + 1) * EDITS] for n in range(3))
    env = process_env(settings, REDIS_URL=redis.url, ZOHO_SYNC_ON_SAVE="true", Q_WORKERS="2")
    cluster = start_manage("qcluster", env=env)
    try:
        save_edits(env, before, "+27 82 000 0001")
        wait_for(lambda: set(phones(emulator, before)) == {"+27 82 000 0001"}, "the first edits")

        redis.kill()
        output = save_edits(env, during, "+27 82 000 0002")  # Redis is down
        assert "Traceback" not in output
        assert "could not queue the sync of 1 edited customer(s)" in output
        assert (
            Customer.objects.filter(pk__in=[c.pk for c in during], phone="+27 82 000 0002").count()
            == EDITS
        )

        redis.start()  # empty: whatever it held is gone
        save_edits(env, after, "+27 82 000 0003")
        wait_for(
            lambda: set(phones(emulator, after)) == {"+27 82 000 0003"},
            "the cluster to take up work again",
            timeout=60,
        )
    finally:
        stop_process_group(cluster)
    assert set(phones(emulator, during)) != {"+27 82 000 0002"}  # their tasks never were
    requests = len(emulator.request_log)

    scheduled = run_manage("zoho_sync_customers", env=process_env(settings))  # the schedule's run

    assert scheduled.returncode == 0, scheduled.stdout + scheduled.stderr
    assert set(phones(emulator, during)) == {"+27 82 000 0002"}
    sent = [r.method for r in emulator.request_log[requests:]]
    assert sent == ["PUT"] * EDITS  # the lost edits, once each; nothing else
    assert zoho_account_counts(emulator) == {c.account_number: 1 for c in customers}
