"""The Zoho Billing HTTP client: one `_request` choke point, methods named for resources."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests

from billing_sync.zoho.auth import TokenProvider
from billing_sync.zoho.config import ZohoConfig
from billing_sync.zoho.errors import (
    ZohoAuthError,
    ZohoError,
    ZohoRateLimited,
    ZohoTransient,
    ZohoUnreachable,
    ZohoUnreachableTooLong,
    error_from_response,
    never_sent,
    scope_for,
)
from billing_sync.zoho.pacing import Budget, DailyBudget, RequestGate, WaitObserver
from billing_sync.zoho.records import CustomerPage, ZohoCustomer, email_key

logger = logging.getLogger(__name__)

# Called just before a write goes (the run makes sure the customer is still its own).
BeforeSending = Callable[[], None] | None

ORG_HEADER = "X-com-zoho-subscriptions-organizationid"
PAGE_SIZE = 200
MAX_PAGES = 10_000  # 2 million customers: a bound on the pagination loop, not a real limit
# Without Retry-After, how long the non-minute limits keep us out.
DAILY_BLOCK_SECONDS = 3600.0
CONCURRENCY_BLOCK_SECONDS = 5.0
# While Zoho cannot be reached: the first look again after this long, then twice as long each
# time, up to the longest.
UNREACHABLE_FIRST_PROBE_SECONDS = 2.0
UNREACHABLE_LONGEST_PROBE_SECONDS = 60.0


class ZohoClient:
    """Talks to one Zoho Billing organization, paced under the shared budget."""

    def __init__(
        self,
        config: ZohoConfig,
        *,
        gate: RequestGate | None = None,
        session: requests.Session | None = None,
        max_wait: float | None = None,
        on_block_wait: WaitObserver | None = None,
        on_pace_wait: Callable[[datetime], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        on_unreachable_wait: WaitObserver | None = None,
    ) -> None:
        """The callbacks are the gate's (see RequestGate), and `on_unreachable_wait`: a wait
        for Zoho to be reachable again begins (until when, why)."""
        self.config = config
        self.session = session or session_for(config.api_base_url)
        self.tokens = TokenProvider(config, self.session)
        self.gate = gate or RequestGate(
            budget=Budget(config.rate_limit_requests, config.rate_limit_window_seconds),
            request_timeout=config.timeout_seconds,
            max_wait=config.max_wait_seconds if max_wait is None else max_wait,
            on_block_wait=on_block_wait,
            on_pace_wait=on_pace_wait,
            heartbeat=heartbeat,
            daily=DailyBudget(config.daily_limit, config.daily_reserve),
        )
        self.on_unreachable_wait = on_unreachable_wait
        self.request_count = 0
        # Writes (not GET) Zoho answered, with any HTTP status: those that reached it.
        self.writes_answered = 0

    def close(self) -> None:
        """Square the budget's books (answers held, requests leased) and close the connections."""
        try:
            self.gate.close()
        finally:
            self.session.close()

    # --- customers ------------------------------------------------------------------------

    def list_customers(
        self, *, page: int = 1, per_page: int = PAGE_SIZE, **filters: str
    ) -> CustomerPage:
        """One page of customers (list items carry no custom fields)."""
        params = {"page": page, "per_page": per_page, **filters}
        body = self._request("GET", "/customers", params=params)
        context = body.get("page_context") or {}
        return CustomerPage(
            customers=[self._parse(item) for item in body.get("customers") or []],
            has_more_page=bool(context.get("has_more_page")),
            sort_order=context.get("sort_order"),
        )

    def iter_customers(self, **filters: str) -> Iterator[ZohoCustomer]:
        """Every customer, page by page."""
        for page_number in range(1, MAX_PAGES + 1):
            page = self.list_customers(page=page_number, **filters)
            yield from page.customers
            if not page.has_more_page:
                return
        raise ZohoError(f"Zoho customer list did not end after {MAX_PAGES} pages")

    def find_customers_by_email(self, email: str) -> list[ZohoCustomer]:
        """Customers whose email equals `email` (Zoho compares case-insensitively)."""
        wanted = email_key(email)
        return [c for c in self.iter_customers(email=email) if email_key(c.email) == wanted]

    def get_customer(self, customer_id: str) -> ZohoCustomer:
        """The full record, custom fields included."""
        path = f"/customers/{customer_id}"
        return self._customer_in(self._request("GET", path), "GET", path)

    def create_customer(
        self, payload: dict[str, Any], *, before_sending: BeforeSending = None
    ) -> ZohoCustomer:
        """Create a customer. Not idempotent: never retry blindly after an unknown outcome.

        Only a 2xx that holds the new customer says it was created; any answer without one
        is an unknown outcome (ZohoTransient), since Zoho may have written it all the same.
        `before_sending` (on every write) is called once the budget admits the request, just
        before it goes: what it raises, the request does not go.
        """
        body = self._request("POST", "/customers", before_sending=before_sending, json=payload)
        return self._customer_in(body, "POST", "/customers")

    def update_customer(
        self, customer_id: str, payload: dict[str, Any], *, before_sending: BeforeSending = None
    ) -> ZohoCustomer:
        """Update the given fields of a customer."""
        path = f"/customers/{customer_id}"
        body = self._request("PUT", path, before_sending=before_sending, json=payload)
        return self._customer_in(body, "PUT", path)

    def mark_customer_status(
        self, customer_id: str, status: str, *, before_sending: BeforeSending = None
    ) -> None:
        """Mark a customer "inactive" or "active" again (one POST; Zoho refuses to deactivate a
        customer with an active subscription)."""
        if status not in ("active", "inactive"):
            raise ValueError(f"no Zoho status {status!r}")
        self._request(
            "POST", f"/customers/{customer_id}/markas{status}", before_sending=before_sending
        )

    def _customer_in(self, body: dict[str, Any], method: str, path: str) -> ZohoCustomer:
        node = body.get("customer")
        if not isinstance(node, dict) or not node.get("customer_id"):
            raise ZohoTransient(
                f"Zoho answered {method} {path} without the customer in it", path=path
            )
        return self._parse(node)

    def _parse(self, data: dict[str, Any]) -> ZohoCustomer:
        return ZohoCustomer.from_api(data, account_field=self.config.account_number_field)

    # --- the choke point ------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, before_sending: BeforeSending = None, **body: Any
    ) -> dict[str, Any]:
        """Send one API request under the budget and return Zoho's parsed answer (`body`:
        its `params` or `json`).

        When Zoho cannot be reached (the request never left), wait for it as for a block, then
        send it again; every other failure becomes a ZohoError.
        """
        while True:
            try:
                return self._request_once(method, path, before_sending=before_sending, **body)
            except ZohoUnreachable as error:
                self._wait_until_reachable(error)

    def _wait_until_reachable(self, error: ZohoUnreachable) -> None:
        """Wait for Zoho to answer again, within the run's max_wait (shared with blocks),
        looking with one cheap read after 2 s, 4 s, 8 s...; raise ZohoUnreachableTooLong when
        the next look would not fit."""
        delay, waited = UNREACHABLE_FIRST_PROBE_SECONDS, 0.0
        while True:
            until = datetime.fromtimestamp(self.gate.clock() + delay, tz=UTC)
            if not self.gate.may_wait_until(until):
                raise ZohoUnreachableTooLong(error, waited=waited)
            logger.warning("%s; looking again at %s", error.message, until.isoformat())
            if self.on_unreachable_wait:
                self.on_unreachable_wait(until, error.message)
            self.gate.wait_until(until)
            waited += delay
            try:
                self._request_once("GET", "/customers", params={"page": 1, "per_page": 1})
                return
            except ZohoUnreachable as again:
                error = again
                delay = min(delay * 2, UNREACHABLE_LONGEST_PROBE_SECONDS)

    def _request_once(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        before_sending: BeforeSending = None,
    ) -> dict[str, Any]:
        """One request; a 401 gets one fresh token and one more try."""
        token = self.tokens.get_token()
        sent = partial(self._send, method, path, params=params, json=json, before=before_sending)
        try:
            return sent(token)
        except ZohoAuthError as exc:
            if exc.status != 401:
                raise
            logger.info("Zoho rejected the access token; refreshing once")
        token = self.tokens.replace_rejected(token)
        try:
            return sent(token)
        except ZohoAuthError as exc:
            if exc.status != 401:
                raise
            raise ZohoAuthError(
                f"Zoho refused a fresh access token for {method} {path}: {exc.message}. The "
                f"token most likely lacks the scope {scope_for(method)}, or ZOHO_ORGANIZATION_ID "
                "or ZOHO_DATA_CENTER is not the token's: generate a refresh token with "
                "ZohoSubscriptions.customers.CREATE,ZohoSubscriptions.customers.READ,"
                "ZohoSubscriptions.customers.UPDATE",
                status=exc.status,
                code=exc.code,
                path=path,
            ) from exc

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
        before: BeforeSending,
    ) -> dict[str, Any]:
        headers = {
            "Authorization": f"Zoho-oauthtoken {token}",
            ORG_HEADER: self.config.organization_id,
        }
        url = self.config.api_base_url + path
        ticket = self.gate.acquire(method, path)
        self.request_count += 1
        started = time.monotonic()
        status: int | None = None
        body: dict[str, Any] | None = None
        try:
            if before is not None:
                before()
            response = self.session.request(
                method,
                url,
                params=params,
                json=json,
                headers=headers,
                timeout=self.config.timeout_seconds,
            )
            status = response.status_code
            self.writes_answered += method != "GET"
            body = _json_object(response)
        except requests.RequestException as exc:
            raise _network_error(exc, method, path, url) from exc
        finally:
            self.gate.release(ticket, status, body.get("code") if body else None)
            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info("%s %s -> %s in %.0f ms", method, path, status, elapsed_ms)
        return self._handle(response, body, method, path)

    def _handle(
        self, response: requests.Response, body: dict[str, Any] | None, method: str, path: str
    ) -> dict[str, Any]:
        error = error_from_response(
            response.status_code,
            body,
            method=method,
            path=path,
            retry_after=response.headers.get("Retry-After"),
        )
        if error is None:
            return body
        if isinstance(error, ZohoRateLimited):
            self.gate.record_block(seconds=self._block_seconds(error), reason=error.message)
        raise error

    def _block_seconds(self, error: ZohoRateLimited) -> float:
        if error.retry_after is not None:
            return error.retry_after
        if error.kind == "daily":
            return DAILY_BLOCK_SECONDS
        if error.kind == "concurrency":
            return CONCURRENCY_BLOCK_SECONDS
        return self.config.default_block_seconds


def session_for(url: str) -> requests.Session:
    """A session that reads the environment's proxy and CA settings once, not per request.

    With `trust_env` on, requests scans every environment variable on each request to find
    them, which costs more than our own work per customer. Read for `url`; the accounts host
    of the same data center is reached the same way.
    """
    session = requests.Session()
    found = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False
    return session


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    """The answer's JSON object, or None when the body is not one."""
    try:
        body = response.json()
    except ValueError:  # requests' JSONDecodeError among them
        return None
    return body if isinstance(body, dict) else None


def _network_error(
    exc: requests.RequestException, method: str, path: str, url: str
) -> ZohoTransient:
    """Turn a requests failure into ZohoTransient, saying whether Zoho may have the request:
    ZohoUnreachable when it surely never got there."""
    unreached = never_sent(exc)
    if unreached:
        return ZohoUnreachable.at(urlsplit(url).netloc, unreached)
    if isinstance(exc, requests.Timeout):
        return ZohoTransient(f"Zoho did not answer in time ({method} {path})", path=path)
    return ZohoTransient(
        f"connection to Zoho failed: {type(exc).__name__} ({method} {path})", path=path
    )
