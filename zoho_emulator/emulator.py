"""ZohoEmulator: the organization's state behind one lock, the request pipeline, the lifecycle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from zoho_emulator.api import required_scope, route_api, scope_granted
from zoho_emulator.config import EmulatorConfig
from zoho_emulator.customers import CustomerStore
from zoho_emulator.errors import (
    ApiError,
    invalid_url,
    not_authorized,
    organization_error,
)
from zoho_emulator.faults import (
    AFTER_WORK_KINDS,
    EARLY_KINDS,
    LATE_KINDS,
    RANDOM_KINDS,
    TOKEN_KINDS,
    Fault,
    FaultBook,
    RandomFaults,
    fault_response,
)
from zoho_emulator.limits import RateLimiter
from zoho_emulator.messages import NO_RESPONSE, Request, Response, json_response
from zoho_emulator.server import EmulatorHTTPServer
from zoho_emulator.tokens import TokenIssuer, access_denied

API_PREFIX = "/billing/v1"
TOKEN_PATH = "/oauth/v2/token"  # noqa: S105 - a URL path, not a password
CONTROL_PREFIX = "/__emulator__/"
ORGANIZATION_HEADER = "x-com-zoho-subscriptions-organizationid"
AUTH_SCHEMES = ("zoho-oauthtoken", "bearer")


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the emulator answered it.

    `status` 0 means the connection was closed without a response (drop, lose_response);
    `counted` means the request was admitted by the rate limits and used up budget; `code` is
    Zoho's `code` in the answer (e.g. 44, 45 or 1070 with a 429), None when it had none.
    """

    time: float
    method: str
    path: str
    status: int
    counted: bool
    code: int | None = None


class ZohoEmulator:
    """A local Zoho Billing organization served over HTTP (see the package docstring)."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._config = config or EmulatorConfig()
        # Zoho's time (time.time() by default): its windows, blocks, token lifetimes and
        # records' times. A test may set a clock it moves on itself; delays stay real.
        self.clock = clock
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._tokens_pending = 0
        self._forget_state()

    # Lifecycle

    def bind(self, host: str = "127.0.0.1", port: int = 0) -> ZohoEmulator:
        """Open the listening socket (port 0 picks a free port) without serving yet."""
        if self._server is not None:
            raise RuntimeError("The emulator is already bound; stop() it first.")
        self._server = EmulatorHTTPServer((host, port), self.handle)
        return self

    def start(self, host: str = "127.0.0.1", port: int = 0) -> ZohoEmulator:
        """Bind (unless already bound) and serve in a daemon thread; return self."""
        if self._server is None:
            self.bind(host, port)
        server = self._bound_server()
        server.started = True
        self._thread = threading.Thread(
            target=server.serve_forever, name="zoho-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() or KeyboardInterrupt; binds first if needed."""
        if self._server is None:
            self.bind()
        server = self._bound_server()
        server.started = True
        server.serve_forever()

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        if server.started:
            server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. http://127.0.0.1:54321."""
        host, port = self._bound_server().server_address[:2]
        return f"http://{host}:{port}"

    @property
    def accounts_url(self) -> str:
        """Where the token endpoint lives (same server)."""
        return self.url

    @property
    def api_base_url(self) -> str:
        """Base URL of the Billing API."""
        return self.url + API_PREFIX

    # State for tests and demos

    @property
    def config(self) -> EmulatorConfig:
        """The current configuration."""
        return self._config

    @property
    def connections_opened(self) -> int:
        """TCP connections clients opened since the last reset (keep-alive keeps this low)."""
        opened = self._server.connections_opened if self._server else 0
        return opened - self._connections_baseline

    def reset(self, config: EmulatorConfig | None = None) -> None:
        """Forget customers, tokens, counters, logs, faults (random ones too) and any block.

        The config is kept unless one is given, else swapped for `config`.
        """
        with self._lock:
            if config is not None:
                self._config = config
            self._forget_state()

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change config fields live (state is kept); return the new config."""
        with self._lock:
            self._config = self._config.with_changes(**changes)
            return self._config

    def customers(self) -> list[dict[str, Any]]:
        """Copies of every full customer record, in creation order."""
        with self._lock:
            return self._store.all(self._config)

    def add_customer(self, **fields: Any) -> dict[str, Any]:
        """Seed a customer directly (no request is logged or counted); `status` may be given."""
        with self._lock:
            try:
                return self._store.seed(fields, self._config, self.clock())
            except ApiError as error:
                raise ValueError(error.message) from None

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every API request so far (a copy), oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def token_refresh_count(self) -> int:
        """How many access tokens have been issued."""
        with self._lock:
            return self._tokens.issued_count

    def revoke_access_tokens(self) -> None:
        """Invalidate every access token issued so far (later calls answer 401 code 57)."""
        with self._lock:
            self._tokens.revoke_all()

    def block_for(self, seconds: float) -> None:
        """Put the organization in a per-minute block starting now."""
        with self._lock:
            self._limiter.block(self.clock(), seconds)

    @property
    def blocked_until(self) -> float | None:
        """The clock's time at which the current block ends, or None when not blocked."""
        with self._lock:
            return self._limiter.blocked_until(self.clock())

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        email: str | None = None,
        status: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Arm a fault (kinds in faults.FAULT_KINDS); `status` None means the kind's default."""
        fault = Fault(kind, times, method, path, email, status, delay)
        with self._lock:
            self._faults.add(fault)

    def inject_random(
        self,
        rate: float,
        kinds: tuple[str, ...] = RANDOM_KINDS,
        *,
        seed: int | None = None,
        delay: float = 1.0,
    ) -> None:
        """From now on give each API request a fault with probability `rate` (0 to 1).

        The kind is drawn uniformly from `kinds` (any of faults.RANDOM_KINDS) and the fault acts
        like the injected one: error 500, html_error 502, slow sleeps `delay` seconds. The token
        and control endpoints are never hit. An injected fault of the same stage wins over a
        random one. A `seed` makes the draws repeatable for requests sent one at a time.
        Replaces any earlier random setting; clear_faults() or reset() turns it off.
        """
        with self._lock:
            self._random_faults.arm(rate, kinds, seed=seed, delay=delay)

    @property
    def fault_counts(self) -> dict[str, int]:
        """How many faults of each kind (injected or random) have fired since the last reset.

        Only kinds that fired appear. A fault fires when it shapes an answer: one drawn for a
        request that auth or the rate limits refuse first does not count.
        """
        with self._lock:
            return dict(self._fault_counts)

    def busy(self) -> bool:
        """Whether an API request is being handled right now."""
        with self._lock:
            return self._in_flight > 0

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no API request, nor a delayed token request, is being handled; True if idle.

        Slow faults and `token_delay_seconds` make answers finish late.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0 and self._tokens_pending == 0:
                    return True
            time.sleep(0.01)
        return False

    def clear_faults(self) -> None:
        """Disarm every injected fault and turn random faults off (fault_counts are kept)."""
        with self._lock:
            self._faults.clear()
            self._random_faults.off()

    # Request pipeline

    def handle(self, request: Request) -> Response:
        """Answer one HTTP request (called from server threads)."""
        if request.path == TOKEN_PATH:
            return self._handle_token(request)
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            return self._handle_api(request)
        if request.path.startswith(CONTROL_PREFIX):
            return self._handle_control(request)
        return invalid_url().to_response()

    def _handle_token(self, request: Request) -> Response:
        if request.method != "POST":
            return json_response(405, {"error": "invalid_request"})
        params = {**request.query, **_form_params(request)}
        with self._lock:
            delay = self._config.token_delay_seconds
            self._tokens_pending += 1
        try:
            # Outside the lock, so other requests (token ones too) are served meanwhile.
            time.sleep(delay)
            with self._lock:
                fault = self._faults.take(TOKEN_KINDS, request.method, request.path, None)
                if fault is not None:
                    self._count_fault(fault)
                    return access_denied()
                return self._tokens.exchange(self._config, params, self.url, self.clock())
        finally:
            with self._lock:
                self._tokens_pending -= 1

    def _handle_api(self, request: Request) -> Response:
        arrival = self.clock()
        api_path = request.path[len(API_PREFIX) :] or "/"
        email = _request_email(request)
        with self._lock:
            self._in_flight += 1
            drawn = self._random_faults.draw()
            early = self._faults.take(EARLY_KINDS, request.method, api_path, email)
            if early is None and drawn is not None and drawn.kind in EARLY_KINDS:
                early = drawn
            if early is not None:
                self._count_fault(early)
        late_drawn = drawn if drawn is not None and drawn.kind in LATE_KINDS else None
        response, counted = NO_RESPONSE, False
        try:
            if early is not None and early.kind == "drop":
                return response
            if early is not None:
                time.sleep(early.delay)
            with self._lock:
                response, counted = self._answer_api(request, api_path, email, late_drawn)
            return response
        finally:
            with self._lock:
                self._in_flight -= 1
                record = RequestRecord(
                    arrival, request.method, api_path, response.status, counted, response.code
                )
                self._log.append(record)

    def _answer_api(
        self, request: Request, api_path: str, email: str | None, drawn: Fault | None
    ) -> tuple[Response, bool]:
        # Runs under the lock. Order: auth (token, organization, scope), rate limits, late
        # faults, the route. `drawn` is this request's random late fault, used when no injected
        # one matches.
        now = self.clock()
        try:
            self._authorize(request, api_path, now)
            self._limiter.admit(self._config, now, self._in_flight)
        except ApiError as error:
            return error.to_response(), False
        fault = self._faults.take(LATE_KINDS, request.method, api_path, email) or drawn
        if fault is not None:
            self._count_fault(fault)
        if fault is not None and fault.kind not in AFTER_WORK_KINDS:
            return fault_response(fault, self._config), True
        response = self._route(request, api_path, now)
        return (fault_response(fault, self._config) if fault is not None else response), True

    def _route(self, request: Request, api_path: str, now: float) -> Response:
        try:
            status, payload = route_api(self._store, self._config, request, api_path, now)
        except ApiError as error:
            return error.to_response()
        return json_response(status, payload)

    def _authorize(self, request: Request, api_path: str, now: float) -> None:
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in AUTH_SCHEMES or not self._tokens.is_valid(token, now):
            raise not_authorized()
        organization = request.headers.get(ORGANIZATION_HEADER) or request.query.get(
            "organization_id"
        )
        config = self._config
        if organization != config.organization_id:
            raise organization_error(
                config.organization_error, config.organization_error_status, organization
            )
        # Zoho answers a token without the needed scope exactly like a bad token.
        needed = required_scope(request.method, api_path)
        if needed is not None and not scope_granted(needed, config.scopes):
            raise not_authorized()

    def _handle_control(self, request: Request) -> Response:
        action = request.path[len(CONTROL_PREFIX) :].strip("/")
        expected_method = {"state": "GET", "reset": "POST", "config": "POST", "faults": "POST"}.get(
            action
        )
        if expected_method is None:
            return json_response(404, {"error": f"Unknown control endpoint {request.path!r}."})
        if request.method != expected_method:
            return json_response(405, {"error": f"Use {expected_method} for {request.path}."})
        if action == "state":
            return json_response(200, self._state_snapshot())
        if action == "reset":
            self.reset()
            return json_response(200, {"reset": True})
        if action == "faults":
            return self._faults_over_http(request.body)
        return self._configure_over_http(request.body)

    def _configure_over_http(self, body: bytes) -> Response:
        try:
            changes = json.loads(body.decode("utf-8") or "{}")
            if not isinstance(changes, dict):
                raise ValueError("Send a JSON object of config changes.")
            config = self.configure(**changes)
        except (ValueError, TypeError) as error:
            return json_response(400, {"error": str(error)})
        return json_response(200, {"config": asdict(config)})

    def _faults_over_http(self, body: bytes) -> Response:
        """{"clear": true} turns every fault off; {"random_rate": r, "kinds": [...], "seed": s,
        "delay": d} (all but random_rate optional) turns random faults on. Both may be sent."""
        try:
            changes = json.loads(body.decode("utf-8") or "{}")
            if not isinstance(changes, dict):
                raise ValueError("Send a JSON object.")
            unknown = sorted(set(changes) - {"clear", "random_rate", "kinds", "seed", "delay"})
            if unknown:
                raise ValueError(f"Unknown fault setting(s): {', '.join(unknown)}.")
            if "random_rate" not in changes and not changes.get("clear"):
                raise ValueError('Send "random_rate" (kinds, seed, delay optional) or "clear".')
            if changes.get("clear"):
                self.clear_faults()
            if "random_rate" in changes:
                kinds = changes.get("kinds", RANDOM_KINDS)
                if not isinstance(kinds, list | tuple):
                    raise ValueError("kinds must be a list.")
                self.inject_random(
                    changes["random_rate"],
                    tuple(kinds),
                    seed=changes.get("seed"),
                    delay=changes.get("delay", 1.0),
                )
        except (ValueError, TypeError) as error:
            return json_response(400, {"error": str(error)})
        with self._lock:
            return json_response(
                200,
                {
                    "random_faults": self._random_faults.describe(),
                    "fault_counts": dict(self._fault_counts),
                },
            )

    def _count_fault(self, fault: Fault) -> None:
        # Under the lock.
        self._fault_counts[fault.kind] = self._fault_counts.get(fault.kind, 0) + 1

    def _state_snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "customers": self._store.all(self._config),
                "request_count": len(self._log),
                "token_refresh_count": self._tokens.issued_count,
                "blocked_until": self._limiter.blocked_until(self.clock()),
                "random_faults": self._random_faults.describe(),
                "fault_counts": dict(self._fault_counts),
                "config": asdict(self._config),
            }

    def _forget_state(self) -> None:
        self._store = CustomerStore()
        self._tokens = TokenIssuer()
        self._limiter = RateLimiter()
        self._faults = FaultBook()
        self._random_faults = RandomFaults()
        self._fault_counts: dict[str, int] = {}
        self._log: list[RequestRecord] = []
        server = getattr(self, "_server", None)
        self._connections_baseline = server.connections_opened if server else 0

    def _bound_server(self) -> EmulatorHTTPServer:
        if self._server is None:
            raise RuntimeError("The emulator is not bound; call start() or bind() first.")
        return self._server


def _form_params(request: Request) -> dict[str, str]:
    # Zoho Accounts takes form fields or the query string, never a JSON body.
    content_type = request.headers.get("content-type", "application/x-www-form-urlencoded")
    if "application/x-www-form-urlencoded" not in content_type.lower():
        return {}
    text = request.body.decode("utf-8", errors="replace")
    return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}


def _request_email(request: Request) -> str | None:
    """The email a request is about: the JSON body's for POST/PUT, else the `email` query param."""
    if request.method in ("POST", "PUT") and request.body:
        try:
            body = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("email"), str):
            return body["email"]
    return request.query.get("email")
