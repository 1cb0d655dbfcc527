"""Pacing: admit each request to Zoho under one budget that every process shares.

Zoho blocks the whole organization for minutes when more than its per-window quota arrives,
so we pace ahead of time instead of backing off after a 429. Every request is logged in the
database before it is sent; a request may go when fewer than `limit` requests can have
arrived at Zoho within the last `window` seconds. A request counts from the moment it is sent
until `window` seconds after its answer came back: Zoho counts it on arrival, which lies in
between, so no margin is needed however slow the network is.

To keep the database work per request small, a gate admits requests a few at a time (a
lease): their log rows are written together, stamped with the time of the lease, which is no
later than any of them is sent; their answers are written together too, stamped no earlier
than they came back. Both only widen the span a request counts for, so the budget still
holds. A lease is at most a tenth of the budget and is given back unused after half a second.
A block this process meets drops its lease at once; one that another process meets stops this
one at its next lease, so it may send the rest of a lease (under half a second) first.

A 429 from Zoho is recorded in the shared state row, so every process pauses until it ends.
The time a run spends waiting for such a block is bounded by its `max_wait`.

The daily cap is counted in that row too, as a rolling count: never more than the day's share
(`limit - reserve`) in any 24 hours, which is safe whether Zoho's day is a calendar day in the
organization's time zone or a rolling one. The row holds the number of requests leased in each
minute (a JSON object, one key per minute that had any); a minute counts while any part of it
lies within the last 24 hours plus the longest a request can take to arrive (its timeout and
its time in a lease), so a request counts at least as long as Zoho can count it: the buckets
can only over-count. A lease reads, prunes and saves these (at most one number per minute of
the span, about 1,440) in the transaction that already locks the row, so its cost stays flat;
unsent requests given back leave their lease's minute. When the share is used, DailyBudgetUsed
names the minute by which enough counted requests have left the span for the next one to go.
With the daily limit 0 none of this runs.

Why not a rate-limiting library such as pyrate-limiter: its buckets count a request when it is
acquired and forget it a window later, while Zoho counts on arrival and our answer can come back
long after; and the budget, the block and the day's count must change together under one lock
in the database every process already shares (SQLite included), which its separate SQLite,
PostgreSQL and Redis buckets do not give.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F
from django.db.models.functions import Coalesce

from billing_sync.models import ZohoApiState, ZohoRequestLog
from billing_sync.zoho.answers import AnswerKind, answer_kind, count_answers
from billing_sync.zoho.errors import DailyBudgetUsed, RateLimitWaitExceeded
from billing_sync.zoho.state import (
    active_block,
    api_state_for_update,
    current_api_state,
    extend_block,
)

logger = logging.getLogger(__name__)

# While the request that frees the next slot is still in flight, look again this often.
IN_FLIGHT_POLL_SECONDS = 0.05
PURGE_EVERY = 200
# A lease takes at most this share of the budget, and at most MAX_LEASE requests.
LEASE_SHARE = 10
MAX_LEASE = 50
# Unused requests of an older lease go back: the lease was stamped when it was taken.
LEASE_SECONDS = 0.5
# Well below ZOHO_STALE_CLAIM_SECONDS, so a waiting run never looks dead.
HEARTBEAT_SECONDS = 30.0
DAY_SECONDS = 86_400
# The daily count keeps one number per minute.
MINUTE_SECONDS = 60

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


def _to_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _minute(timestamp: float) -> int:
    """The minute (since 1970, UTC) that `timestamp` falls in: the daily count's key."""
    return math.floor(timestamp / MINUTE_SECONDS)


def _unanswered_seconds(request_timeout: float) -> float:
    """How long an unanswered request counts: it may have waited in its lease first."""
    return request_timeout + LEASE_SECONDS


def _counting_minutes(
    counts: dict[str, int], now: float, unanswered_seconds: float
) -> dict[str, int]:
    """The minutes of `counts` any part of which still lies within the counted span."""
    first = _minute(now - DAY_SECONDS - unanswered_seconds)
    return {key: n for key, n in counts.items() if int(key) >= first and n > 0}


def daily_requests_counted(counts: dict[str, int], *, now: float, request_timeout: float) -> int:
    """The requests a gate counts against the day's share at `now`, from the shared row's
    `day_counts`: the same span and rule, for readers without a gate (the alerts)."""
    return sum(_counting_minutes(counts, now, _unanswered_seconds(request_timeout)).values())


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
        on_pace_wait: Callable[[datetime], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        daily: DailyBudget | None = None,
    ) -> None:
        """`on_block_wait` hears when a wait for Zoho's block begins, `on_pace_wait` when one
        for the budget does (until when); `heartbeat` is called before every HEARTBEAT_SECONDS
        of a wait: a run renews its claims there, so nobody takes them for abandoned."""
        self.budget = budget
        self.daily = daily or DailyBudget(0, 0)
        self.request_timeout = request_timeout
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep
        self.on_block_wait = on_block_wait
        self.on_pace_wait = on_pace_wait
        self.heartbeat = heartbeat
        self.block_waited = 0.0
        self.admitted = 0
        self.lease_size = max(1, min(MAX_LEASE, budget.limit // LEASE_SHARE))
        self._unanswered_seconds = _unanswered_seconds(request_timeout)
        self._leased: list[int] = []  # logged as sent, not sent yet (newest lease last)
        self._leased_at = 0.0
        self._sending: dict[int, tuple[str, str]] = {}
        self._answered: defaultdict[tuple[str, str, int | None], list[int]] = defaultdict(list)
        self._answer_kinds: Counter[AnswerKind] = Counter()

    def acquire(self, method: str, path: str) -> int:
        """Wait until a request may be sent, log it as sent, and return its log id."""
        if self._leased and self.clock() - self._leased_at > LEASE_SECONDS:
            self.close()
        if not self._leased:
            self._lease()
        ticket = self._leased.pop()
        self._sending[ticket] = (method, path[:200])
        return ticket

    def close(self) -> None:
        """Write the answers still held and give back requests leased but never sent."""
        self._write_answers()
        if self._leased:
            with transaction.atomic():
                self._give_back_lease(api_state_for_update())

    def _lease(self) -> None:
        """Wait until at least one request fits, then take up to a lease's worth."""
        self._write_answers()
        while True:
            now = self.clock()
            with transaction.atomic():
                state = api_state_for_update()
                blocked = active_block(state, now)
                if blocked is None:
                    free, wait = self._budget_free(now)
                    if free > 0:
                        self._admit(state, now, min(free, self.lease_size))
                        return
            if blocked is not None:
                self._wait_for_block(blocked, now, state.block_reason)
            else:
                if self.on_pace_wait:
                    self.on_pace_wait(_to_datetime(now + wait))
                self._sleep_with_heartbeat(wait)

    def may_wait_until(self, until: datetime) -> bool:
        """Whether waiting until `until` fits in what this gate may still wait (`max_wait`,
        shared with the waits for Zoho's blocks)."""
        return self.block_waited + until.timestamp() - self.clock() <= self.max_wait

    def wait_until(self, until: datetime) -> None:
        """Wait until `until`, counted against `max_wait`, keeping the heartbeat going."""
        remaining = until.timestamp() - self.clock()
        if remaining > 0:
            self._sleep_with_heartbeat(remaining)
            self.block_waited += remaining

    def wait_while_blocked(self) -> None:
        """Return once Zoho's block (if any) has ended; raise if that exceeds `max_wait`."""
        while True:
            now = self.clock()
            state = current_api_state()
            blocked = active_block(state, now)
            if blocked is None:
                return
            self._wait_for_block(blocked, now, state.block_reason)

    def release(self, ticket: int, http_status: int | None, zoho_code: object = None) -> None:
        """Record that the request's answer (or failure: no status) came back.

        Written, and counted by status and Zoho code, with the rest of its lease's answers, at
        once when the lease is used up.
        """
        method, path = self._sending.pop(ticket)
        self._answered[(method, path, http_status)].append(ticket)
        self._answer_kinds[answer_kind(http_status, zoho_code)] += 1
        if not self._leased:
            try:
                self._write_answers()
            except (OperationalError, InterfaceError):
                # The database went away: Zoho's answer must still reach the caller. Kept,
                # written with the next lease's.
                logger.warning("could not write Zoho's answers yet: the database is away")

    def _write_answers(self) -> None:
        """One UPDATE for each kind of answer (a run's are mostly the same kind), and one
        more to count them, in one commit."""
        if not self._answered:
            return
        done_at = _to_datetime(self.clock())
        with transaction.atomic():
            for (method, path, http_status), tickets in self._answered.items():
                ZohoRequestLog.objects.filter(pk__in=tickets).update(
                    done_at=done_at, method=method, path=path, http_status=http_status
                )
            count_answers(self._answer_kinds)
        self._answered.clear()
        self._answer_kinds.clear()

    def record_block(self, *, seconds: float, reason: str) -> datetime:
        """Zoho refused us: pause every process for `seconds` (keeping any longer block)."""
        # At least a second: a zero Retry-After must not turn into a tight retry loop.
        now = self.clock()
        until = _to_datetime(now + max(seconds, 1.0))
        with transaction.atomic():
            state = api_state_for_update()
            self._give_back_lease(state)  # what we leased before the block must not go out
            until = extend_block(state, until, reason, now=now)
        logger.warning("Zoho blocked requests until %s: %s", until.isoformat(), reason)
        return until

    def _daily_free(self, state: ZohoApiState, now: float) -> int:
        """Requests that may go now under the day's share; raise when none may.

        Prunes the row's minutes that no longer count (saved with the lease that follows).
        """
        if not self.daily.limit:
            return MAX_LEASE
        counts = _counting_minutes(state.day_counts, now, self._unanswered_seconds)
        state.day_counts = counts
        used = sum(counts.values())
        share = self.daily.limit - self.daily.reserve
        if used < share:
            return share - used
        raise DailyBudgetUsed(
            used=used, daily=self.daily, resets_at=self._daily_slot_frees_at(counts, used - share)
        )

    def _daily_slot_frees_at(self, counts: dict[str, int], over: int) -> datetime:
        """When more than `over` of the counted requests have left the span (to the minute)."""
        left = 0
        for key in sorted(counts, key=int):
            left += counts[key]
            if left > over:
                leaves_at = (int(key) + 1) * MINUTE_SECONDS + DAY_SECONDS + self._unanswered_seconds
                return _to_datetime(math.ceil(leaves_at / MINUTE_SECONDS) * MINUTE_SECONDS)
        raise ValueError("the daily reserve must be less than the daily limit")

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
            if self.heartbeat:
                self.heartbeat()
            step = min(seconds, HEARTBEAT_SECONDS)
            self.sleep(step)
            seconds -= step

    def _budget_free(self, now: float) -> tuple[int, float]:
        """How many more requests fit in the budget now, and if none, the seconds to wait.

        Counted in SQL, so the cost stays flat however large the budget.
        """
        window, limit = self.budget.window, self.budget.limit
        recent = ZohoRequestLog.objects.filter(
            sent_at__gt=_to_datetime(now - window - self._unanswered_seconds - 1)
        )
        # Cheap first: every recent request, counting or not, may leave room for a lease.
        most = recent.count()
        if most + self.lease_size <= limit:
            return self.lease_size, 0.0
        # A request nobody answered is over once its timeout has passed (its sender died).
        ended = Coalesce(
            "done_at",
            ExpressionWrapper(
                F("sent_at") + timedelta(seconds=self._unanswered_seconds),
                output_field=DateTimeField(),
            ),
        )
        counting = recent.annotate(ended=ended).filter(ended__gt=_to_datetime(now - window))
        used = counting.count()
        if used < limit:
            return limit - used, 0.0
        # The slot frees when the (used - limit + 1)-th earliest request leaves the window.
        freeing = counting.order_by("ended").values_list("ended", "done_at")[used - limit]
        ends_at, done_at = freeing
        if done_at is None and ends_at.timestamp() > now:
            return 0, IN_FLIGHT_POLL_SECONDS  # still in flight: its answer decides
        return 0, max(ends_at.timestamp() + window - now, 0.001)

    def _admit(self, state: ZohoApiState, now: float, wanted: int) -> None:
        """Log up to `wanted` requests as sent now (within the day's share): the new lease."""
        count = min(wanted, self._daily_free(state, now))
        if self.daily.limit:
            key = str(_minute(now))
            state.day_counts[key] = state.day_counts.get(key, 0) + count
            state.save(update_fields=["day_counts"])
        self.admitted += count
        if self.admitted // PURGE_EVERY != (self.admitted - count) // PURGE_EVERY:
            cutoff = _to_datetime(now - 2 * (self.budget.window + self._unanswered_seconds))
            ZohoRequestLog.objects.filter(sent_at__lt=cutoff).delete()
        sent_at = _to_datetime(now)
        entries = ZohoRequestLog.objects.bulk_create(
            [ZohoRequestLog(sent_at=sent_at, method="", path="") for _ in range(count)]
        )
        self._leased = [entry.pk for entry in reversed(entries)]
        self._leased_at = now

    def _give_back_lease(self, state: ZohoApiState) -> None:
        """Requests leased but never sent leave the budget and the day's count."""
        if not self._leased:
            return
        unsent, self._leased = self._leased, []
        ZohoRequestLog.objects.filter(pk__in=unsent).delete()
        key = str(_minute(self._leased_at))
        if self.daily.limit and key in state.day_counts:
            left = state.day_counts.pop(key) - len(unsent)
            if left > 0:
                state.day_counts[key] = left
            state.save(update_fields=["day_counts"])
