"""What an error means for the customer at hand: the sync's own errors, and `next_step`, the
one place that says what a customer's attempt does after any error."""

from __future__ import annotations

from enum import Enum

from billing_sync.run.stops import RUN_STOPPERS
from billing_sync.zoho.errors import ZohoError, ZohoInvalidData, ZohoRateLimited
from billing_sync.zoho.retry import should_retry


class NotInZoho(ZohoError):
    """The Zoho customer we are linked to is gone (deleted in Zoho?): a person decides."""

    def __init__(self, error: ZohoError) -> None:
        super().__init__(
            f"Zoho no longer holds the customer we are linked to ({error}): if it was deleted "
            "in Zoho on purpose, unlink it; `zoho_verify --fix` relinks a customer Zoho holds "
            "under our account number"
        )


class StatusRefused(ZohoInvalidData):
    """Zoho refused to mark the customer inactive (or active): an active subscription, most
    likely. One customer's state, never the organization's: a person acts, the run goes on."""

    def __init__(self, error: ZohoInvalidData, *, status: str) -> None:
        fix = ""
        if status == "inactive":
            fix = " (cancel its subscriptions in Zoho, then re-queue it)"
        super().__init__(
            f"Zoho refused to mark the customer {status}: {error.message}{fix}",
            status=error.status,
            code=error.code,
            path=error.path,
        )


class ClaimLost(Exception):
    """The customer is no longer this run's (taken over while the database was away)."""


class Next(Enum):
    """What a customer's attempt does after an error."""

    STOP_RUN = "stop the run: no other customer would fare better"
    WAIT_FOR_BLOCK = "Zoho refused the organization for now: wait, then try again"
    PLACE_REFUSAL = "Zoho refused the data: the customer's fault, or the organization's?"
    RETRY = "a passing failure: try again after a back-off"
    GIVE_UP = "leave the customer failed for a later run"


def next_step(error: Exception) -> Next:
    """The one place that says what an error means for the customer at hand."""
    if isinstance(error, RUN_STOPPERS):
        return Next.STOP_RUN
    if isinstance(error, ZohoRateLimited):
        return Next.WAIT_FOR_BLOCK
    if isinstance(error, ZohoInvalidData):
        return Next.PLACE_REFUSAL
    if isinstance(error, ZohoError) and should_retry(error):
        return Next.RETRY
    return Next.GIVE_UP
