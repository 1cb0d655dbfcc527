"""The Zoho error family: what went wrong, and so what to do about it.

One factory, `error_from_response`, classifies Zoho's answers; anything it does not recognise
stays a plain `ZohoError` and is treated as a failure, never as success.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

RATE_LIMIT_CODES = {44: "minute", 45: "daily", 1070: "concurrency"}
AUTH_CODES = {14, 57}
NOT_FOUND_CODES = {1002, 3004}
INVALID_URL_CODE = 5
MESSAGE_LIMIT = 500


class ZohoError(Exception):
    """Any failure talking to Zoho Billing."""

    def __init__(
        self, message: str, *, status: int | None = None, code: int | None = None, path: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.path = path

    def __str__(self) -> str:
        details = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.code is not None:
            details.append(f"code {self.code}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.message}{suffix}"


class ZohoConfigError(ZohoError):
    """Our settings are wrong (missing value, wrong URL or organization): fix them, then rerun."""


class ZohoAuthError(ZohoError):
    """Zoho refused our credentials or token; a fresh token did not help."""


class ZohoTokenThrottled(ZohoAuthError):
    """Zoho's accounts server refused to issue more access tokens for now ("Access Denied")."""


class ZohoInvalidData(ZohoError):
    """Zoho refused the record's data (HTTP 400): permanent until a person fixes the data."""


class ZohoNotFound(ZohoError):
    """The Zoho record does not exist."""


class ZohoTransient(ZohoError):
    """A passing failure (5xx, timeout, dropped connection, unreadable answer): retry later.

    `request_sent` is True when Zoho may have received and acted on the request;
    `may_still_run` is True when nothing tells us Zoho has finished it: we stopped waiting,
    the connection dropped, or a proxy answered instead of Zoho's application.
    """

    def __init__(
        self, message: str, *, request_sent: bool = True, may_still_run: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent
        self.may_still_run = may_still_run


class ZohoRateLimited(ZohoError):
    """Zoho refused the request for the whole organization (HTTP 429): pause every call."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, kind: str = "minute", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.kind = kind


class RateLimitWaitExceeded(ZohoRateLimited):
    """Zoho is blocking us for longer than this run may wait (`--max-wait`)."""

    def __init__(self, *, until: datetime, reason: str = "") -> None:
        super().__init__(f"rate limited by Zoho until {until.astimezone(UTC):%H:%M:%S} UTC")
        self.until = until
        self.reason = reason


class DailyBudgetUsed(ZohoError):
    """Today's share of Zoho's daily request cap is used: stop until the day resets."""

    def __init__(self, *, used: int, daily: Any, resets_at: datetime) -> None:
        super().__init__(
            f"the daily Zoho budget is used ({used} of {daily.limit} requests, "
            f"{daily.reserve} kept for other integrations); it resets at "
            f"{resets_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )
        self.resets_at = resets_at


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds, or None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_from_response(
    status: int, body: dict[str, Any] | None, *, path: str, retry_after: str | None = None
) -> ZohoError | None:
    """Classify one Zoho answer; None means success (2xx with code 0).

    `body` is the parsed JSON object, or None when the answer was not JSON.
    """
    if body is None:
        return _error_without_json(status, path, retry_after)
    code = body.get("code")
    message = str(body.get("message") or f"HTTP {status} from Zoho")[:MESSAGE_LIMIT]
    if 200 <= status < 300 and code == 0:
        return None
    kwargs: dict[str, Any] = {"status": status, "code": code, "path": path}
    if status == 429 or code in RATE_LIMIT_CODES:
        kind = RATE_LIMIT_CODES.get(code, "minute")
        return ZohoRateLimited(
            message, retry_after=parse_retry_after(retry_after), kind=kind, **kwargs
        )
    if status in (401, 403) or code in AUTH_CODES:
        return ZohoAuthError(message, **kwargs)
    if code == INVALID_URL_CODE:
        return ZohoConfigError(f"{message}: check ZOHO_API_BASE_URL", **kwargs)
    # Zoho answers a wrong organization with the generic code 2 ("Invalid value passed for
    # organization_id"); only the message tells it apart from a bad field in our record.
    if "organization_id" in message:
        return ZohoConfigError(f"{message}: check ZOHO_ORGANIZATION_ID", **kwargs)
    if status == 404 or code in NOT_FOUND_CODES:
        return ZohoNotFound(message, **kwargs)
    if status >= 500:
        return ZohoTransient(message, **kwargs)
    if status == 400:
        return ZohoInvalidData(message, **kwargs)
    return ZohoError(message, **kwargs)


def _error_without_json(status: int, path: str, retry_after: str | None) -> ZohoError:
    if status == 429:
        return ZohoRateLimited(
            "Zoho answered 429 without a JSON body",
            retry_after=parse_retry_after(retry_after),
            status=status,
            path=path,
        )
    message = f"Zoho answered HTTP {status} with a body that is not JSON"
    if status >= 500 or 200 <= status < 300:
        # A page that is not Zoho's JSON comes from a proxy in front of it; behind the proxy
        # the request may still be running.
        return ZohoTransient(message, status=status, path=path, may_still_run=True)
    if status == 404:
        return ZohoConfigError(f"{message}: check ZOHO_API_BASE_URL", status=status, path=path)
    return ZohoError(message, status=status, path=path)
