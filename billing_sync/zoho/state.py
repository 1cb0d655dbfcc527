"""The one row every process shares (`ZohoApiState`): read it, lock it, and Zoho's block in it.

The access token (auth.py), Zoho's block and the day's request count (pacing.py) live in this
row so that every process sees them. This module is the one place that reads or locks it.
"""

from __future__ import annotations

import time
from datetime import datetime

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


def extend_block(state: ZohoApiState, until: datetime, reason: str) -> datetime:
    """Record a block until `until` in the locked row, keeping any longer one; its end."""
    if state.blocked_until is None or state.blocked_until < until:
        state.blocked_until = until
        state.block_reason = reason
        state.save(update_fields=["blocked_until", "block_reason"])
    return state.blocked_until
