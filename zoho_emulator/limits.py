"""Org-wide API limits: the per-minute sliding window with its block, the daily cap, concurrency."""

from __future__ import annotations

from collections import deque

from zoho_emulator.config import EmulatorConfig
from zoho_emulator.errors import daily_limit, minute_limit, retry_after, too_many_in_flight


class RateLimiter:
    """Admits or rejects API requests; admitted ones are "counted" against both budgets."""

    def __init__(self) -> None:
        self._arrivals: deque[float] = deque()
        self._blocked_until: float | None = None
        self._day_start: float | None = None
        self._day_count = 0

    def blocked_until(self, now: float) -> float | None:
        """The end of the current block, or None when the org is not blocked."""
        if self._blocked_until is not None and now < self._blocked_until:
            return self._blocked_until
        return None

    def block(self, now: float, seconds: float) -> None:
        """Start a per-minute block now; counting starts afresh when it ends."""
        self._blocked_until = now + seconds
        self._arrivals.clear()

    def admit(self, config: EmulatorConfig, now: float, in_flight: int) -> None:
        """Count the request, or raise ApiError 429 (code 44, 1070 or 45) without counting it.

        Checks run in this order: an active block, concurrency, the daily cap, the per-minute
        window.
        """
        self._check_block(config, now)
        if config.concurrency_limit is not None and in_flight > config.concurrency_limit:
            raise too_many_in_flight(retry_after(config, 1))
        self._check_daily(config, now)
        self._count_arrival(config, now)
        self._day_count += 1

    def _check_block(self, config: EmulatorConfig, now: float) -> None:
        if self._blocked_until is None:
            return
        if now < self._blocked_until:
            raise minute_limit(retry_after(config, self._blocked_until - now))
        self._blocked_until = None

    def _check_daily(self, config: EmulatorConfig, now: float) -> None:
        window = config.daily_window_seconds
        if self._day_start is None:
            self._day_start = now
        elif now >= self._day_start + window:
            self._day_start += (now - self._day_start) // window * window
            self._day_count = 0
        if config.daily_limit is not None and self._day_count >= config.daily_limit:
            resets_in = self._day_start + window - now
            raise daily_limit(config.daily_limit, retry_after(config, resets_in))

    def _count_arrival(self, config: EmulatorConfig, now: float) -> None:
        horizon = now - config.rate_limit_window_seconds
        while self._arrivals and self._arrivals[0] <= horizon:
            self._arrivals.popleft()
        self._arrivals.append(now)
        if len(self._arrivals) > config.rate_limit_requests:
            self.block(now, config.block_seconds)
            raise minute_limit(retry_after(config, config.block_seconds))
