"""OAuth access tokens for Zoho, cached in the database so every process shares one.

Zoho allows about ten token refreshes per ten minutes: a token is refreshed only when it is
missing, about to expire, or rejected, and only by one process at a time. That process marks
the shared row in a short transaction (its refresh id, and until when it may take), asks Zoho's
accounts server outside any transaction, and publishes the token in another short one: no
database lock is held while the network answers. Processes that need a token meanwhile poll
the row until the token appears; if the refresh fails, its error's kind and message (never a
secret) are left in the row and they raise the same kind of error rather than each asking Zoho
again at once; if the refresher died, its mark runs out and the next process takes over. A
refresher whose database went away before it could publish keeps the token it got, and
publishes it once the database answers (its own mark does not make it wait for itself): a lost
database never costs a second refresh.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import DatabaseError, transaction
from django.utils import timezone

from billing_sync.models import ZohoApiState
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import (
    ZohoAuthError,
    ZohoConfigError,
    ZohoError,
    ZohoTokenThrottled,
    ZohoTransient,
    ZohoUnreachable,
    never_sent,
)
from billing_sync.zoho.state import api_state_for_update, current_api_state

logger = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
# Some Zoho services answer expires_in in milliseconds; no token lives for more than a day.
MILLISECONDS_THRESHOLD = 86_400
# A refresher's mark outlasts its request's timeout by this much; past it, it is taken as dead.
REFRESH_MARK_MARGIN = timedelta(seconds=5)
# How often a process waiting for another's refresh looks at the row.
REFRESH_POLL_SECONDS = 0.1
# A failed refresh is recorded as its kind, so the processes waiting for it raise the same class
# (subclasses first).
FAILURE_KINDS: dict[str, type[ZohoError]] = {
    "throttled": ZohoTokenThrottled,
    "auth": ZohoAuthError,
    "config": ZohoConfigError,
    "unreachable": ZohoUnreachable,
    "transient": ZohoTransient,
    "error": ZohoError,
}

TOKEN_ERRORS = {
    "invalid_client": (
        "the accounts server does not know ZOHO_CLIENT_ID; check it and ZOHO_DATA_CENTER "
        "(a client registered in another data center is unknown here)"
    ),
    "invalid_client_secret": "ZOHO_CLIENT_SECRET is wrong for this ZOHO_CLIENT_ID",
    "invalid_code": (
        "ZOHO_REFRESH_TOKEN is invalid, revoked or from another data center; generate a new one"
    ),
    "unsupported_grant_type": "the accounts server refused the refresh_token grant",
}


class TokenProvider:
    """Hands out a valid access token, refreshing it at most once per expiry across processes."""

    def __init__(
        self,
        config: ZohoConfig,
        session: requests.Session,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.session = session
        self.sleep = sleep
        # This client's copy of the shared row, so a run does not read it before every request.
        self._held: ZohoApiState | None = None
        # Our refresh in progress, and the token it got that the database did not take yet.
        self._own_refresh = ""
        self._unpublished: tuple[str, datetime, str] | None = None

    def get_token(self) -> str:
        """Return a cached token that is not about to expire, refreshing it when needed."""
        now = timezone.now()
        if self._held and _usable(self._held, now):
            return self._held.access_token
        state = current_api_state()
        if state and _usable(state, now):
            self._held = state
            return state.access_token
        return self._refresh(stale_token=None)

    def replace_rejected(self, rejected_token: str) -> str:
        """Zoho refused `rejected_token`: refresh it unless another process already has."""
        return self._refresh(stale_token=rejected_token)

    def _refresh(self, *, stale_token: str | None) -> str:
        """A usable token other than `stale_token`: another process's, or one we ask Zoho for."""
        waited_for = ""
        while True:
            with transaction.atomic():
                state = api_state_for_update()
                now = timezone.now()
                if _usable(state, now) and state.access_token != stale_token:
                    self._held = state
                    return state.access_token
                failure = state.token_refresh_failure
                if waited_for and state.token_refresh_id == waited_for and failure:
                    raise _recorded_failure(failure)  # the refresh we waited for failed
                mine = bool(self._own_refresh) and state.token_refresh_id == self._own_refresh
                if mine and self._unpublished is not None:
                    return self._publish(state, self._own_refresh)
                if mine or not _refreshing(state, now):
                    refresh_id = self._claim_refresh(state, now)
                    break
                waited_for = state.token_refresh_id
            self._wait_for_refresh(waited_for, stale_token)
        return self._refresh_now(refresh_id)

    def _claim_refresh(self, state: ZohoApiState, now: datetime) -> str:
        """Mark the locked row: this process asks Zoho, the others wait for its answer."""
        state.token_refresh_id = uuid.uuid4().hex
        timeout = timedelta(seconds=self.config.timeout_seconds)
        state.token_refreshing_until = now + timeout + REFRESH_MARK_MARGIN
        state.token_refresh_failure = {}
        state.save(
            update_fields=["token_refresh_id", "token_refreshing_until", "token_refresh_failure"]
        )
        self._own_refresh, self._unpublished = state.token_refresh_id, None
        return state.token_refresh_id

    def _wait_for_refresh(self, refresh_id: str, stale_token: str | None) -> None:
        """Poll the row (no lock) until that refresh has ended, one way or another."""
        while True:
            self.sleep(REFRESH_POLL_SECONDS)
            state = current_api_state()
            now = timezone.now()
            if (
                state is None
                or state.token_refresh_id != refresh_id
                or not _refreshing(state, now)
                or (_usable(state, now) and state.access_token != stale_token)
            ):
                return

    def _refresh_now(self, refresh_id: str) -> str:
        """Ask Zoho for a token (no transaction open) and publish it, or record the failure."""
        asked_at = timezone.now()
        try:
            token, expires_in, api_domain = self._request_token()
        except Exception as exc:
            self._record_failure(refresh_id, exc)
            raise
        # Kept until published: should the database go away now, the next call publishes it.
        self._unpublished = (token, asked_at + timedelta(seconds=expires_in), api_domain)
        with transaction.atomic():
            return self._publish(api_state_for_update(), refresh_id)

    def _publish(self, state: ZohoApiState, refresh_id: str) -> str:
        """Write the token our refresh got into the locked row, ending our mark."""
        assert self._unpublished is not None
        token, expires_at, api_domain = self._unpublished
        state.access_token = token
        state.token_expires_at = expires_at
        state.api_domain = api_domain
        fields = ["access_token", "token_expires_at", "api_domain"]
        if state.token_refresh_id == refresh_id:
            state.token_refreshing_until = None
            fields.append("token_refreshing_until")
        state.save(update_fields=fields)
        self._held = state
        self._own_refresh, self._unpublished = "", None
        return token

    def _record_failure(self, refresh_id: str, exc: Exception) -> None:
        """End our mark and leave the failure for the processes waiting on this refresh."""
        try:
            with transaction.atomic():
                state = api_state_for_update()
                if state.token_refresh_id != refresh_id:
                    return  # our mark ran out and another process took over: its answer counts
                state.token_refreshing_until = None
                state.token_refresh_failure = _failure_record(exc)
                state.save(update_fields=["token_refreshing_until", "token_refresh_failure"])
        except DatabaseError:
            # The refresh's own error matters more; the mark runs out by itself.
            logger.warning("could not record the failed token refresh", exc_info=True)

    def _request_token(self) -> tuple[str, float, str]:
        url = f"{self.config.accounts_url}/oauth/v2/token"
        form = {
            "grant_type": "refresh_token",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "refresh_token": self.config.refresh_token,
        }
        try:
            # Form body, not query string: the URL may end up in exception text and logs.
            response = self.session.post(url, data=form, timeout=self.config.timeout_seconds)
        except requests.RequestException as exc:
            unreached = never_sent(exc)
            if unreached:
                raise ZohoUnreachable.at(urlsplit(url).netloc, unreached) from exc
            if isinstance(exc, requests.Timeout):
                raise ZohoTransient("timed out asking Zoho accounts for a token") from exc
            raise ZohoTransient(
                f"could not reach the Zoho accounts server at {self.config.accounts_url}"
            ) from exc
        logger.info("token refresh -> HTTP %s", response.status_code)
        return _parse_token_response(response, self.config.accounts_url)


def _refreshing(state: ZohoApiState, now: datetime) -> bool:
    """Whether a process is asking Zoho for a token now (its mark has not run out)."""
    return state.token_refreshing_until is not None and state.token_refreshing_until > now


def _failure_record(exc: Exception) -> dict[str, Any]:
    """What the waiters need to raise the same error: its kind, message and HTTP status."""
    if not isinstance(exc, ZohoError):
        # Not one of ours: its text might quote the request, so only its class is kept.
        return {"kind": "error", "message": f"token refresh failed: {type(exc).__name__}"}
    kind = next(name for name, cls in FAILURE_KINDS.items() if isinstance(exc, cls))
    return {"kind": kind, "message": exc.message, "status": exc.status}


def _recorded_failure(record: dict[str, Any]) -> ZohoError:
    """The error another process's refresh ended with, to raise in this one."""
    error_class = FAILURE_KINDS.get(record.get("kind", ""), ZohoError)
    message = str(record.get("message") or "token refresh failed")
    return error_class(message, status=record.get("status"))


def _usable(state: ZohoApiState, now: datetime) -> bool:
    return bool(
        state.access_token
        and state.token_expires_at
        and state.token_expires_at - REFRESH_MARGIN > now
    )


def _parse_token_response(response: requests.Response, accounts_url: str) -> tuple[str, float, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if response.status_code == 404:
            raise ZohoConfigError(
                f"{accounts_url} has no token endpoint: check ZOHO_ACCOUNTS_URL",
                status=response.status_code,
            )
        raise ZohoTransient(
            f"Zoho accounts answered HTTP {response.status_code} without JSON",
            status=response.status_code,
        )
    error = body.get("error")
    if error:
        if str(error).lower().replace(" ", "_") == "access_denied":
            raise ZohoTokenThrottled(
                "Zoho accounts refused a new access token (Access Denied): too many refreshes "
                "in the last 10 minutes; wait and retry",
                status=response.status_code,
            )
        reason = TOKEN_ERRORS.get(str(error), f"the accounts server answered {error!r}")
        raise ZohoAuthError(f"Zoho token refresh failed: {reason}", status=response.status_code)
    token = body.get("access_token")
    if not token:
        raise ZohoAuthError("Zoho token refresh answered without an access_token")
    expires_in = float(body.get("expires_in_sec") or body.get("expires_in") or 3600)
    if expires_in > MILLISECONDS_THRESHOLD:
        expires_in /= 1000
    return str(token), expires_in, str(body.get("api_domain") or "")
