"""The one row every process shares (`ZohoApiState`): read it, lock it, and Zoho's block in it.

The access token (auth.py), Zoho's block and the day's request count (pacing.py) live in this
row so that every process sees them. This module is the one place that reads or locks it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.db import IntegrityError, transaction

from billing_sync.models import ZohoApiState


def current_api_state() -> ZohoApiState | None:
    """The shared row as it is now (no lock), or None before first use."""
    return ZohoApiState.objects.filter(singleton=1).first()


def api_state_for_update() -> ZohoApiState:
    """Lock and return the shared row, creating it on first use. Call inside atomic()."""
    state = ZohoApiState.objects.select_for_update().filter(singleton=1).first()
    if state is not None:
        return state
    try:
        with transaction.atomic():
            ZohoApiState.objects.create(singleton=1)
    except IntegrityError:
        pass  # another process created it first
    return ZohoApiState.objects.select_for_update().get(singleton=1)


def active_block(state: ZohoApiState | None, now: float) -> datetime | None:
    """Until when the row says Zoho blocks the organization, or None when it does not."""
    blocked_until = state.blocked_until if state is not None else None
    if blocked_until is not None and blocked_until.timestamp() > now:
        return blocked_until
    return None


def current_block() -> datetime | None:
    """Until when Zoho is blocking the organization now, or None when it is not."""
    return active_block(current_api_state(), time.time())


def extend_block(state: ZohoApiState, until: datetime, reason: str, *, now: float) -> datetime:
    """Record a block until `until` in the locked row, keeping any longer one; its end.

    A block that begins once the last one has ended starts a new span of seconds blocked; the
    last one's span joins the total of those before it.
    """
    if state.blocked_until is not None and state.blocked_until >= until:
        return state.blocked_until
    if active_block(state, now) is None:
        state.blocked_seconds += _block_span(state)
        state.block_started_at = datetime.fromtimestamp(now, tz=UTC)
    state.blocked_until = until
    state.block_reason = reason
    state.save(
        update_fields=["blocked_until", "block_reason", "block_started_at", "blocked_seconds"]
    )
    return until


def seconds_blocked(state: ZohoApiState | None, now: float) -> float:
    """The seconds Zoho has blocked us so far: every block from when we learnt of it to its end,
    the one still going up to `now`. It only grows, whichever process's clock records a block."""
    if state is None:
        return 0.0
    current = 0.0
    if state.block_started_at is not None and state.blocked_until is not None:
        end = min(now, state.blocked_until.timestamp())
        current = max(end - state.block_started_at.timestamp(), 0.0)
    return state.blocked_seconds + current


def _block_span(state: ZohoApiState) -> float:
    if state.block_started_at is None or state.blocked_until is None:
        return 0.0
    return max((state.blocked_until - state.block_started_at).total_seconds(), 0.0)
