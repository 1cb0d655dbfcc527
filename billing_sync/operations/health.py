"""Health: whether the service is alive, and what a person should look at, in one report.

Four checks make the service unhealthy when they fail (`/healthz` answers 503): the database
does not answer, the broker does not answer, no django-q2 cluster has a fresh heartbeat, or no
live sync run has completed for longer than ZOHO_HEALTH_MAX_RUN_AGE_SECONDS. Two are warnings
(200, named in the answer): Zoho is blocking us, and customers need a person; a third when a
write-back table is set: the last write-back into the company's database failed. They are states a
person should see, not a dead service: a block ends by itself and runs wait for it, a refused
customer waits for someone to fix its data, and the alerts already tell operations about both.
A block that stops every run long enough still turns the service unhealthy, through the age
of the last successful run.

A worker is alive when its cluster's heartbeat is fresh: django-q2's sentinel saves its status
every 0.5 s with a 3 s lifetime, in Redis with the Redis broker, else in the `cluster_status`
database cache (settings.CACHES), so every process sees every host's clusters.

Why not django-health-check (4.x): its view answers 500, not the 503 monitors expect, counts a
warning as an outage, and shows every check's message to anyone; of its checks only the
database's and Redis's apply (the ORM broker, django-q2's heartbeat, the last run, Zoho's block
and the customers needing a person would be ours). With its view replaced and most checks
written here, it would add a dependency and little else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.humanhash import humanize
from django_q.status import Stat
from redis import RedisError

from billing_sync.imports.source import writeback_configured
from billing_sync.models import SyncRun, SyncRunStatus, SyncStatus
from billing_sync.operations.alerts import writeback_catch_up_due
from billing_sync.run.selection import customers_syncable
from billing_sync.times import in_utc
from billing_sync.zoho.state import active_block, current_api_state

logger = logging.getLogger(__name__)

# A broker or cache that does not answer raises one of these.
UNREACHABLE = (DatabaseError, RedisError, OSError)
# The cluster states in which a cluster takes tasks.
RUNNING_STATES = (str(Conf.IDLE), str(Conf.WORKING))
REASON_MAX_CHARS = 200


@dataclass(frozen=True)
class HealthCheck:
    """One check: its name, whether it passed, and a line a person reads.

    A failed `critical` check makes the service unhealthy; any other is a warning.
    """

    name: str
    ok: bool
    detail: str
    critical: bool = True


@dataclass(frozen=True)
class HealthReport:
    """Every check, whether the service is healthy, and one line that says how it stands."""

    ok: bool
    checks: list[HealthCheck]
    summary: str

    @property
    def failing(self) -> list[str]:
        """The critical checks that failed: why the service is unhealthy."""
        return [check.name for check in self.checks if check.critical and not check.ok]

    @property
    def warnings(self) -> list[str]:
        """The other checks that failed: what a person should look at."""
        return [check.name for check in self.checks if not check.critical and not check.ok]


@dataclass(frozen=True)
class _Checked:
    """A check and its words in the summary (None: the summary leaves it out)."""

    check: HealthCheck
    phrase: str | None


def health_report() -> HealthReport:
    """Check the database, the broker, the workers, the last run, Zoho's block and the customers
    that need a person; never raises for a part that does not answer."""
    database = _database()
    orm_broker = "redis" not in settings.Q_CLUSTER
    results = [database]
    for name, check, needs_database, critical in (
        ("broker", _broker, orm_broker, True),
        ("worker", _worker, orm_broker, True),
        ("last_run", _last_run, True, True),
        ("zoho_block", _zoho_block, True, False),
        ("needs_attention", _needs_attention, True, False),
        *([("writeback", _writeback, True, False)] if writeback_configured() else []),
    ):
        if needs_database and not database.check.ok:
            detail = "not checked: the database is unreachable"
            results.append(_Checked(HealthCheck(name, False, detail, critical), None))
        else:
            results.append(check())
    checks = [result.check for result in results]
    ok = all(check.ok for check in checks if check.critical)
    if not ok:
        prefix = "UNHEALTHY"
    elif any(not check.ok for check in checks):
        prefix = "WARNING"
    else:
        prefix = "OK"
    phrases = ", ".join(result.phrase for result in results if result.phrase)
    return HealthReport(ok=ok, checks=checks, summary=f"{prefix}: {phrases}")


def alive_clusters() -> list[Stat]:
    """The django-q2 clusters whose heartbeat is fresh and that take tasks."""
    return [stat for stat in Stat.get_all() if str(stat.status) in RUNNING_STATES]


def last_successful_run() -> SyncRun | None:
    """The latest live run that completed (a stopped run or a dry run does not count)."""
    return (
        SyncRun.objects.filter(
            dry_run=False, status=SyncRunStatus.COMPLETED, finished_at__isnull=False
        )
        .order_by("-started_at", "-id")
        .first()
    )


def _unreachable(name: str, what: str, exc: Exception) -> _Checked:
    # The error's text may name hosts or users: the log has it, the answer only its kind.
    logger.warning("Health check %s: %s does not answer: %s", name, what, exc)
    detail = f"the {what} does not answer ({type(exc).__name__})"
    return _Checked(HealthCheck(name, False, detail), f"{what} unreachable")


def _guarded(name: str, what: str, check: Callable[[], _Checked]) -> _Checked:
    try:
        return check()
    except UNREACHABLE as exc:
        return _unreachable(name, what, exc)


def _database() -> _Checked:
    def check() -> _Checked:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return _Checked(HealthCheck("database", True, f"{connection.vendor} answers"), None)

    return _guarded("database", "database", check)


def _broker() -> _Checked:
    def check() -> _Checked:
        broker = get_broker()
        broker.ping()  # Redis: a round trip; the database broker: the query below is the check
        queued = broker.queue_size()
        detail = f"{type(broker).__name__} broker answers, {queued} task(s) queued"
        return _Checked(HealthCheck("broker", True, detail), None)

    return _guarded("broker", "broker", check)


def _worker() -> _Checked:
    def check() -> _Checked:
        clusters = alive_clusters()
        if not clusters:
            detail = "no django-q2 cluster has reported in the last 3 s: start `manage.py qcluster`"
            return _Checked(HealthCheck("worker", False, detail), "no worker alive")
        described = "; ".join(
            f"{humanize(stat.cluster_id.hex)} on {stat.host} "
            f"({len(stat.workers)} workers, {stat.status})"
            for stat in clusters
        )
        detail = f"{len(clusters)} cluster(s) alive: {described}"
        return _Checked(HealthCheck("worker", True, detail), "worker alive")

    return _guarded("worker", "cluster heartbeat store", check)


def _last_run() -> _Checked:
    def check() -> _Checked:
        limit = settings.ZOHO_HEALTH_MAX_RUN_AGE_SECONDS
        run = last_successful_run()
        if run is None:
            detail = "no sync run has completed yet: is the zoho-sync schedule set up?"
            return _Checked(HealthCheck("last_run", False, detail), "no successful run yet")
        age = (timezone.now() - run.finished_at).total_seconds()
        ok = age <= limit
        detail = (
            f"{run} completed {_span(age)} ago (limit {_span(limit)}, "
            "ZOHO_HEALTH_MAX_RUN_AGE_SECONDS)"
        )
        phrase = (
            f"last run {_span(age)} ago"
            if ok
            else f"no successful run for {_span(age)} (limit {_span(limit)})"
        )
        return _Checked(HealthCheck("last_run", ok, detail), phrase)

    return _guarded("last_run", "database", check)


def _zoho_block() -> _Checked:
    def check() -> _Checked:
        state = current_api_state()
        now = timezone.now()
        until = active_block(state, now.timestamp())
        if until is None:
            detail = "Zoho is not blocking our requests"
            return _Checked(HealthCheck("zoho_block", True, detail, False), "Zoho not blocking")
        reason = (state.block_reason or "-")[:REASON_MAX_CHARS]
        detail = (
            f"Zoho blocks every request until {in_utc(until, with_date=True)} (in "
            f"{_span((until - now).total_seconds())}); runs wait or stop, and the next run "
            f"retries. Zoho said: {reason}"
        )
        phrase = f"Zoho blocking until {in_utc(until)}"
        return _Checked(HealthCheck("zoho_block", False, detail, False), phrase)

    return _guarded("zoho_block", "database", check)


def _needs_attention() -> _Checked:
    def check() -> _Checked:
        count = customers_syncable().filter(zoho_sync_status=SyncStatus.NEEDS_ATTENTION).count()
        need = "customer needs" if count == 1 else "customers need"
        phrase = f"{count} {need} a person"
        if not count:
            detail = "no customer needs a person"
        else:
            link = reverse("admin:billing_sync_customer_changelist")
            detail = (
                f"{phrase}: Zoho or our checks refused the data; fix and save each one "
                f"({link}?zoho_sync_status__exact={SyncStatus.NEEDS_ATTENTION})"
            )
        return _Checked(HealthCheck("needs_attention", not count, detail, False), phrase)

    return _guarded("needs_attention", "database", check)


def _writeback() -> _Checked:
    def check() -> _Checked:
        table = settings.CUSTOMER_SOURCE_WRITEBACK_TABLE
        if not writeback_catch_up_due():
            detail = f"the last write-back into the company's {table} table succeeded"
            return _Checked(HealthCheck("writeback", True, detail, False), None)
        failed = SyncRun.objects.exclude(writeback_error="").order_by("-started_at").first()
        error = failed.writeback_error[:REASON_MAX_CHARS] if failed else "see the alert"
        detail = f"{error}; syncing goes on, and the next write-back catches up"
        return _Checked(HealthCheck("writeback", False, detail, False), "write-back failing")

    return _guarded("writeback", "database", check)


def _span(seconds: float) -> str:
    """A duration as a person says it: 45 s, 3 min, 5 h, 2 days."""
    seconds = max(seconds, 0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
