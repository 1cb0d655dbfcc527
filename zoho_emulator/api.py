"""Routes of the Billing API under /billing/v1: which handler answers which method and path.

Only what the project's client calls: list and filter customers, read one, create, update,
mark one active or inactive.
"""

from __future__ import annotations

import json
from typing import Any

from zoho_emulator.config import EmulatorConfig
from zoho_emulator.customers import CustomerStore
from zoho_emulator.errors import (
    invalid_url,
    malformed_json,
    method_not_allowed,
    plan_limit,
)
from zoho_emulator.messages import Request

SCOPE_PREFIX = "ZohoSubscriptions.customers."
SCOPE_ACTIONS = {"POST": "CREATE", "GET": "READ", "PUT": "UPDATE"}
# The last path segment of a status change, and the status it sets.
STATUS_ACTIONS = {"markasactive": "active", "markasinactive": "inactive"}
ALL_CUSTOMER_SCOPES = ("ZohoSubscriptions.fullaccess.all", "ZohoSubscriptions.customers.ALL")

Answer = tuple[int, dict[str, Any]]


def route_api(
    store: CustomerStore, config: EmulatorConfig, request: Request, api_path: str, now: float
) -> Answer:
    """Do the work of one authorized, admitted API request; return (HTTP status, JSON body)."""
    segments = api_path.strip("/").split("/")
    if segments[0] != "customers" or "" in segments[1:]:
        raise invalid_url()
    if len(segments) == 1:
        return _customers(store, config, request, now)
    if len(segments) == 2:
        return _customer(store, config, request, segments[1], now)
    if len(segments) == 3 and segments[2] in STATUS_ACTIONS:
        return _status_change(store, config, request, segments[1], segments[2], now)
    raise invalid_url()


def required_scope(method: str, api_path: str) -> str | None:
    """The OAuth scope a request needs, or None for routes outside customers (answered 404)
    and for methods a route does not take (answered 405)."""
    segments = api_path.strip("/").split("/")
    if segments[0] != "customers":
        return None
    if len(segments) == 3 and segments[2] in STATUS_ACTIONS:
        # The spec grants status changes to the CREATE scope, not UPDATE.
        return SCOPE_PREFIX + "CREATE" if method.upper() == "POST" else None
    action = SCOPE_ACTIONS.get(method.upper())
    return None if action is None else SCOPE_PREFIX + action


def scope_granted(needed: str, granted: tuple[str, ...]) -> bool:
    """True if `granted` holds `needed` or a scope covering every customers operation."""
    held = {scope.casefold() for scope in granted}
    return any(scope.casefold() in held for scope in (needed, *ALL_CUSTOMER_SCOPES))


def json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object; raise ApiError code 1038 otherwise."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise malformed_json() from None
    if not isinstance(parsed, dict):
        raise malformed_json()
    return parsed


def _customers(
    store: CustomerStore, config: EmulatorConfig, request: Request, now: float
) -> Answer:
    if request.method == "POST":
        if config.refuse_creates:
            raise plan_limit()
        customer = store.create(json_object(request.body), config, now)
        return 201, {"code": 0, "message": "The customer has been created", "customer": customer}
    if request.method == "GET":
        customers, page_context = store.page(request.query, config, now)
        return 200, {
            "code": 0,
            "message": "success",
            "customers": customers,
            "page_context": page_context,
        }
    raise method_not_allowed()


def _customer(
    store: CustomerStore, config: EmulatorConfig, request: Request, customer_id: str, now: float
) -> Answer:
    if request.method == "GET":
        return 200, {"code": 0, "message": "success", "customer": store.get(customer_id, config)}
    if request.method == "PUT":
        customer = store.update(customer_id, json_object(request.body), config, now)
        return 200, {
            "code": 0,
            "message": "The customer details have been updated.",
            "customer": customer,
        }
    raise method_not_allowed()


def _status_change(
    store: CustomerStore,
    config: EmulatorConfig,
    request: Request,
    customer_id: str,
    action: str,
    now: float,
) -> Answer:
    if request.method != "POST":
        raise method_not_allowed()
    status = STATUS_ACTIONS[action]
    store.mark(customer_id, status, config, now)
    return 200, {"code": 0, "message": f"The customer has been marked as {status}."}
