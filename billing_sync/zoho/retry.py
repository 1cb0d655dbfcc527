"""The retry policy for one customer's requests: what is worth trying again, and after how long.

Pure functions, so that the policy reads in one place and tests control chance and time.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from billing_sync.zoho.errors import ZohoError, ZohoTransient

MAX_BACKOFF_SECONDS = 60.0


def should_retry(error: ZohoError) -> bool:
    """Whether the same request may simply be tried again: a passing failure (a 5xx, a timeout,
    a dropped connection, an unreadable answer). A refusal, a block or bad settings is not."""
    return isinstance(error, ZohoTransient)


def backoff_seconds(
    attempt: int,
    *,
    base: float,
    cap: float = MAX_BACKOFF_SECONDS,
    chance: Callable[[], float] = random.random,
) -> float:
    """How long to wait before try `attempt + 1`: doubling from `base`, at most `cap`, with
    "equal jitter" (between half and all of it) so that processes retrying together spread."""
    ceiling = min(base * 2 ** (attempt - 1), cap)
    return ceiling / 2 + chance() * ceiling / 2
