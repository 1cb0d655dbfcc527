"""Pacing: admit each request to Zoho under one budget that every process shares.

Zoho blocks the whole organization for minutes when more than its per-window quota arrives,
so we pace ahead of time instead of backing off after a 429. Every request is logged in the
database before it is sent; a request may go when fewer than `limit` requests can have
arrived at Zoho within the last `window` seconds. A request counts from the moment it is sent
until `window` seconds after its answer came back: Zoho counts it on arrival, which lies in
between, so no margin is needed however slow the network is.

A 429 from Zoho is recorded in the same shared row, so every process pauses until it ends.
The time a run spends waiting for such a block is bounded by its `max_wait`. The daily cap is
counted in that row too.

Why not a rate-limiting library such as pyrate-limiter: its buckets count a request when it is
acquired and forget it a window later, while Zoho counts on arrival and our answer can come back
long after; and the budget, the block and the day's count must change together under one lock
in the database every process already shares (SQLite included), which its separate SQLite,
PostgreSQL and Redis buckets do not give.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F
from django.db.models.functions import Coalesce

from billing_sync.models import ZohoApiState, ZohoRequestLog
from billing_sync.zoho.auth import api_state_for_update
from billing_sync.zoho.errors import DailyBudgetUsed, RateLimitWaitExceeded

logger = logging.getLogger(__name__)

# While the request that frees the next slot is still in flight, look again this often.
IN_FLIGHT_POLL_SECONDS = 0.05
PURGE_EVERY = 200
# Well below ZOHO_STALE_CLAIM_SECONDS, so a waiting run never looks dead.
HEARTBEAT_SECONDS = 30.0
DAY_SECONDS = 86_400

WaitObserver = Callable[[datetime, str], None]


@dataclass(frozen=True)
class DailyBudget:
    """At most `limit` requests a day, keeping `reserve` of them for other integrations."""

    limit: int
    reserve: int


@dataclass(frozen=True)
class Budget:
    """At most `limit` requests in any `window` seconds."""

    limit: int
    window: float


def _active_block(blocked_until: datetime | None, now: float) -> datetime | None:
    if blocked_until is not None and blocked_until.timestamp() > now:
        return blocked_until
    return None


def current_api_state() -> ZohoApiState | None:
    """The shared state row as it is now (no lock), or None before first use."""
    return ZohoApiState.objects.filter(singleton=1).first()


def current_block() -> datetime | None:
    """Until when Zoho is blocking the organization, or None when it is not."""
    state = current_api_state()
    return _active_block(state.blocked_until if state else None, time.time())


def _to_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


class RequestGate:
    """Admits requests under the shared budget and any block Zoho has imposed."""

    def __init__(
        self,
        *,
        budget: Budget,
        request_timeout: float,
        max_wait: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_block_wait: WaitObserver | None = None,
        daily: DailyBudget | None = None,
    ) -> None:
        self.budget = budget
        self.daily = daily or DailyBudget(0, 0)
        self.request_timeout = request_timeout
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep
        self.on_block_wait = on_block_wait
        self.block_waited = 0.0
        self.pace_waited = 0.0
        self.admitted = 0
        # Called at least every HEARTBEAT_SECONDS of a long wait (the sync renews its claim).
        self.heartbeat: Callable[[], None] | None = None

    def acquire(self, method: str, path: str) -> int:
        """Wait until a request may be sent, log it as sent, and return its log id."""
        while True:
            now = self.clock()
            with transaction.atomic():
                state = api_state_for_update()
                blocked = _active_block(state.blocked_until, now)
                if blocked is None:
                    wait = self._budget_wait(now)
                    if wait <= 0:
                        return self._admit(state, now, method, path)
            if blocked is not None:
                self._wait_for_block(blocked, now, state.block_reason)
            else:
                self.pace_waited += wait
                self._sleep_with_heartbeat(wait)

    def wait_while_blocked(self) -> None:
        """Return once Zoho's block (if any) has ended; raise if that exceeds `max_wait`."""
        while True:
            now = self.clock()
            state = current_api_state()
            blocked = _active_block(state.blocked_until if state else None, now)
            if blocked is None:
                return
            self._wait_for_block(blocked, now, state.block_reason)

    def release(self, ticket: int, http_status: int | None) -> None:
        """Record that the request's answer (or failure) came back."""
        ZohoRequestLog.objects.filter(pk=ticket).update(
            done_at=_to_datetime(self.clock()), http_status=http_status
        )

    def record_block(self, *, seconds: float, reason: str) -> datetime:
        """Zoho refused us: pause every process for `seconds` (keeping any longer block)."""
        # At least a second: a zero Retry-After must not turn into a tight retry loop.
        until = _to_datetime(self.clock() + max(seconds, 1.0))
        with transaction.atomic():
            state = api_state_for_update()
            if state.blocked_until is None or state.blocked_until < until:
                state.blocked_until = until
                state.block_reason = reason
                state.save(update_fields=["blocked_until", "block_reason"])
            until = state.blocked_until
        logger.warning("Zoho blocked requests until %s: %s", until.isoformat(), reason)
        return until

    def _count_for_the_day(self, state: ZohoApiState, now: float) -> None:
        """Count the request against the daily budget, or refuse it when the day's share is used.

        Our day starts with its first request and lasts 24 hours: where Zoho's day turns over
        earlier, we only under-use it.
        """
        if not self.daily.limit:
            return
        if state.day_started_at is None or now >= state.day_started_at.timestamp() + DAY_SECONDS:
            state.day_started_at = _to_datetime(now)
            state.day_count = 0
        if state.day_count >= self.daily.limit - self.daily.reserve:
            resets_at = state.day_started_at + timedelta(seconds=DAY_SECONDS)
            raise DailyBudgetUsed(used=state.day_count, daily=self.daily, resets_at=resets_at)
        state.day_count += 1
        state.save(update_fields=["day_started_at", "day_count"])

    def _wait_for_block(self, until: datetime, now: float, reason: str) -> None:
        remaining = until.timestamp() - now
        if self.block_waited + remaining > self.max_wait:
            raise RateLimitWaitExceeded(until=until, reason=reason)
        if self.on_block_wait:
            self.on_block_wait(until, reason)
        self._sleep_with_heartbeat(remaining)
        self.block_waited += remaining

    def _sleep_with_heartbeat(self, seconds: float) -> None:
        while seconds > 0:
            step = min(seconds, HEARTBEAT_SECONDS)
            self.sleep(step)
            seconds -= step
            if self.heartbeat:
                self.heartbeat()

    def _budget_wait(self, now: float) -> float:
        """Seconds until one more request fits in the budget (0 or less: it fits now).

        Counted in SQL, so the cost per request stays flat however large the budget.
        """
        window, limit = self.budget.window, self.budget.limit
        # A request nobody answered is over once its timeout has passed (its sender died).
        ended = Coalesce(
            "done_at",
            ExpressionWrapper(
                F("sent_at") + timedelta(seconds=self.request_timeout),
                output_field=DateTimeField(),
            ),
        )
        counting = (
            ZohoRequestLog.objects.filter(
                sent_at__gt=_to_datetime(now - window - self.request_timeout - 1)
            )
            .annotate(ended=ended)
            .filter(ended__gt=_to_datetime(now - window))
        )
        used = counting.count()
        if used < limit:
            return 0.0
        # The slot frees when the (used - limit + 1)-th earliest request leaves the window.
        freeing = counting.order_by("ended").values_list("ended", "done_at")[used - limit]
        ends_at, done_at = freeing
        if done_at is None and ends_at.timestamp() > now:
            return IN_FLIGHT_POLL_SECONDS  # still in flight: its answer decides
        return max(ends_at.timestamp() + window - now, 0.001)

    def _admit(self, state: ZohoApiState, now: float, method: str, path: str) -> int:
        self._count_for_the_day(state, now)
        self.admitted += 1
        if self.admitted % PURGE_EVERY == 0:
            cutoff = _to_datetime(now - 2 * (self.budget.window + self.request_timeout))
            ZohoRequestLog.objects.filter(sent_at__lt=cutoff).delete()
        entry = ZohoRequestLog.objects.create(
            sent_at=_to_datetime(now), method=method, path=path[:200]
        )
        return entry.pk
