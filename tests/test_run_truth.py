"""What a run reports is what it recorded: customer by customer, its output is its final
SyncAttempt row, and its counts are what SELECTs over those rows say, whatever Zoho answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncRun, SyncStatus
from tests.commands import run, run_json
from zoho_emulator import ZohoEmulator

pytestmark = pytest.mark.django_db

PUSHED = [AttemptOutcome.UPDATED, AttemptOutcome.DEACTIVATED, AttemptOutcome.REACTIVATED]
SYNCED = [AttemptOutcome.CREATED, AttemptOutcome.ADOPTED, *PUSHED]
FAILED = [AttemptOutcome.FAILED, AttemptOutcome.INVALID, AttemptOutcome.RATE_LIMITED]


@dataclass
class Stage:
    """What a scenario may change before the run."""

    emulator: ZohoEmulator
    case: dict[str, Any]
    make_customer: Callable[..., Customer]
    settings: Any


def _fault(kind: str, **options: Any) -> Callable[[Stage], None]:
    def arm(stage: Stage) -> None:
        stage.emulator.inject(kind, method="POST", email=stage.case["new"].email, **options)

    return arm


def _updates_keep_failing(stage: Stage) -> None:
    stage.emulator.inject("error", method="PUT", times=None)


def _refused_then_created(stage: Stage) -> None:
    # A refusal that names nothing of ours is held until Zoho creates another customer.
    email = stage.case["new"].email
    stage.emulator.inject("error", method="POST", email=email, status=400, times=None)


def _refused_by_the_organization(stage: Stage) -> None:
    for _ in range(2):  # four creates in all: the third refusal alike stops the run
        stage.make_customer()
    stage.emulator.inject("error", method="POST", status=400, times=None)


def _wrong_organization(stage: Stage) -> None:
    stage.emulator.configure(organization_error="6041", organization_error_status=403)
    stage.settings.ZOHO_ORGANIZATION_ID = "999"


def _account_number_mangled(stage: Stage) -> None:
    stage.emulator.configure(number_custom_fields=("Account Number",))


def _blocked(stage: Stage) -> None:
    stage.emulator.configure(rate_limit_requests=4, rate_limit_window_seconds=60, block_seconds=30)


# What Zoho does during the run: nothing unusual, every fault the emulator plays on a create,
# and the refusals and stops a real organization may give.
ZOHO_PLAYS: dict[str, Callable[[Stage], None]] = {
    "as usual": lambda stage: None,
    "server error": _fault("error", times=None),
    "html error": _fault("html_error", times=None),
    "slow": _fault("slow", delay=0.05),
    "connection dropped": _fault("drop"),
    "response lost": _fault("lose_response"),
    "rate limited once": _fault("rate_limit"),
    "error after commit": _fault("error_after_commit"),
    "empty success": _fault("empty_success"),
    "updates keep failing": _updates_keep_failing,
    "a lone refusal, then a create": _refused_then_created,
    "organization refuses creates": _refused_by_the_organization,
    "wrong organization": _wrong_organization,
    "account number mangled": _account_number_mangled,
    "blocked part way": _blocked,
}


def assert_output_is_the_record(document: dict[str, Any]) -> None:
    """Each customer object is its final attempt as written; the counts are SELECTs."""
    run_record = SyncRun.objects.get(pk=document["run_id"])
    finals = SyncAttempt.objects.filter(run=run_record, final=True)
    rows = {attempt.customer_id: attempt for attempt in finals}
    assert len(rows) == finals.count()  # one final attempt per customer
    shown = {entry["customer_id"]: entry for entry in document["customers"]}
    assert len(shown) == len(document["customers"])  # each customer shown once
    assert shown.keys() == rows.keys()
    status_now = dict(Customer.objects.values_list("pk", "zoho_sync_status"))
    for customer_id, entry in shown.items():
        row = rows[customer_id]
        assert entry == {
            "customer_id": customer_id,
            "email": row.customer_email,
            "account_number": row.account_number,
            "outcome": row.outcome,
            "status": status_now.get(customer_id),
            "zoho_customer_id": row.zoho_customer_id or None,
            "error": row.error_message or None,
            "waiting_until": row.waiting_until.isoformat() if row.waiting_until else None,
        }

    def finals_with(outcomes: list[str]) -> int:
        return finals.filter(outcome__in=outcomes).count()

    # Left failed by the stop, with no attempt at them: released without a final row.
    unreached = (
        Customer.objects.filter(zoho_sync_status=SyncStatus.FAILED)
        .exclude(sync_attempts__run=run_record, sync_attempts__final=True)
        .filter(zoho_last_error=run_record.stop_reason)
        .count()
        if run_record.stop_reason
        else 0
    )
    counts = document["counts"]
    assert counts == {
        "selected": run_record.selected_count,
        "attempted": finals.exclude(
            outcome__in=[AttemptOutcome.SKIPPED, AttemptOutcome.WAITING]
        ).count(),
        "synced": finals_with(SYNCED),
        "failed": finals_with(FAILED) + unreached,
        "skipped": finals_with([AttemptOutcome.SKIPPED]),
        "waiting": finals_with([AttemptOutcome.WAITING]),
        "finished": finals.count(),
        "unreached": unreached,
        "updated": finals_with(PUSHED),
    }
    # Every customer the run selected is accounted for, once.
    assert counts["finished"] + counts["unreached"] == counts["selected"]
    assert (run_record.synced_count, run_record.failed_count) == (
        counts["synced"],
        counts["failed"],
    )


@pytest.mark.parametrize("zoho", list(ZOHO_PLAYS))
def test_each_customer_in_the_json_is_its_final_attempt_and_the_counts_are_selects(
    emulator, every_case, make_customer, settings, zoho
):
    settings.ZOHO_MAX_ATTEMPTS = 2
    ZOHO_PLAYS[zoho](Stage(emulator, every_case, make_customer, settings))

    document, code = run_json("zoho_sync_customers", "--max-wait", "0")

    assert code in (1, 2)  # the case that must wait is never synced by this run
    assert_output_is_the_record(document)


def test_every_outcome_is_in_one_run_with_the_status_it_leaves(emulator, every_case):
    document, _ = run_json("zoho_sync_customers", "--max-wait", "0")

    # docs/reliability.md's table: an outcome, and the status it leaves the customer in.
    pairs = {(entry["outcome"], entry["status"]) for entry in document["customers"]}
    assert pairs == {
        ("created", "synced"),
        ("adopted", "synced"),
        ("updated", "synced"),
        ("deactivated", "synced"),
        ("reactivated", "synced"),
        ("skipped", "synced"),  # in step already
        ("skipped", "pending"),  # closed before it reached Zoho: never created
        ("invalid", "needs_attention"),
        ("waiting", "failed"),  # an earlier create may be settling: a retry looks first
        ("failed", "needs_attention"),  # linked, and Zoho no longer holds it
    }


def test_the_printed_lines_and_results_are_the_record(emulator, every_case, settings):
    settings.ZOHO_MAX_ATTEMPTS = 2
    _updates_keep_failing(Stage(emulator, every_case, Customer.objects.create, settings))

    output, code = run("zoho_sync_customers", "--max-wait", "0")

    assert code == 1
    run_record = SyncRun.objects.latest("pk")
    finals = SyncAttempt.objects.filter(run=run_record, final=True)
    synced_ids = re.findall(r"Successfully synced: (\d+)", output)
    assert sorted(synced_ids) == sorted(
        finals.filter(outcome__in=SYNCED).values_list("zoho_customer_id", flat=True)
    )
    failed_lines = re.findall(r"^  \S+ Failed: (.+)$", output, flags=re.MULTILINE)
    assert sorted(failed_lines) == sorted(
        finals.filter(outcome__in=FAILED).values_list("error_message", flat=True)
    )
    synced = finals.filter(outcome__in=SYNCED).count()
    failed = finals.filter(outcome__in=FAILED).count()
    attempted = finals.exclude(outcome__in=[AttemptOutcome.SKIPPED, AttemptOutcome.WAITING])
    assert f"Total Attempted: {attempted.count()}\n" in output
    assert f"Successfully Synced: {synced}\n" in output
    assert f"Failed: {failed}\n" in output


def test_customers_are_printed_in_the_order_of_the_run_even_when_it_stops(emulator, make_customer):
    # Creates are written a group at a time, the customer that met the block at once: the
    # creates before it are still reported first.
    emulator.configure(rate_limit_requests=4, rate_limit_window_seconds=60, block_seconds=30)
    for _ in range(6):
        make_customer()

    output, code = run("zoho_backfill_customers", "--max-wait", "0")

    assert code == 1
    places = [int(place) for place in re.findall(r"^\[(\d+)/6\]", output, flags=re.MULTILINE)]
    assert places == [1, 2, 3, 4]
    assert "Not reached (the run stopped first): 2" in output
