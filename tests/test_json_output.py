"""`--json` on every zoho_* command: one document on stdout, its documented shape, the same
exit codes, and what happened."""

from __future__ import annotations

import io
import json
import signal
import subprocess
from datetime import datetime
from typing import Any

import pytest
import requests
from django.core.management import get_commands, load_command_class

from billing_sync.management.sync_command import SyncCommand
from billing_sync.models import Customer, SyncRun, SyncStatus
from tests.commands import run, run_json
from tests.processes import process_env, run_manage, start_manage
from zoho_emulator import EMULATOR_CLIENT_SECRET, EMULATOR_REFRESH_TOKEN

pytestmark = pytest.mark.django_db

RUN_KEYS = [
    "command",
    "run_id",
    "dry_run",
    "customers",
    "counts",
    "stopped",
    "duration_seconds",
    "requests",
    "writeback",
    "exit_code",
    "problems",
]
COUNT_KEYS = {"selected", "attempted", "synced", "failed", "skipped", "waiting"}
CUSTOMER_KEYS = {
    "customer_id",
    "email",
    "account_number",
    "outcome",
    "status",
    "zoho_customer_id",
    "error",
    "waiting_until",
}


def zoho_commands() -> list[str]:
    return sorted(name for name in get_commands() if name.startswith("zoho_"))


def sync_commands() -> list[str]:
    return [
        name
        for name in zoho_commands()
        if isinstance(load_command_class(get_commands()[name], name), SyncCommand)
    ]


def assert_common(document: dict[str, Any], command: str) -> None:
    assert document["command"] == command
    assert document["exit_code"] in (0, 1, 2)
    assert isinstance(document["problems"], list)
    assert all(isinstance(problem, str) for problem in document["problems"])
    if document["exit_code"]:
        assert document["problems"]


def assert_run_document(document: dict[str, Any], command: str) -> None:
    """The documented shape of a run command's document, with the right types."""
    assert_common(document, command)
    assert list(document) == RUN_KEYS
    assert document["run_id"] is None or isinstance(document["run_id"], int)
    assert isinstance(document["dry_run"], bool)
    assert set(document["counts"]) >= COUNT_KEYS
    assert all(type(value) is int for value in document["counts"].values())
    assert isinstance(document["duration_seconds"], float)
    assert isinstance(document["requests"], int)
    writeback = document["writeback"]  # null: no write-back set up (tests/test_customer_source.py)
    assert writeback is None or set(writeback) == {"rows", "error"}
    stopped = document["stopped"]
    assert stopped is None or (
        set(stopped) == {"reason", "needs_setup"}
        and isinstance(stopped["reason"], str)
        and isinstance(stopped["needs_setup"], bool)
    )
    for customer in document["customers"]:
        assert set(customer) == CUSTOMER_KEYS
        assert isinstance(customer["customer_id"], int)
        assert customer["outcome"] is None or isinstance(customer["outcome"], str)
        if customer["waiting_until"] is not None:
            assert datetime.fromisoformat(customer["waiting_until"]).utcoffset() is not None
    assert len(document["customers"]) == document["counts"]["finished"]


@pytest.fixture
def three_failed(make_customer) -> list[Customer]:
    return [
        make_customer(zoho_sync_status=SyncStatus.FAILED, zoho_last_error="rate limited")
        for _ in range(3)
    ]


# Run commands


def test_a_live_run_lists_each_customer_and_the_counts(emulator, make_customer):
    customers = [make_customer() for _ in range(3)]

    document, code = run_json("zoho_backfill_customers")

    assert_run_document(document, "zoho_backfill_customers")
    run_row = SyncRun.objects.get()
    ids = {c["email"]: c["customer_id"] for c in emulator.customers()}
    assert code == 0
    assert document["run_id"] == run_row.pk
    assert document["dry_run"] is False
    assert {name: document["counts"][name] for name in COUNT_KEYS} == {
        "selected": 3,
        "attempted": 3,
        "synced": 3,
        "failed": 0,
        "skipped": 0,
        "waiting": 0,
    }
    assert document["stopped"] is None
    assert document["requests"] == run_row.request_count > 0
    assert document["problems"] == []
    assert [c["customer_id"] for c in document["customers"]] == [c.pk for c in customers]
    for entry in document["customers"]:
        assert entry["outcome"] == "created"
        assert entry["zoho_customer_id"] == ids[entry["email"]]
        assert entry["error"] is None


def test_a_customer_left_failed_exits_1_and_says_why(emulator, three_failed, settings):
    settings.ZOHO_MAX_ATTEMPTS = 1
    broken = three_failed[1]
    emulator.inject("error", method="POST", email=broken.email, times=None)

    document, code = run_json("zoho_retry_failed")

    assert_run_document(document, "zoho_retry_failed")
    assert code == 1
    assert document["counts"]["synced"] == 2
    assert document["counts"]["failed"] == 1
    by_id = {c["customer_id"]: c for c in document["customers"]}
    assert by_id[broken.pk]["outcome"] == "failed"
    assert "HTTP 500" in by_id[broken.pk]["error"]
    assert by_id[broken.pk]["zoho_customer_id"] is None
    assert document["problems"] == ["1 customer(s) failed"]


def test_a_stopped_run_says_why_and_counts_those_never_reached(emulator, make_customer):
    emulator.configure(rate_limit_requests=2, rate_limit_window_seconds=60, block_seconds=30)
    for _ in range(3):
        make_customer()

    document, code = run_json("zoho_backfill_customers", "--max-wait", "0")

    assert_run_document(document, "zoho_backfill_customers")
    assert code == 1
    assert document["stopped"]["reason"].startswith("rate limited by Zoho until")
    assert document["stopped"]["needs_setup"] is False
    counts = document["counts"]
    assert (counts["attempted"], counts["synced"], counts["failed"]) == (2, 1, 2)
    assert (counts["finished"], counts["unreached"]) == (2, 1)
    assert document["problems"][0] == f"Run stopped: {document['stopped']['reason']}"


def test_a_stop_the_set_up_causes_exits_2(emulator, make_customer, settings):
    emulator.configure(organization_error="6041", organization_error_status=403)
    settings.ZOHO_ORGANIZATION_ID = "999"
    for _ in range(3):
        make_customer()

    document, code = run_json("zoho_backfill_customers")

    assert_run_document(document, "zoho_backfill_customers")
    assert code == 2
    assert document["stopped"]["needs_setup"] is True
    assert "ZOHO_ORGANIZATION_ID" in document["stopped"]["reason"]


def test_a_dry_run_lists_and_checks_and_sends_nothing(emulator, make_customer):
    good = make_customer()
    bad = make_customer(email="not-an-email")

    document, code = run_json("zoho_backfill_customers", "--dry-run")

    assert_run_document(document, "zoho_backfill_customers")
    assert code == 0
    assert document["dry_run"] is True
    assert document["requests"] == 0
    assert emulator.request_log == []
    by_id = {c["customer_id"]: c for c in document["customers"]}
    assert by_id[good.pk]["outcome"] == by_id[bad.pk]["outcome"] == "dry_run"
    assert by_id[good.pk]["error"] is None
    assert "not-an-email" in by_id[bad.pk]["error"]
    assert document["problems"] == ["1 customer(s) have data our checks refuse"]


def test_a_customer_left_waiting_says_until_when(emulator, make_customer, settings):
    settings.ZOHO_CREATE_SETTLE_SECONDS = 600
    customer = make_customer()
    emulator.inject("lose_response", method="POST", email=customer.email)
    run("zoho_backfill_customers", "--max-wait", "0")

    document, code = run_json("zoho_retry_failed", "--max-wait", "60")

    assert_run_document(document, "zoho_retry_failed")
    assert code == 1
    assert document["counts"]["waiting"] == 1
    [entry] = document["customers"]
    assert entry["outcome"] == "waiting"
    assert datetime.fromisoformat(entry["waiting_until"]) > datetime.now().astimezone()


def test_nothing_to_do_is_an_empty_run(emulator):
    document, code = run_json("zoho_retry_failed")

    assert_run_document(document, "zoho_retry_failed")
    assert code == 0
    assert document["customers"] == []
    assert document["counts"]["selected"] == 0


@pytest.mark.parametrize("command", ["zoho_backfill_customers", "zoho_retry_failed"])
def test_bad_configuration_is_still_one_document(emulator, make_customer, settings, command):
    make_customer()
    settings.ZOHO_CLIENT_ID = ""

    document, code = run_json(command)

    assert_run_document(document, command)
    assert code == 2
    assert document["run_id"] is None
    assert document["customers"] == []
    assert "ZOHO_CLIENT_ID is not set" in document["problems"][0]


@pytest.mark.parametrize("command", sync_commands())
def test_every_run_command_has_the_run_shape(emulator, make_customer, command):
    make_customer()

    document, code = run_json(command, "--dry-run")

    assert_run_document(document, command)
    assert code == 0


def test_every_zoho_command_takes_json():
    for name in zoho_commands():
        parser = load_command_class(get_commands()[name], name).create_parser("manage.py", name)
        assert "--json" in parser.format_help(), name


# zoho_verify


def test_verify_after_a_full_sync(emulator, make_customer):
    for _ in range(3):
        make_customer()
    run("zoho_backfill_customers")

    document, code = run_json("zoho_verify", "--deep")

    assert_common(document, "zoho_verify")
    assert code == 0
    assert document["deep"] is True
    assert document["status_counts"] == [{"status": "synced", "count": 3}]
    assert document["zoho"]["total"] == 3
    assert isinstance(document["zoho"]["requests"], int)
    assert document["zoho"]["unlinked"] == 0
    assert document["without_zoho_id"] == document["unknown_ids"] == []
    assert document["duplicates"] == document["missing_accounts"] == []
    assert document["problems"] == []


def test_verify_gives_each_problem_as_an_object(emulator, make_customer):
    synced = make_customer(email="dup@example.co.za")
    run("zoho_backfill_customers")
    twin = emulator.add_customer(display_name="Twin", email="DUP@example.co.za")
    make_customer(email="never@example.co.za", account_number="CT-2025-55555")
    ghost = make_customer(
        zoho_billing_customer_id="6179546000000000001", zoho_sync_status=SyncStatus.SYNCED
    )

    document, code = run_json("zoho_verify")

    synced.refresh_from_db()
    assert code == 1
    assert document["deep"] is False
    assert document["missing_accounts"] is None  # not read without --deep
    assert document["without_zoho_id"] == [
        {"email": "never@example.co.za", "account_number": "CT-2025-55555", "status": "pending"}
    ]
    assert document["unknown_ids"] == [
        {"account_number": ghost.account_number, "zoho_customer_id": "6179546000000000001"}
    ]
    [duplicate] = document["duplicates"]
    assert duplicate["by"] == "email"
    assert duplicate["value"] == "dup@example.co.za"
    assert duplicate["zoho_customer_ids"] == [synced.zoho_billing_customer_id, twin["customer_id"]]
    assert document["problems"] == [
        "1 customer(s) without a Zoho id",
        "1 local Zoho id(s) unknown to Zoho",
        "1 duplicate(s) in Zoho",
    ]


def test_verify_deep_gives_the_account_number_zoho_carries(emulator, make_customer):
    bare = emulator.add_customer(display_name="Bare", email="bare@example.co.za")
    local = make_customer(
        email="bare@example.co.za",
        zoho_billing_customer_id=bare["customer_id"],
        zoho_sync_status=SyncStatus.SYNCED,
    )

    document, code = run_json("zoho_verify", "--deep")

    assert code == 1
    [missing] = document["missing_accounts"]
    assert missing["account_number"] == local.account_number
    assert missing["zoho_customer_id"] == bare["customer_id"]
    assert missing["zoho_account_number"] is None


def test_verify_with_bad_configuration_exits_2(emulator, settings):
    settings.ZOHO_REFRESH_TOKEN = ""

    document, code = run_json("zoho_verify")

    assert code == 2
    assert document["zoho"] is None
    assert "ZOHO_REFRESH_TOKEN is not set" in document["problems"][0]


# zoho_check_credentials, zoho_load_demo, zoho_schedule


def test_check_credentials_lists_each_check(emulator):
    document, code = run_json("zoho_check_credentials")

    assert_common(document, "zoho_check_credentials")
    assert code == 0
    assert document["checks"]
    for check in document["checks"]:
        assert set(check) == {"ok", "text"}
        assert check["ok"] in (True, False, None)
    assert {"ok": True, "text": "Token refresh: Zoho issued an access token"} in document["checks"]


def test_check_credentials_failure_exits_2_with_the_problem(emulator, settings):
    settings.ZOHO_CLIENT_SECRET = "bad-secret-123"

    document, code = run_json("zoho_check_credentials")

    assert code == 2
    assert document["checks"][-1]["ok"] is False
    assert document["problems"] == [document["checks"][-1]["text"]]
    assert "ZOHO_CLIENT_SECRET is wrong" in document["problems"][0]


def test_load_demo_counts_what_it_created(db):
    first, _ = run_json("zoho_load_demo")
    second, code = run_json("zoho_load_demo")

    assert_common(second, "zoho_load_demo")
    assert code == 0
    assert first["customers"] == second["customers"] == 15
    assert (first["created"], first["already_present"]) == (15, 0)
    assert (second["created"], second["already_present"]) == (0, 15)


def test_schedule_lists_its_schedules_with_their_next_run(db):
    listed, _ = run_json("zoho_schedule", "--list")
    ensured, code = run_json("zoho_schedule")

    assert listed["ensured"] is False
    assert listed["schedules"] == []
    assert listed["problems"] == ["No Zoho schedules yet: run `manage.py zoho_schedule`."]
    assert_common(ensured, "zoho_schedule")
    assert code == 0
    assert ensured["ensured"] is True
    assert ensured["problems"] == []
    for schedule in ensured["schedules"]:
        assert set(schedule) == {"name", "func", "minutes", "next_run"}
        assert datetime.fromisoformat(schedule["next_run"]).utcoffset() is not None


# zoho_emulator


def test_emulator_announces_one_document_then_prints_nothing_more():
    process = start_manage(
        "zoho_emulator",
        "--port",
        "0",
        "--json",
        "--rate-limit-requests",
        "7",
        "--refuse-creates",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        document = json.loads(process.stdout.readline())
        answer = requests.get(f"{document['url']}/__emulator__/state", timeout=5)
    finally:
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=10)
    assert answer.status_code == 200
    assert_common(document, "zoho_emulator")
    assert document["exit_code"] == 0
    assert document["settings"]["ZOHO_API_BASE_URL"] == document["url"] + "/billing/v1"
    assert set(document["settings"]) == {
        "ZOHO_ACCOUNTS_URL",
        "ZOHO_API_BASE_URL",
        "ZOHO_CLIENT_ID",
        "ZOHO_ORGANIZATION_ID",
    }
    assert document["limits"]["rate_limit_requests"] == 7
    assert document["changed"] == {"refuse_creates": True}
    assert rest == ""
    assert "Stopping the emulator." in errors


def test_emulator_refusal_is_one_document():
    document, code = run_json("zoho_emulator", "--port", "0", "--list-lag-seconds", "-1")

    assert code == 1
    assert document["url"] is None
    assert document["problems"]


# As a script sees it


@pytest.mark.django_db(transaction=True)
def test_a_process_prints_only_the_document_on_stdout(emulator, settings, make_customer):
    make_customer()
    env = process_env(settings, LOG_LEVEL="INFO")  # the client logs each request

    done = run_manage("zoho_backfill_customers", "--json", env=env)
    broken = run_manage(
        "zoho_backfill_customers", "--json", env=process_env(settings, ZOHO_CLIENT_ID="")
    )

    document = json.loads(done.stdout)
    assert done.returncode == document["exit_code"] == 0
    assert document["counts"]["synced"] == 1
    assert "token refresh -> HTTP 200" in done.stderr  # the log goes to stderr
    failed = json.loads(broken.stdout)
    assert broken.returncode == failed["exit_code"] == 2
    assert "CommandError: " in broken.stderr
    assert "ZOHO_CLIENT_ID is not set" in broken.stderr


def test_no_secret_in_any_document(emulator, make_customer, settings):
    settings.ZOHO_MAX_ATTEMPTS = 1
    for n in range(3):
        make_customer(email="not-an-email" if n == 0 else f"s{n}@example.co.za")
    emulator.inject("error", method="POST", times=1)
    outputs = []
    for command, *args in [
        ("zoho_backfill_customers", "--dry-run"),
        ("zoho_backfill_customers",),
        ("zoho_retry_failed",),
        ("zoho_verify", "--deep"),
        ("zoho_check_credentials",),
        ("zoho_schedule",),
        ("zoho_load_demo",),
    ]:
        outputs.append(run(command, "--json", *args, stderr=io.StringIO())[0])
    announced = start_manage(
        "zoho_emulator", "--port", "0", "--json", stdout=subprocess.PIPE, text=True
    )
    try:
        outputs.append(announced.stdout.readline())
    finally:
        announced.send_signal(signal.SIGINT)
        announced.communicate(timeout=10)
    settings.ZOHO_CLIENT_SECRET = "a-wrong-secret-value"
    outputs.append(run("zoho_check_credentials", "--json")[0])
    outputs.append(run("zoho_retry_failed", "--json")[0])

    for output in outputs:
        json.loads(output)
        for secret in (EMULATOR_CLIENT_SECRET, EMULATOR_REFRESH_TOKEN, "a-wrong-secret-value"):
            assert secret not in output
