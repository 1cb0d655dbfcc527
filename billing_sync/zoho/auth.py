"""OAuth access tokens for Zoho, cached in the database so every process shares one.

Zoho allows about ten token refreshes per ten minutes: a token is refreshed only when it is
missing, about to expire, or rejected, and only by one process at a time (row lock).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import requests
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_sync.models import ZohoApiState
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import (
    ZohoAuthError,
    ZohoConfigError,
    ZohoTokenThrottled,
    ZohoTransient,
)

logger = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
# Some Zoho services answer expires_in in milliseconds; no token lives for more than a day.
MILLISECONDS_THRESHOLD = 86_400

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


def api_state_for_update() -> ZohoApiState:
    """Lock and return the shared state row, creating it on first use. Call inside atomic()."""
    state = ZohoApiState.objects.select_for_update().filter(singleton=1).first()
    if state is not None:
        return state
    try:
        with transaction.atomic():
            ZohoApiState.objects.create(singleton=1)
    except IntegrityError:
        pass  # another process created it first
    return ZohoApiState.objects.select_for_update().get(singleton=1)


class TokenProvider:
    """Hands out a valid access token, refreshing it at most once per expiry across processes."""

    def __init__(self, config: ZohoConfig, session: requests.Session) -> None:
        self.config = config
        self.session = session
        self.refresh_count = 0
        # This client's copy of the shared row, so a run does not read it before every request.
        self._held: ZohoApiState | None = None

    def get_token(self) -> str:
        """Return a cached token that is not about to expire, refreshing it when needed."""
        now = timezone.now()
        if self._held and _usable(self._held, now):
            return self._held.access_token
        state = ZohoApiState.objects.filter(singleton=1).first()
        if state and _usable(state, now):
            self._held = state
            return state.access_token
        return self._refresh(stale_token=None)

    def replace_rejected(self, rejected_token: str) -> str:
        """Zoho refused `rejected_token`: refresh it unless another process already has."""
        return self._refresh(stale_token=rejected_token)

    def _refresh(self, *, stale_token: str | None) -> str:
        with transaction.atomic():
            state = api_state_for_update()
            fresh_elsewhere = state.access_token and state.access_token != stale_token
            if fresh_elsewhere and _usable(state, timezone.now()):
                self._held = state
                return state.access_token
            token, expires_in, api_domain = self._request_token()
            state.access_token = token
            state.token_expires_at = timezone.now() + timedelta(seconds=expires_in)
            state.api_domain = api_domain
            state.save(update_fields=["access_token", "token_expires_at", "api_domain"])
            self._held = state
            self.refresh_count += 1
            return token

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
        except requests.Timeout as exc:
            raise ZohoTransient("timed out asking Zoho accounts for a token") from exc
        except requests.ConnectionError as exc:
            raise ZohoTransient(
                f"could not reach the Zoho accounts server at {self.config.accounts_url}"
            ) from exc
        logger.info("token refresh -> HTTP %s", response.status_code)
        return _parse_token_response(response, self.config.accounts_url)


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
