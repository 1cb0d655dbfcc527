"""The Zoho error family: what went wrong, and so what to do about it.

One factory, `error_from_response`, classifies Zoho's answers; anything it does not recognise
stays a plain `ZohoError` and is treated as a failure, never as success.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import requests

from billing_sync.times import in_utc

RATE_LIMIT_CODES = {44: "minute", 45: "daily", 1070: "concurrency"}
AUTH_CODES = {14, 57}
NOT_FOUND_CODES = {1002, 3004}
INVALID_URL_CODE = 5
# Zoho's finance apps answer a user outside the organization (6041), several organizations and
# none named (6024), or a user with no organization at all (9017) with these codes.
ORGANIZATION_CODES = {6024, 6041, 9017}
# An unknown custom-field label refused outright (seen in Zoho Books).
CUSTOM_FIELD_CODES = {120129}
MESSAGE_LIMIT = 500
# Requests that carry a customer's data; any other refusal is never that customer's fault.
DATA_METHODS = frozenset({"POST", "PUT"})
SCOPE_BY_METHOD = {
    "GET": "ZohoSubscriptions.customers.READ",
    "POST": "ZohoSubscriptions.customers.CREATE",
    "PUT": "ZohoSubscriptions.customers.UPDATE",
    "DELETE": "ZohoSubscriptions.customers.DELETE",
}
WHAT_TO_CHECK = (
    "check ZOHO_ORGANIZATION_ID (the organization must be one the token's user belongs to), "
    "the token's scopes (ZohoSubscriptions.customers.CREATE, .READ, .UPDATE) and "
    "ZOHO_DATA_CENTER"
)


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
    """Our settings or the organization refuse every request alike: fix them, then rerun.

    Never a customer's fault: a run that meets one stops, and its customers stay retryable.
    """


class ZohoAuthError(ZohoConfigError):
    """Zoho refused our credentials, token or scopes; a fresh token did not help."""


class ZohoOrganizationError(ZohoConfigError):
    """Zoho refused the organization as a whole: wrong id, a user outside it, no permission."""


class ZohoTokenThrottled(ZohoError):
    """Zoho's accounts server refused to issue more access tokens for now ("Access Denied")."""


class ZohoInvalidData(ZohoError):
    """Zoho refused the data of a create or update (HTTP 400): nothing was written.

    Whose fault it is (this customer's, or the organization's when it refuses everyone alike)
    is for the caller to decide: it knows what the request carried.
    """


class ZohoNotFound(ZohoError):
    """The Zoho record does not exist."""


class ZohoTransient(ZohoError):
    """A passing failure (5xx, timeout, dropped connection, unreadable answer): retry later.

    `request_sent` is False only when the request surely never reached Zoho (the connection
    could not be made); otherwise Zoho may have acted on it, whatever it answered.
    """

    def __init__(self, message: str, *, request_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent


class ZohoUnreachable(ZohoTransient):
    """The request never reached Zoho (a refused connection, a DNS or TLS failure, a connect
    timeout): nothing can have been done with it. The organization's problem, not a
    customer's: the client waits for Zoho to answer again (ZohoClient), as for a block."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, request_sent=False, **kwargs)

    @classmethod
    def at(cls, host: str, reason: str) -> ZohoUnreachable:
        """Zoho's `host` could not be reached, and why."""
        return cls(f"Zoho unreachable at {host}: {reason}")


class ZohoUnreachableTooLong(ZohoError):
    """Zoho stayed unreachable longer than the run may wait: the run stops, its customers stay
    retryable (the next run tries again)."""

    def __init__(self, error: ZohoUnreachable, *, waited: float) -> None:
        super().__init__(
            f"{error.message}; check the network, a proxy, ZOHO_DATA_CENTER "
            f"(waited {waited:.0f} s for it to answer)"
        )


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
        super().__init__(f"rate limited by Zoho until {in_utc(until)}")
        self.until = until
        self.reason = reason


class DailyBudgetUsed(ZohoError):
    """Our share of Zoho's daily request cap is used within the last 24 hours: stop until
    enough of those requests are 24 hours old."""

    def __init__(self, *, used: int, daily: Any, resets_at: datetime) -> None:
        super().__init__(
            f"the daily Zoho budget is used ({used} of {daily.limit} requests in the last 24 "
            f"hours, {daily.reserve} kept for other integrations); the next request may go at "
            f"{in_utc(resets_at, with_date=True)}"
        )
        self.resets_at = resets_at


# Errors that no other request of the run would escape: a run that meets one stops. A
# ZohoConfigError needs a person to change something; the others pass with time.
ZOHO_RUN_STOPPERS: tuple[type[ZohoError], ...] = (
    RateLimitWaitExceeded,
    DailyBudgetUsed,
    ZohoTokenThrottled,
    ZohoUnreachableTooLong,
    ZohoConfigError,
)


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
    status: int,
    body: dict[str, Any] | None,
    *,
    method: str,
    path: str,
    retry_after: str | None = None,
) -> ZohoError | None:
    """Classify one Zoho answer to `method path`; None means success (2xx with code 0).

    `body` is the parsed JSON object, or None when the answer was not JSON. What the request
    carried decides whose fault a refusal is: only a create or update carries a customer's data.
    """
    if body is None:
        return _error_without_json(status, method, path, retry_after)
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
    if _about_the_organization(status, code, message):
        return ZohoOrganizationError(f"{message}: {WHAT_TO_CHECK}", **kwargs)
    if status == 401 or code in AUTH_CODES:
        return ZohoAuthError(message, **kwargs)
    if code == INVALID_URL_CODE:
        return ZohoConfigError(f"{message}: check ZOHO_API_BASE_URL", **kwargs)
    if status == 404 or code in NOT_FOUND_CODES:
        return ZohoNotFound(message, **kwargs)
    if status >= 500:
        return ZohoTransient(message, **kwargs)
    if method not in DATA_METHODS:
        return ZohoConfigError(_refused_without_data(method, path, message), **kwargs)
    if 200 <= status < 300:
        # "Success" with an error code: nothing says whether Zoho wrote the record.
        return ZohoTransient(f"Zoho answered HTTP {status} with an error: {message}", **kwargs)
    if status == 400:
        return ZohoInvalidData(message, **kwargs)
    return ZohoError(message, **kwargs)


def _about_the_organization(status: int, code: object, message: str) -> bool:
    # Code 2 is Zoho's generic "Invalid value passed for <parameter>": only its message tells
    # a wrong organization apart from a bad field of ours.
    return (
        status == 403
        or code in ORGANIZATION_CODES
        or (code == 2 and "organization" in message.lower())
    )


def _refused_without_data(method: str, path: str, message: str) -> str:
    return (
        f"Zoho refused {method} {path}, a request that carries no customer data: {message}; "
        f"{WHAT_TO_CHECK}"
    )


def _error_without_json(status: int, method: str, path: str, retry_after: str | None) -> ZohoError:
    if status == 429:
        return ZohoRateLimited(
            "Zoho answered 429 without a JSON body",
            retry_after=parse_retry_after(retry_after),
            status=status,
            path=path,
        )
    message = f"Zoho answered HTTP {status} with a body that is not JSON"
    if status == 404:
        return ZohoConfigError(f"{message}: check ZOHO_API_BASE_URL", status=status, path=path)
    if status >= 500 or 200 <= status < 300 or status == 408 or method in DATA_METHODS:
        # A page that is not Zoho's JSON comes from something in front of Zoho; behind it the
        # request may have reached Zoho and may still be running.
        return ZohoTransient(message, status=status, path=path)
    return ZohoConfigError(
        f"{message} to {method} {path}: something between us and Zoho refused it; check "
        "ZOHO_API_BASE_URL and any proxy settings",
        status=status,
        path=path,
    )


def scope_for(method: str) -> str:
    """The OAuth scope Zoho requires for a customers request with this HTTP method."""
    return SCOPE_BY_METHOD.get(method.upper(), SCOPE_BY_METHOD["GET"])


def never_sent(exc: requests.RequestException) -> str:
    """Why the request surely never reached the server (no connection was made), or "" when
    it may have: a timeout or a dropped connection after sending."""
    if isinstance(exc, requests.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, requests.exceptions.SSLError):  # the handshake, before any request
        return "TLS failure"
    reason = repr(exc.args[0] if exc.args else None)
    if "NameResolutionError" in reason:
        return "the name does not resolve (DNS)"
    if "NewConnectionError" in reason:
        return "connection refused" if "refused" in reason.lower() else "could not connect"
    return ""
