"""Zoho Accounts' token endpoint (refresh-token grant): issuing, limiting and checking tokens."""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Mapping

from zoho_emulator.config import EmulatorConfig
from zoho_emulator.messages import Response, json_response

ACCESS_DENIED = {
    "error": "Access Denied",
    "error_description": (
        "You have made too many requests continuously. Please try again after some time."
    ),
    "status": "failure",
}


def access_denied() -> Response:
    """HTTP 400 "Access Denied": too many tokens generated in the window."""
    return json_response(400, ACCESS_DENIED)


def credential_error(config: EmulatorConfig, params: Mapping[str, str]) -> str | None:
    """Return the OAuth error code for bad grant parameters, or None when they are right."""
    if params.get("grant_type") != "refresh_token":
        return "unsupported_grant_type"
    if params.get("client_id") != config.client_id:
        return "invalid_client"
    if params.get("client_secret") != config.client_secret:
        return "invalid_client_secret"
    if params.get("refresh_token") != config.refresh_token:
        return "invalid_code"
    return None


class TokenIssuer:
    """Live access tokens (oldest first) and the times of recent successful refreshes."""

    def __init__(self) -> None:
        self._live: OrderedDict[str, float] = OrderedDict()
        self._issued_at: deque[float] = deque()
        self.issued_count = 0

    def exchange(
        self, config: EmulatorConfig, params: Mapping[str, str], api_domain: str, now: float
    ) -> Response:
        """Answer one refresh-token grant the way Zoho Accounts does (errors as HTTP 200)."""
        error = credential_error(config, params)
        if error is not None:
            return json_response(200, {"error": error})
        while self._issued_at and self._issued_at[0] <= now - config.token_refresh_window_seconds:
            self._issued_at.popleft()
        if len(self._issued_at) >= config.token_refresh_limit:
            return access_denied()
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self._remember(config, token, now)
        return json_response(
            200,
            {
                "access_token": token,
                "api_domain": api_domain,
                "token_type": "Bearer",
                "expires_in": max(1, math.ceil(config.token_ttl_seconds)),
            },
        )

    def is_valid(self, token: str, now: float) -> bool:
        """True if the token was issued, is not revoked or displaced, and has not expired."""
        expires_at = self._live.get(token)
        return expires_at is not None and now < expires_at

    def revoke_all(self) -> None:
        """Invalidate every access token issued so far."""
        self._live.clear()

    def _remember(self, config: EmulatorConfig, token: str, now: float) -> None:
        self._issued_at.append(now)
        self.issued_count += 1
        for old in [old for old, expires_at in self._live.items() if expires_at <= now]:
            del self._live[old]
        self._live[token] = now + config.token_ttl_seconds
        while len(self._live) > config.max_live_tokens:
            self._live.popitem(last=False)
