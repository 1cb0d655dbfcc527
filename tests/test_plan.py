"""zoho_plan: what a run would do, decided by the code the run uses, and nothing written."""

from __future__ import annotations

import pytest

from billing_sync.models import (
    AttemptOutcome,
    Customer,
    SyncAttempt,
    SyncRun,
    SyncRunKind,
    SyncTrigger,
)
from billing_sync.run.customer.decisions import CLOSED_NOT_CREATED, Action
from billing_sync.run.plan import customers_plan
from billing_sync.run.report import ResultCollector
from billing_sync.run.runs import customers_backfill, customers_retry_failed, customers_sync
from tests.commands import run, run_json

pytestmark = pytest.mark.django_db

OUTCOME_OF = {
    Action.CREATE: AttemptOutcome.CREATED,
    Action.ADOPT: AttemptOutcome.ADOPTED,
    Action.UPDATE: AttemptOutcome.UPDATED,
    Action.DEACTIVATE: AttemptOutcome.DEACTIVATED,
    Action.REACTIVATE: AttemptOutcome.REACTIVATED,
    Action.SKIP: AttemptOutcome.SKIPPED,
    Action.INVALID: AttemptOutcome.INVALID,
    Action.WAIT: AttemptOutcome.WAITING,  # no request: an earlier create may be settling
    Action.GONE: AttemptOutcome.FAILED,  # Zoho no longer holds it: a person decides
}


RUN_OF = {
    SyncRunKind.SYNC: customers_sync,
    SyncRunKind.BACKFILL: customers_backfill,
    SyncRunKind.RETRY_FAILED: customers_retry_failed,
}
EXPECTED = {  # what each kind of run does with each case; absent: the kind does not take it
    "new": Action.CREATE,
    "ours_by_account": Action.ADOPT,
    "by_email": Action.ADOPT,
    "invalid": Action.INVALID,
    "settling": Action.WAIT,
    "failed_before": Action.CREATE,
    "edited": Action.UPDATE,
    "saved": Action.SKIP,
    "closed": Action.DEACTIVATE,
    "reopened": Action.REACTIVATE,
    "closed_before": Action.SKIP,  # never created
    "gone": Action.GONE,  # deleted in Zoho, edited here
}
TAKEN_BY = {
    SyncRunKind.SYNC: set(EXPECTED),
    SyncRunKind.BACKFILL: set(EXPECTED) - {"edited", "saved", "closed", "reopened", "gone"},
    SyncRunKind.RETRY_FAILED: {"failed_before"},
}


@pytest.mark.parametrize("kind", list(RUN_OF))
def test_the_plan_matches_the_run_that_follows_it_customer_by_customer(emulator, every_case, kind):
    zoho_before = {record["customer_id"]: record for record in emulator.customers()}
    plan = customers_plan(kind=kind)
    results = ResultCollector()
    RUN_OF[kind](trigger=SyncTrigger.COMMAND, max_wait=0, observer=results)

    planned = {p.customer_id: p for p in plan.customers}
    ran = {r.customer_id: r for r in results.results}
    assert planned.keys() == ran.keys()
    linked = dict(Customer.objects.values_list("pk", "zoho_billing_customer_id"))
    for customer_id, p in planned.items():
        r = ran[customer_id]
        assert OUTCOME_OF[p.action] == r.outcome, (p, r)
        if p.action == Action.WAIT:
            assert r.waiting_until is not None
            assert f"{r.waiting_until:%H:%M:%S} UTC" in p.reason
        elif p.action == Action.INVALID:
            assert p.reason in r.error  # the same field named
        elif p.action == Action.GONE:
            assert "Zoho no longer holds the customer" in r.error
            customer = Customer.objects.get(pk=customer_id)
            assert customer.zoho_sync_status == "needs_attention"  # a person decides
            assert linked[customer_id] == p.zoho_customer_id  # still linked: nothing guessed
        elif p.action == Action.CREATE:
            assert linked[customer_id] == r.zoho_customer_id not in zoho_before  # a new one
        elif customer_id == every_case["closed_before"].pk:
            assert linked[customer_id] is None  # skipped, and not created
        else:  # adopt, update, skip: linked to the Zoho customer the plan named
            assert linked[customer_id] == p.zoho_customer_id != ""
        if p.action == Action.UPDATE:
            after = {c["customer_id"]: c for c in emulator.customers()}[p.zoho_customer_id]
            before = zoho_before[p.zoho_customer_id]
            assert {f for f in p.fields if after[f] != before[f]} == set(p.fields)
        if p.action in (Action.DEACTIVATE, Action.REACTIVATE):
            after = {c["customer_id"]: c for c in emulator.customers()}[p.zoho_customer_id]
            assert after["status"] == ("inactive" if p.action == Action.DEACTIVATE else "active")
    cases = {name: case.pk for name, case in every_case.items() if isinstance(case, Customer)}
    assert {name: planned[pk].action for name, pk in cases.items() if pk in planned} == {
        name: EXPECTED[name] for name in TAKEN_BY[kind]
    }


def test_the_plan_says_why_and_names_ids_and_fields(emulator, every_case):
    plan = {p.customer_id: p for p in customers_plan().customers}

    adopt = plan[every_case["ours_by_account"].pk]
    assert adopt.zoho_customer_id == every_case["theirs_id"]
    assert "account number" in adopt.reason
    assert "carrying no account number" in plan[every_case["by_email"].pk].reason
    assert plan[every_case["edited"].pk].fields == ("phone",)
    assert (
        plan[every_case["edited"].pk].zoho_customer_id
        == every_case["edited"].zoho_billing_customer_id
    )
    assert "email" in plan[every_case["invalid"].pk].reason
    assert "looking in Zoho after" in plan[every_case["settling"].pk].reason
    assert plan[every_case["saved"].pk].reason.startswith("nothing Zoho holds")
    assert "closed here" in plan[every_case["closed"].pk].reason
    assert "reopened here" in plan[every_case["reopened"].pk].reason
    closed_before = plan[every_case["closed_before"].pk]
    assert (closed_before.action, closed_before.reason) == (Action.SKIP, CLOSED_NOT_CREATED)


def test_the_plan_writes_nothing_and_reads_zoho_once(emulator, every_case):
    rows = list(Customer.objects.order_by("pk").values())
    runs, attempts, requests = (
        SyncRun.objects.count(),
        SyncAttempt.objects.count(),
        len(emulator.request_log),
    )

    plan = customers_plan()

    assert list(Customer.objects.order_by("pk").values()) == rows
    assert (SyncRun.objects.count(), SyncAttempt.objects.count()) == (runs, attempts)
    sent = [(r.method, r.path) for r in emulator.request_log[requests:]]
    assert {method for method, _ in sent} == {"GET"}
    assert sent.count(("GET", "/customers")) == 1  # one list
    assert plan.requests == len(sent)


def test_zoho_plan_prints_each_customer_and_the_totals(emulator, every_case):
    output, code = run("zoho_plan")

    assert code == 0
    assert "what a run would do; nothing is written" in output
    new = every_case["new"]
    assert f"{new.account_number:<16} create   {new.email}: not in Zoho" in output
    assert (
        "Plan: create 2, adopt 2, update 1, deactivate 1, reactivate 1, skip 2, invalid 1, wait 1"
        in output
    )

    document, code = run_json("zoho_plan", "--kind", "backfill")
    assert code == 0
    assert document["kind"] == "backfill"
    assert document["counts"]["update"] == 0  # a backfill sends no edits
    actions = {c["action"] for c in document["customers"]}
    assert actions <= {"create", "adopt", "invalid", "wait", "skip"}
    skipped = [c for c in document["customers"] if c["action"] == "skip"]
    assert [c["reason"] for c in skipped] == [CLOSED_NOT_CREATED]  # only the closed account


def test_a_plan_for_an_unchanged_table_sends_nothing(emulator, make_customer):
    make_customer()
    customers_backfill(trigger=SyncTrigger.COMMAND)
    requests = len(emulator.request_log)

    plan = customers_plan()

    assert plan.customers == []
    assert len(emulator.request_log) == requests
