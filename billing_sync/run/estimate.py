"""When the work will be done: the time a number of requests takes under the per-minute budget
and the daily share, counting what the last 24 hours already used.

Requests go as the pacing gate lets them (zoho/pacing.py): the i-th (from 0) no sooner than
(i // ZOHO_RATE_LIMIT_REQUESTS) windows from now, and, once the daily share
(ZOHO_DAILY_LIMIT - ZOHO_DAILY_RESERVE) is used, each only when a counted request leaves the
24-hour span, as the gate counts it: by the minute it was sent, plus the longest it may take
to arrive. The requests the last 24 hours used (the shared row's `day_counts`) leave first, then
ours. `limited_by` says which bound the last request waited for: `rate` or `daily`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from billing_sync.run.selection import customers_backlog
from billing_sync.zoho.client import PAGE_SIZE
from billing_sync.zoho.pacing import DAY_SECONDS, LEASE_SECONDS, MINUTE_SECONDS
from billing_sync.zoho.state import current_api_state

# Daily limits Zoho's plans publish (or its support grants), to say what a higher one gives.
HIGHER_DAILY_LIMITS = (2_000, 5_000, 10_000)


@dataclass(frozen=True)
class Estimate:
    """When `requests` requests will have been sent, and which bound decided it."""

    requests: int
    seconds: float
    finishes_at: datetime
    limited_by: str  # "rate" or "daily"


def estimate_finish(
    requests: int, *, now: datetime | None = None, daily_limit: int | None = None
) -> Estimate:
    """The estimate for `requests` at the current limits (`daily_limit`: another daily limit)."""
    now = now or timezone.now()
    limit = settings.ZOHO_RATE_LIMIT_REQUESTS
    window = settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS
    daily = settings.ZOHO_DAILY_LIMIT if daily_limit is None else daily_limit
    start = now.timestamp()
    last, limited_by = start, "rate"
    if daily:
        frees = deque(_counted_frees(start))  # when each counted request leaves the span
        free_now = daily - settings.ZOHO_DAILY_RESERVE - len(frees)
        while free_now < 0 and frees:  # over the share (a smaller one now): those leave first
            frees.popleft()
            free_now += 1
    for i in range(requests):
        at = by_rate = start + (i // limit) * window
        if daily:
            if free_now > 0:
                free_now -= 1
            else:  # the share is used: a counted request must leave the span first
                at = max(by_rate, frees.popleft())
            frees.append(_leaves_span(at))
        last, limited_by = at, "daily" if at > by_rate else "rate"
    return Estimate(
        requests=requests,
        seconds=last - start,
        finishes_at=datetime.fromtimestamp(last, tz=UTC),
        limited_by=limited_by,
    )


def higher_daily_limit() -> int | None:
    """The next daily limit up from ZOHO_DAILY_LIMIT that plans publish (None: none above)."""
    higher = [limit for limit in HIGHER_DAILY_LIMITS if limit > settings.ZOHO_DAILY_LIMIT]
    return higher[0] if higher else None


def backlog_requests(customers: int) -> int:
    """What the backlog costs, read from the database alone: a request a customer, and a
    listing of Zoho (a page per 200) when there is anyone to look for."""
    if not customers:
        return 0
    return customers + math.ceil(customers / PAGE_SIZE)


def backlog_estimate(now: datetime | None = None) -> tuple[int, Estimate]:
    """The backlog (customers the runs still have work for) and when it will be done."""
    backlog = customers_backlog().count()
    return backlog, estimate_finish(backlog_requests(backlog), now=now)


def finish_text(estimate: Estimate) -> str:
    """E.g. "2026-12-19 14:05 (UTC)", in the site's time zone."""
    local = timezone.localtime(estimate.finishes_at)
    return f"{local:%Y-%m-%d %H:%M} ({local.tzname()})"


def _counted_frees(now: float) -> list[float]:
    """When each request the last 24 hours counted leaves the span, earliest first."""
    state = current_api_state()
    if state is None:
        return []
    frees = []
    for key, count in state.day_counts.items():
        leaves = _leaves_span(int(key) * MINUTE_SECONDS)
        if leaves > now:
            frees += [leaves] * count
    return sorted(frees)


def _leaves_span(sent_at: float) -> float:
    """When a request sent at `sent_at` stops counting against the day (pacing's rule: its
    minute's end, plus a day, plus the longest it may take to arrive; to the minute)."""
    minute_end = (math.floor(sent_at / MINUTE_SECONDS) + 1) * MINUTE_SECONDS
    leaves = minute_end + DAY_SECONDS + settings.ZOHO_TIMEOUT_SECONDS + LEASE_SECONDS
    return math.ceil(leaves / MINUTE_SECONDS) * MINUTE_SECONDS


def in_words(estimate: Estimate) -> str:
    """E.g. "about 12 days", "about 3 h 10 min", "about 4 min"."""
    span = timedelta(seconds=round(estimate.seconds))
    if span.days >= 2:
        return f"about {span.days} days"
    hours, rest = divmod(span.seconds + span.days * DAY_SECONDS, 3600)
    minutes = math.ceil(rest / 60)
    return f"about {hours} h {minutes} min" if hours else f"about {minutes} min"
