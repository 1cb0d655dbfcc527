"""Zoho-style error answers (HTTP status + JSON `code`/`message`) the emulator can give."""

from __future__ import annotations

import math

from zoho_emulator.config import EmulatorConfig
from zoho_emulator.messages import Response, json_response

MINUTE_LIMIT_MESSAGE = (
    "For security reasons your organization has been blocked as it have exceeded the maximum "
    "number of requests per minute. Please try again after some time."
)
CONCURRENCY_MESSAGE = (
    "You have reached the maximum number of in process requests allowed. "
    "Kindly try again after some time."
)
PLAN_LIMIT_MESSAGE = (
    "You have reached the maximum number of customers allowed in your current plan. "
    "Upgrade your plan to add more customers."
)
# No verified Zoho code exists for a plan's customer limit: 100101 is invented for the emulator.
PLAN_LIMIT_CODE = 100101
ACTIVE_SUBSCRIPTIONS_MESSAGE = (
    "The customer cannot be marked as inactive as it has active subscriptions."
)
# The spec says only that a customer with an active subscription cannot be marked inactive; the
# code is inferred, next to the customer codes seen (3004 not found, 3062 duplicate name).
ACTIVE_SUBSCRIPTIONS_CODE = 3063


class ApiError(Exception):
    """An error answer of the Billing API: HTTP status, Zoho code, message and extra headers."""

    def __init__(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_response(self) -> Response:
        """Render the error as Zoho's JSON body."""
        return json_response(
            self.status, {"code": self.code, "message": self.message}, self.headers
        )


def retry_after(config: EmulatorConfig, seconds: float) -> dict[str, str]:
    """Return the Retry-After header (whole seconds, ceil, min 1) if the config sends one."""
    if not config.send_retry_after:
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def not_authorized() -> ApiError:
    """401 code 57: missing, unknown, expired or revoked access token."""
    return ApiError(401, 57, "You are not authorized to perform this operation")


def invalid_value(name: str) -> ApiError:
    """400 code 2: a parameter or field has an unusable value."""
    return ApiError(400, 2, f"Invalid value passed for {name}")


def organization_error(style: str, status: int, sent: str | None) -> ApiError:
    """A missing or wrong organization, in the configured style (`sent` is the id received).

    "2" is the Books-style invalid value; "6041" and "9017" are what Books, Inventory and
    Invoice answer a user outside the organization or without any organization.
    """
    if style == "6041":
        message = f"This user is not associated with the CompanyID/CompanyName:{sent or ''}."
        return ApiError(status, 6041, message)
    if style == "9017":
        return ApiError(status, 9017, "The user is not associated with any organization.")
    return ApiError(status, 2, "Invalid value passed for organization_id")


def unknown_custom_field(label: str) -> ApiError:
    """400 code 120129: a custom field label the organization has not defined."""
    return ApiError(400, 120129, f"Custom field with label '{label}' does not exist.")


def plan_limit() -> ApiError:
    """400: the organization's plan allows no more customers (code invented, see above)."""
    return ApiError(400, PLAN_LIMIT_CODE, PLAN_LIMIT_MESSAGE)


def active_subscriptions() -> ApiError:
    """400: a customer with an active subscription cannot be marked inactive (code inferred)."""
    return ApiError(400, ACTIVE_SUBSCRIPTIONS_CODE, ACTIVE_SUBSCRIPTIONS_MESSAGE)


def invalid_url() -> ApiError:
    """404 code 5: no such API route."""
    return ApiError(404, 5, "Invalid URL Passed")


def method_not_allowed() -> ApiError:
    """405 code 37: the route exists but not for this HTTP method."""
    return ApiError(405, 37, "The HTTP method is not allowed for the requested resource")


def malformed_json() -> ApiError:
    """400 code 1038: the body is not a JSON object."""
    return ApiError(400, 1038, "JSON is not well formed")


def customer_not_found(style: str) -> ApiError:
    """Unknown customer id, in the configured style (2015 recordings: 400/3004; Books: 404/1002)."""
    if style == "404/1002":
        return ApiError(404, 1002, "Customer does not exist.")
    return ApiError(400, 3004, "Please enter a valid reference for the customer")


def duplicate_name(name: str) -> ApiError:
    """400 code 3062: display names must be unique in this organization."""
    return ApiError(
        400, 3062, f'The customer "{name}" already exists. Please specify a different name.'
    )


def minute_limit(headers: dict[str, str]) -> ApiError:
    """429 code 44: the per-minute budget was exceeded and the organization is blocked."""
    return ApiError(429, 44, MINUTE_LIMIT_MESSAGE, headers)


def daily_limit(limit: int, headers: dict[str, str]) -> ApiError:
    """429 code 45: the daily budget is used up."""
    message = (
        f"The API call for this organization has exceeded the maximum call rate limit of {limit}."
    )
    return ApiError(429, 45, message, headers)


def too_many_in_flight(headers: dict[str, str]) -> ApiError:
    """429 code 1070: too many requests in process at once."""
    return ApiError(429, 1070, CONCURRENCY_MESSAGE, headers)
