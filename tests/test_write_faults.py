"""Every write can fail: the database fails at each statement of a small flow in turn (as a lost
connection does: before the statement, or after it ran and its answer was lost) and the record,
the output and Zoho are still true.

A fault the run can ride out (the database answers again at once) leaves the run's own result
as an unfaulted run's. A database that stays away stops the command in one line with a document
that parses; the next run then finishes the work. After either: at most one final attempt per
customer, no attempt `sending` and no run `running`, every customer as an unfaulted run leaves
it, no duplicate in Zoho, and a step taken twice costs at most one repeated request.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Count, F
from django.utils import timezone

from billing_sync.models import (
    AccountStatus,
    AlertState,
    AttemptOutcome,
    Customer,
    CustomerImport,
    ImportStatus,
    SyncAttempt,
    SyncRun,
    SyncRunStatus,
    SyncStatus,
    SyncTrigger,
    ZohoAnswerCount,
    ZohoApiState,
    ZohoRequestLog,
)
from billing_sync.run.runs import customers_backfill
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import zoho_config
from tests.helpers import ElsewhereAt, StatementFault, edit, zoho_account_counts
from zoho_emulator import EmulatorConfig, ZohoEmulator

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Flow:
    """A command over a small scenario; `roles` names its customers (an import's: by account)."""

    command: tuple[str, ...]
    roles: dict[str, Customer] = field(default_factory=dict)
    accounts: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What one command did, as a script and Zoho saw it."""

    code: int
    output: str
    errors: str
    requests: Counter


def run_command(args: tuple[str, ...]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(str(exc))
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def requests_seen(emulator: ZohoEmulator, since: int) -> Counter:
    return Counter(
        f"{r.method} {'/customers/ID' if r.path.count('/') > 1 else r.path}"
        for r in emulator.request_log[since:]
    )


def writes(requests: Counter) -> Counter:
    """The requests that change something in Zoho (a create, an update, a status)."""
    return Counter({name: n for name, n in requests.items() if not name.startswith("GET")})


def run_with(emulator: ZohoEmulator, args: tuple[str, ...], fault: Any = None) -> Outcome:
    before = len(emulator.request_log)
    if fault is None:
        code, output, errors = run_command(args)
    else:
        with connection.execute_wrapper(fault):
            code, output, errors = run_command(args)
    assert emulator.wait_idle()
    return Outcome(code, output, errors, requests_seen(emulator, before))


def reset(emulator: ZohoEmulator) -> None:
    for model in (SyncRun, Customer, CustomerImport, ZohoRequestLog, ZohoAnswerCount):
        model._base_manager.all().delete()
    for model in (ZohoApiState, AlertState):
        model.objects.all().delete()
    emulator.reset(EmulatorConfig())


@pytest.fixture
def fast(settings: Any) -> Any:
    """Settings under which a flow never waits for the budget, and a token refresh cut short
    (its mark left in the row) is taken over after 1 + 5 s rather than 5 + 5."""
    settings.ZOHO_DB_OUTAGE_WAIT_SECONDS = 5
    settings.ZOHO_RATE_LIMIT_REQUESTS = 1000
    settings.ZOHO_TIMEOUT_SECONDS = 1.0
    return settings


# --- the flows -----------------------------------------------------------------------------


def sync_flow(emulator: ZohoEmulator, make_customer: Callable[..., Customer], _: Path) -> Flow:
    """4 customers synced before; then 2 new, 1 new one Zoho refuses (its name is taken), 2
    edits, 1 closing Zoho refuses (an active subscription), and 2 new ones refused naming
    nothing of theirs (held: one until the next create, one until the run's end)."""
    before = [make_customer() for _ in range(4)]
    assert customers_backfill(trigger=SyncTrigger.COMMAND).ok
    emulator.configure(display_name_unique=True, active_subscription_emails=(before[3].email,))
    edit(before[0], phone="+27 82 555 0101")
    edit(before[1], first_name="Edited")
    edit(before[2], account_status=AccountStatus.CLOSED)
    edit(before[3], account_status=AccountStatus.CLOSED)
    roles = {f"before{n}": customer for n, customer in enumerate(before)}
    roles["new0"] = make_customer()
    roles["held"] = make_customer()
    roles["new1"] = make_customer()
    roles["refused"] = make_customer(first_name=before[0].first_name, last_name=before[0].last_name)
    roles["held_last"] = make_customer()
    for held in (roles["held"], roles["held_last"]):
        emulator.inject("error", method="POST", email=held.email, status=400, times=None)
    return Flow(("zoho_sync_customers", "--json"), roles)


def backfill_flow(emulator: ZohoEmulator, make_customer: Callable[..., Customer], _: Path) -> Flow:
    """4 new customers, 1 whose data our checks refuse."""
    roles = {f"new{n}": make_customer() for n in range(4)}
    roles["invalid"] = make_customer(email="not-an-email")
    return Flow(("zoho_backfill_customers", "--json"), roles)


def retry_flow(emulator: ZohoEmulator, make_customer: Callable[..., Customer], _: Path) -> Flow:
    """3 customers failed before: 2 plain, 1 whose create was in doubt and went through. The
    token is at hand (a token refresh cut short is the backfill's case)."""
    client = ZohoClient(zoho_config())
    client.tokens.get_token()
    client.close()
    roles = {f"failed{n}": make_customer(zoho_sync_status=SyncStatus.FAILED) for n in range(2)}
    in_doubt = make_customer(
        zoho_sync_status=SyncStatus.FAILED,
        zoho_create_sent_at=timezone.now() - timedelta(seconds=10),
    )
    emulator.add_customer(
        display_name=in_doubt.display_name,
        email=in_doubt.email,
        custom_fields=[{"label": "Account Number", "value": in_doubt.account_number}],
    )
    roles["in_doubt"] = in_doubt
    return Flow(("zoho_retry_failed", "--json"), roles)


def import_flow(emulator: ZohoEmulator, make_customer: Callable[..., Customer], tmp: Path) -> Flow:
    """A file of 4 rows: 2 new customers, 1 edit of one we hold, 1 row refused (its email)."""
    held = make_customer()
    path = tmp / "customers.csv"
    path.write_text(
        "account_number,email,first_name,last_name\n"
        "CT-IMPORT-00001,one@example.co.za,One,New\n"
        f"{held.account_number},{held.email},Renamed,Here\n"
        "CT-IMPORT-00002,two@example.co.za,Two,New\n"
        "CT-IMPORT-00003,not-an-email,Three,Refused\n",
        encoding="utf-8",
    )
    accounts = ("CT-IMPORT-00001", held.account_number, "CT-IMPORT-00002", "CT-IMPORT-00003")
    return Flow(("import_customers", str(path), "--json"), {"held": held}, accounts)


RUN_FLOWS = {"sync": sync_flow, "backfill": backfill_flow, "retry": retry_flow}
FLOWS = {**RUN_FLOWS, "import": import_flow}


def state(flow: Flow) -> dict[str, Any]:
    """Where the flow's customers stand: each one's status, and what an import wrote."""
    found = dict(
        Customer.objects.filter(pk__in=[c.pk for c in flow.roles.values()]).values_list(
            "pk", "zoho_sync_status"
        )
    )
    role_of = {customer.account_number: role for role, customer in flow.roles.items()}
    role_of |= {customer.email: role for role, customer in flow.roles.items()}
    imported = Customer.objects.filter(account_number__in=flow.accounts)
    return {
        "statuses": {role: found.get(customer.pk) for role, customer in flow.roles.items()},
        "imported": sorted(
            tuple(role_of.get(value, value) for value in row)
            for row in imported.values_list("account_number", "email", "first_name")
        ),
    }


def unproven_refusals(flow: Flow) -> dict[str, str]:
    """The held refusals (see sync_flow) that ended `failed`, as they now stand."""
    now = state(flow)["statuses"]
    return {
        role: SyncStatus.FAILED for role in flow.roles if role == "held" and now[role] == "failed"
    }


def problems_after(flow: Flow, emulator: ZohoEmulator, expected: dict[str, Any]) -> list[str]:
    """What is untrue once the flow (and any follow-up) has ended."""
    problems = []
    doubled = (
        SyncAttempt.objects.filter(final=True)
        .values("run", "customer")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    if doubled:
        problems.append(f"two final attempts: {list(doubled)}")
    sending = list(SyncAttempt.objects.filter(outcome=AttemptOutcome.SENDING).values_list("pk"))
    if sending:
        problems.append(f"attempts left sending: {sending}")
    running = list(SyncRun.objects.filter(status=SyncRunStatus.RUNNING).values_list("pk"))
    if running:
        problems.append(f"runs left running: {running}")
    importing = CustomerImport.objects.filter(status=ImportStatus.RUNNING)
    if importing.exists():
        problems.append(f"imports left running: {list(importing.values_list('pk'))}")
    duplicates = {n: c for n, c in zoho_account_counts(emulator).items() if c > 1}
    if duplicates:
        problems.append(f"duplicates in Zoho: {duplicates}")
    now = state(flow)
    if now != expected:
        problems.append(f"{now} where an unfaulted run leaves {expected}")
    return problems


def document_problems(outcome: Outcome) -> list[str]:
    """The --json output is one document whose exit code is the command's, and whose customers
    (or rows) are what the record holds; the command said why it ended in one line."""
    try:
        document = json.loads(outcome.output)
    except ValueError as error:
        return [f"not one JSON document ({error}): {outcome.output[-300:]!r}"]
    problems = []
    if document.get("exit_code") != outcome.code:
        problems.append(f"document exit_code {document.get('exit_code')} != {outcome.code}")
    if "Traceback" in outcome.errors or len(outcome.errors.strip().splitlines()) > 2:
        problems.append(f"not one line: {outcome.errors!r}")
    for entry in document.get("customers", []):
        final = SyncAttempt.objects.filter(
            run=document["run_id"], customer=entry["customer_id"], final=True
        ).first()
        if final is None or final.outcome != entry["outcome"]:
            problems.append(f"{entry} is not its final attempt ({final})")
    written = set(Customer.objects.values_list("account_number", flat=True))
    for row in document.get("rows", []):
        if row["action"] == "create" and row["account_number"] not in written:
            problems.append(f"{row} shown, not written")
    return problems


@pytest.mark.parametrize("flow_name", list(RUN_FLOWS))
@pytest.mark.parametrize("answered", [False, True], ids=["before", "after"])
def test_a_fault_at_any_statement_is_ridden_out(
    emulator, make_customer, fast, tmp_path, flow_name, answered
):
    flow = FLOWS[flow_name](emulator, make_customer, tmp_path)
    counter = StatementFault()
    clean = run_with(emulator, flow.command, counter)
    expected = state(flow)
    assert problems_after(flow, emulator, expected) == []
    failures = {}
    for at in range(1, counter.seen + 1):
        reset(emulator)
        flow = FLOWS[flow_name](emulator, make_customer, tmp_path)
        outcome = run_with(emulator, flow.command, StatementFault(at, answered=answered))
        problems = document_problems(outcome) + problems_after(flow, emulator, expected)
        if outcome.code != clean.code:
            problems.append(f"exit {outcome.code} where an unfaulted run exits {clean.code}")
        extra = outcome.requests - clean.requests
        if sum(extra.values()) > 1 or writes(extra):
            problems.append(f"repeated requests (at most one read): {dict(extra)}")
        if problems:
            failures[at] = problems
    assert failures == {}, f"{len(failures)} of {counter.seen}: {failures}"


@pytest.mark.parametrize("flow_name", list(FLOWS))
def test_a_database_that_stays_away_stops_the_command_and_the_next_one_finishes(
    emulator, make_customer, fast, tmp_path, flow_name
):
    settings = fast
    flow = FLOWS[flow_name](emulator, make_customer, tmp_path)
    counter = StatementFault()
    clean = run_with(emulator, flow.command, counter)
    expected = state(flow)
    failures = {}
    for at in range(1, counter.seen + 1):
        reset(emulator)
        settings.ZOHO_DB_OUTAGE_WAIT_SECONDS = 0
        flow = FLOWS[flow_name](emulator, make_customer, tmp_path)
        outcome = run_with(emulator, flow.command, StatementFault(at, lasting=math.inf))
        problems = document_problems(outcome)
        if outcome.code != 1:
            problems.append(f"exit {outcome.code}, not 1")
        settings.ZOHO_DB_OUTAGE_WAIT_SECONDS = 5
        settings.ZOHO_STALE_CLAIM_SECONDS = 0  # the next one comes once the claims are stale
        follow = run_with(emulator, flow.command)
        settings.ZOHO_STALE_CLAIM_SECONDS = 300
        # A refusal held by the stopped run is not proven the customer's by the next one unless
        # Zoho creates someone after it there: `failed` (retried) is as true as the clean run's
        # `needs_attention`.
        unproven = dict(expected, statuses=expected["statuses"] | unproven_refusals(flow))
        problems += document_problems(follow) + problems_after(flow, emulator, unproven)
        repeated = writes(outcome.requests + follow.requests) - writes(clean.requests)
        if sum(repeated.values()) > 1:
            problems.append(f"repeated writes: {dict(repeated)}")
        if problems:
            failures[at] = problems
    assert failures == {}, f"{len(failures)} of {counter.seen}: {failures}"


def another_run_finishes_them(emulator: ZohoEmulator) -> Callable[[], None]:
    """What a second run does with the customers it takes over while the first one's database
    is away: it finds in Zoho each one whose create is on record, creates the others (seeded
    here), and links them all."""

    def finish() -> None:
        taken = Customer.objects.filter(zoho_billing_customer_id__isnull=True).exclude(
            email="not-an-email"
        )
        for customer in taken:
            by_account = [
                record
                for record in emulator.customers()
                if any(f["value"] == customer.account_number for f in record["custom_fields"])
            ]
            record = (by_account or [None])[0] or emulator.add_customer(
                display_name=customer.display_name,
                email=customer.email,
                custom_fields=[{"label": "Account Number", "value": customer.account_number}],
            )
            Customer.objects.filter(pk=customer.pk).update(
                zoho_billing_customer_id=record["customer_id"],
                zoho_sync_status=SyncStatus.SYNCED,
                zoho_claimed_by=None,
                zoho_claimed_at=None,
                zoho_create_sent_at=None,
                zoho_synced_data_at=F("updated_at"),
            )

    return finish


def takeover_failures(
    emulator: ZohoEmulator,
    make_customer: Callable[..., Customer],
    tmp_path: Path,
    flow_name: str,
    takeover_at: Callable[[int, Callable[[], None]], Any],
) -> tuple[dict[int, list[str]], int]:
    """Another run takes the flow's customers over (and finishes them) at each of its
    statements in turn, as `takeover_at(at, finish)` arranges; what is untrue after each."""
    flow = FLOWS[flow_name](emulator, make_customer, tmp_path)
    counter = StatementFault()
    run_with(emulator, flow.command, counter)
    expected = state(flow)
    failures = {}
    for at in range(1, counter.seen + 1):
        reset(emulator)
        flow = FLOWS[flow_name](emulator, make_customer, tmp_path)
        outcome = run_with(
            emulator, flow.command, takeover_at(at, another_run_finishes_them(emulator))
        )
        problems = document_problems(outcome) + problems_after(flow, emulator, expected)
        if problems:
            failures[at] = problems
    return failures, counter.seen


@pytest.mark.parametrize("flow_name", ["backfill", "retry"])
def test_customers_taken_over_while_the_database_is_away_are_never_sent_again(
    emulator, make_customer, fast, tmp_path, flow_name
):
    failures, statements = takeover_failures(
        emulator,
        make_customer,
        tmp_path,
        flow_name,
        lambda at, finish: StatementFault(at, meanwhile=finish),
    )

    assert failures == {}, f"{len(failures)} of {statements}: {failures}"


def test_a_run_too_slow_to_renew_its_claims_sends_nothing_another_run_took_over(
    emulator, make_customer, fast, tmp_path
):
    # Its database never fails: the run is starved (a stalled process, a paused machine) for
    # longer than its claims' fence, and learns nothing from its own statements. A fence of 0
    # (the stale interval no longer than the settle interval) puts every write in that place.
    fast.ZOHO_STALE_CLAIM_SECONDS = fast.ZOHO_CREATE_SETTLE_SECONDS = 60
    failures, statements = takeover_failures(
        emulator, make_customer, tmp_path, "backfill", ElsewhereAt
    )

    assert failures == {}, f"{len(failures)} of {statements}: {failures}"
