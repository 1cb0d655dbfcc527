"""Helpers the test modules share (fixtures are in conftest.py): the one way to wait for
another process or thread, a free port for one, speaking to the emulator over plain HTTP, what
Zoho holds, a staff client, django-q's queue run in this process, and the request gate on a
clock the test moves."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing import Event, Value
from typing import Any

import requests
from django.contrib.auth.models import Permission, User
from django.test import Client
from django_q.brokers import get_broker
from django_q.monitor import monitor
from django_q.pusher import pusher
from django_q.queues import Queue
from django_q.worker import worker

from billing_sync.zoho.pacing import Budget, RequestGate
from zoho_emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
    ZohoEmulator,
)

ORG_HEADER = "X-com-zoho-subscriptions-organizationid"
TOKEN_PARAMS = {
    "grant_type": "refresh_token",
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
    "refresh_token": EMULATOR_REFRESH_TOKEN,
}
NOT_AUTHORIZED = {"code": 57, "message": "You are not authorized to perform this operation"}
ACME = {"display_name": "Acme Ltd", "email": "billing@acme.test"}
# How the emulator answers for a customer it does not hold, in each of its not-found styles:
# (style, HTTP status, body).
NOT_FOUND_ANSWERS = [
    (
        "400/3004",
        400,
        {"code": 3004, "message": "Please enter a valid reference for the customer"},
    ),
    ("404/1002", 404, {"code": 1002, "message": "Customer does not exist."}),
]
CLOCK_START = 1_000_000.0  # 1970-01-12 13:46:40 UTC
GATE_TIMEOUT = 5.0
# A per-window budget that never binds (1,000 requests a second).
UNBOUNDED = Budget(1000, 1.0)


class ZohoClock:
    """The emulator's clock, moved on by the test: Zoho's windows pass without sleeping."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeClock:
    """The request gate's clock and sleep, moved on by the test: each wait is recorded in
    `slept` and passes at once."""

    def __init__(self) -> None:
        self.now = CLOCK_START
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def new_gate(clock: FakeClock, budget: Budget = UNBOUNDED, **options: Any) -> RequestGate:
    """A request gate on `clock`: requests time out after GATE_TIMEOUT seconds and a block is
    never waited for. The default `budget` never binds, so a `daily` share is alone at work."""
    return RequestGate(
        budget=budget,
        request_timeout=GATE_TIMEOUT,
        max_wait=0,
        clock=clock,
        sleep=clock.sleep,
        **options,
    )


def wait_for(
    condition: Callable[[], Any], what: str, *, timeout: float = 60, interval: float = 0.05
) -> Any:
    """Wait until `condition()` holds (another process or thread makes it so) and return what
    it gave; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return result


def free_port() -> int:
    """A loopback port no one listens on now, for a process the test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of `times` that fall in any one window of `window` seconds."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def request_token(http: Any, emu: ZohoEmulator, **changes: str) -> requests.Response:
    """Ask the emulator's accounts server for an access token (`changes` to the parameters);
    `http` is a requests.Session, or requests itself."""
    params = {**TOKEN_PARAMS, **changes}
    return http.post(f"{emu.accounts_url}/oauth/v2/token", data=params, timeout=5)


def authorize(http: requests.Session, emu: ZohoEmulator) -> requests.Session:
    """`http`, carrying a fresh access token and the organization header."""
    token = request_token(http, emu).json()["access_token"]
    http.headers.update(
        {"Authorization": f"Zoho-oauthtoken {token}", ORG_HEADER: EMULATOR_ORGANIZATION_ID}
    )
    return http


def call(
    api: requests.Session, emu: ZohoEmulator, method: str, path: str, **kwargs: Any
) -> requests.Response:
    """One request to the emulated Zoho API."""
    kwargs.setdefault("timeout", 5)
    return api.request(method, emu.api_base_url + path, **kwargs)


def create(api: requests.Session, emu: ZohoEmulator, **fields: Any) -> requests.Response:
    """Create a customer (Acme's fields, with `fields` over them)."""
    return call(api, emu, "POST", "/customers", json={**ACME, **fields})


def logged_in(*codenames: str) -> Client:
    """A test client logged in as a new staff user holding these permissions (codenames)."""
    user = User.objects.create_user(f"staff{User.objects.count()}", password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def zoho_account_counts(emulator: ZohoEmulator, label: str = "Account Number") -> Counter:
    """How many Zoho customers carry each account number: more than 1 is a duplicate."""
    return Counter(
        field["value"]
        for record in emulator.customers()
        for field in record.get("custom_fields", [])
        if field["label"] == label
    )


def zoho_posts(emulator: ZohoEmulator) -> int:
    """How many creates reached the emulator."""
    return sum(1 for r in emulator.request_log if r.method == "POST" and r.path == "/customers")


def run_queued_tasks() -> int:
    """Run every queued django-q task through django-q's own pusher, worker and monitor.

    The same code a `qcluster` process runs, in this process, so tests control when it happens.
    Needs a test that commits (transactional_db): the worker closes old connections.
    """
    broker = get_broker()
    task_queue: Queue = Queue()
    result_queue: Queue = Queue()
    stop = Event()
    stop.set()  # each pusher call pulls one batch, then returns
    count = -1
    while task_queue.qsize() > count:
        count = task_queue.qsize()
        pusher(task_queue, stop, broker=broker)
    task_queue.put("STOP")
    worker(task_queue, result_queue, Value("f", -1))
    result_queue.put("STOP")
    monitor(result_queue, broker)
    return count


def zoho_record(emulator: ZohoEmulator, customer: Any) -> dict[str, Any]:
    """The Zoho record a local customer is linked to (its row read again first)."""
    customer.refresh_from_db()
    zoho_id = customer.zoho_billing_customer_id
    (record,) = [r for r in emulator.customers() if r["customer_id"] == zoho_id]
    return record


def edit(customer: Any, **fields: Any) -> Any:
    """A person edits the customer: the row read again, changed, saved whole (as the admin
    does)."""
    customer.refresh_from_db()
    for name, value in fields.items():
        setattr(customer, name, value)
    customer.save()
    return customer


class StatementFault:
    """Fails the database's statements as a lost connection does (Django's execute_wrapper):
    the `at`-th statement of the connection (from 1) and, for `lasting` seconds after it, every
    statement (`lasting` None: that one alone; math.inf: until `lift()`). `answered`: the
    statement ran before its answer was lost (in autocommit it stands, committed).
    `meanwhile`: what another process does while the database is away from this one, run (in a
    thread of its own, on its own connection) before the next statement outside a transaction.
    """

    def __init__(
        self,
        at: int = 0,
        *,
        answered: bool = False,
        lasting: float | None = None,
        meanwhile: Callable[[], None] | None = None,
    ):
        self.at = at
        self.answered = answered
        self.lasting = lasting
        self.meanwhile = meanwhile
        self.seen = 0
        self.failed = 0
        self._until: float | None = None

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context):
        self.seen += 1
        if self._fails_now():
            self.failed += 1
            if self.answered:
                execute(sql, params, many, context)
            raise lost_connection()
        if self.failed and self.meanwhile is not None and not context["connection"].in_atomic_block:
            meanwhile, self.meanwhile = self.meanwhile, None
            _elsewhere(meanwhile)
        return execute(sql, params, many, context)

    def _fails_now(self) -> bool:
        if self.seen == self.at:
            if self.lasting is not None:
                self._until = time.monotonic() + self.lasting
            return True
        return self._until is not None and time.monotonic() < self._until

    def lift(self) -> None:
        """The database answers again."""
        self._until = None


class ElsewhereAt:
    """What another process does (`meanwhile`, in a thread of its own, on its own connection)
    before the first statement outside a transaction from the `at`-th on (Django's
    execute_wrapper); this connection never fails, so the run sees nothing happen."""

    def __init__(self, at: int, meanwhile: Callable[[], None]):
        self.at = at
        self.meanwhile: Callable[[], None] | None = meanwhile
        self.seen = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context):
        self.seen += 1
        in_transaction = context["connection"].in_atomic_block
        if self.seen >= self.at and self.meanwhile is not None and not in_transaction:
            meanwhile, self.meanwhile = self.meanwhile, None
            _elsewhere(meanwhile)
        return execute(sql, params, many, context)


def _elsewhere(work: Callable[[], None]) -> None:
    """Run `work` as another process would: in a thread of its own, on its own connection."""
    thread = threading.Thread(target=_on_its_own_connection, args=(work,))
    thread.start()
    thread.join()


def _on_its_own_connection(work: Callable[[], None]) -> None:
    from django.db import connection

    try:
        work()
    finally:
        connection.close()


def lost_connection() -> Exception:
    """What Django raises when the connection is lost mid-statement: its OperationalError over
    the driver's own (PostgreSQL: the server closed the connection; SQLite: an I/O error)."""
    from django.db import OperationalError, connection

    if connection.vendor == "postgresql":
        import psycopg

        cause: Exception = psycopg.OperationalError("server closed the connection unexpectedly")
    else:
        import sqlite3

        cause = sqlite3.OperationalError("disk I/O error")
    error = OperationalError(*cause.args)
    error.__cause__ = cause
    return error


class NotificationSink:
    """A plain HTTP server that takes what Apprise's json:// plugin posts (as a team's webhook
    would): each message's JSON kept in order; the next `refuse` posts answered 500."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refuse = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if sink.refuse:
                    sink.refuse -= 1
                    self.send_response(500)
                else:
                    sink.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """Its Apprise URL (the path stands for a webhook's secret token)."""
        return f"json://127.0.0.1:{self.server.server_port}/hooks/T0K3N-s3cret"

    def told(self) -> list[tuple[str, str]]:
        """(type, title) of each message received, then forgotten."""
        told = [(message["type"], message["title"]) for message in self.received]
        self.received.clear()
        return told

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
