"""Prometheus metrics, read from the database and the broker when they are scraped.

Nothing is counted in a process's memory: whichever web process (or host) answers a scrape
serves the same values, and what a command or a worker did counts as soon as it is recorded.
Zoho's answers are counted by the request gate of every process (`ZohoAnswerCount`), the
seconds blocked in the shared state row; the runs' counters are sums over the `SyncRun` rows,
so they only grow while those rows are kept. Counts, times and Zoho's codes only: no secret,
no customer data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django_q.brokers import get_broker
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis import RedisError

from billing_sync.models import SyncRun, SyncRunKind, SyncStatus, ZohoAnswerCount, ZohoApiState
from billing_sync.operations.health import alive_clusters, last_successful_run
from billing_sync.operations.overview import customer_status_counts
from billing_sync.run.estimate import backlog_estimate
from billing_sync.zoho.answers import is_refusal
from billing_sync.zoho.pacing import daily_requests_counted
from billing_sync.zoho.state import active_block, current_api_state, seconds_blocked

logger = logging.getLogger(__name__)

# Upper bounds (seconds) of the run-duration histogram: a run with nothing to do takes well
# under a second, a scheduled batch of 500 about 17 minutes, a run that waits a block longer.
RUN_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class SyncCollector(Collector):
    """Reads every billing_sync_* metric at collect time."""

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        state = current_api_state()  # read once: the budget's and the blocks' metrics agree
        yield _customers()
        yield from _backlog()
        yield from _answers()
        yield _run_requests()
        yield from _daily_budget(state, now)
        yield from _blocks(state, now)
        yield _run_durations()
        yield _last_success()
        yield from _queue_and_clusters()


def metrics_text() -> bytes:
    """The metrics in Prometheus' text format (raises DatabaseError when the database is down)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector())
    return generate_latest(registry)


def _backlog() -> Iterator[Metric]:
    """The customers the runs still have work for, and when it will be done (0: nothing left)."""
    backlog, estimate = backlog_estimate()
    yield GaugeMetricFamily(
        "billing_sync_backlog_customers",
        "Customers that belong in Zoho and still need a request (not in Zoho yet, or edited "
        "since Zoho accepted them; those needing a person left out).",
        value=backlog,
    )
    yield GaugeMetricFamily(
        "billing_sync_estimated_finish_timestamp_seconds",
        "When the backlog will be done at the current limits (per-minute budget, daily share, "
        "the last 24 hours' use), as Unix time; 0 when nothing is left.",
        value=estimate.finishes_at.timestamp() if backlog else 0,
    )


def _customers() -> Metric:
    gauge = GaugeMetricFamily(
        "billing_sync_customers",
        "Customers that belong in Zoho (internal_test excluded), by zoho_sync_status.",
        labels=["status"],
    )
    counts = dict(customer_status_counts())
    for status in SyncStatus.values:
        gauge.add_metric([status], counts.get(status, 0))
    return gauge


def _answers() -> Iterator[Metric]:
    """Every request to Zoho's API, from any process, by its answer; and Zoho's refusals."""
    requests = CounterMetricFamily(
        "billing_sync_zoho_requests",
        "Requests sent to Zoho's API by every process (runs, verify, plan, checks), by the HTTP "
        "status and Zoho code of the answer (status 0: none came back; code empty: none sent).",
        labels=["http_status", "code"],
    )
    refusals = CounterMetricFamily(
        "billing_sync_zoho_refusals",
        "Requests Zoho refused (an HTTP error, or a 2xx with an error code), by HTTP status and "
        "Zoho code.",
        labels=["http_status", "code"],
    )
    for row in ZohoAnswerCount.objects.order_by("http_status", "zoho_code"):
        labels = [str(row.http_status), row.zoho_code]
        requests.add_metric(labels, row.count)
        if is_refusal((row.http_status, row.zoho_code)):
            refusals.add_metric(labels, row.count)
    yield requests
    yield refusals


def _run_requests() -> Metric:
    counter = CounterMetricFamily(
        "billing_sync_run_requests",
        "Requests sync runs sent to Zoho, by run kind (added when each run ends).",
        labels=["kind"],
    )
    sums = dict(
        SyncRun.objects.filter(dry_run=False)
        .values("kind")
        .annotate(total=Sum("request_count"))
        .order_by()
        .values_list("kind", "total")
    )
    for kind in SyncRunKind.values:
        counter.add_metric([kind], sums.get(kind) or 0)
    return counter


def _daily_budget(state: ZohoApiState | None, now: float) -> Iterator[Metric]:
    limit = settings.ZOHO_DAILY_LIMIT
    allowed = max(limit - settings.ZOHO_DAILY_RESERVE, 0) if limit else 0
    used = (
        daily_requests_counted(
            state.day_counts, now=now, request_timeout=settings.ZOHO_TIMEOUT_SECONDS
        )
        if state is not None
        else 0
    )
    yield GaugeMetricFamily(
        "billing_sync_daily_requests_used",
        "Requests counted against the daily share over the last 24 hours (the pacing gate's "
        "rolling count).",
        value=used,
    )
    yield GaugeMetricFamily(
        "billing_sync_daily_requests_allowed",
        "The daily share: ZOHO_DAILY_LIMIT - ZOHO_DAILY_RESERVE (0 when the daily count is off).",
        value=allowed,
    )
    yield GaugeMetricFamily(
        "billing_sync_daily_budget_used_ratio",
        "billing_sync_daily_requests_used / billing_sync_daily_requests_allowed (0 when off).",
        value=used / allowed if allowed else 0,
    )


def _blocks(state: ZohoApiState | None, now: float) -> Iterator[Metric]:
    until = active_block(state, now)
    yield GaugeMetricFamily(
        "billing_sync_zoho_block_remaining_seconds",
        "Seconds until Zoho's block of the organization ends; 0 when Zoho is not blocking us.",
        value=until.timestamp() - now if until is not None else 0,
    )
    yield CounterMetricFamily(
        "billing_sync_zoho_blocked_seconds",
        "Seconds Zoho has blocked the organization (every block from when we learnt of it to "
        "its end; the one going on, up to now).",
        value=seconds_blocked(state, now),
    )


def _run_durations() -> Metric:
    histogram = HistogramMetricFamily(
        "billing_sync_run_duration_seconds",
        "How long finished sync runs took (dry runs excluded), by run kind.",
        labels=["kind"],
    )
    bounds = {f"le_{i}": bound for i, bound in enumerate(RUN_DURATION_BUCKETS)}
    rows = (
        SyncRun.objects.filter(dry_run=False, finished_at__isnull=False)
        .alias(
            duration=ExpressionWrapper(
                F("finished_at") - F("started_at"), output_field=DurationField()
            )
        )
        .values("kind")
        .annotate(
            count=Count("id"),
            total=Sum("duration"),
            **{
                key: Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
                for key, bound in bounds.items()
            },
        )
        .order_by("kind")
    )
    for row in rows:
        buckets = [(floatToGoString(bound), row[key]) for key, bound in bounds.items()]
        buckets.append(("+Inf", row["count"]))
        total = row["total"].total_seconds() if row["total"] is not None else 0.0
        histogram.add_metric([row["kind"]], buckets, sum_value=total)
    return histogram


def _last_success() -> Metric:
    run = last_successful_run()
    return GaugeMetricFamily(
        "billing_sync_last_successful_run_timestamp_seconds",
        "When the last live sync run that completed finished (Unix time; 0 when none has).",
        value=run.finished_at.timestamp() if run is not None else 0,
    )


def _queue_and_clusters() -> Iterator[Metric]:
    """From the broker: left out of the scrape, and logged, when the broker does not answer."""
    try:
        queued = get_broker().queue_size()
        clusters = len(alive_clusters())
    except RedisError as exc:
        logger.warning("Metrics: the broker does not answer: %s", exc)
        return
    yield GaugeMetricFamily(
        "billing_sync_queue_depth",
        "Tasks waiting in the django-q2 broker's queue (not yet taken by a worker).",
        value=queued,
    )
    yield GaugeMetricFamily(
        "billing_sync_clusters_alive",
        "django-q2 clusters whose heartbeat is fresh (reported within 3 s) and take tasks.",
        value=clusters,
    )
