"""The emulator's switches for the ways real Zoho may answer differently, over real HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.helpers import (
    ACME,
    NOT_AUTHORIZED,
    ORG_HEADER,
    ZohoClock,
    call,
    create,
    request_token,
)
from zoho_emulator import EMULATOR_ORGANIZATION_ID, EmulatorConfig, ZohoEmulator

INTERNAL_ERROR = {"code": -1, "message": "Internal error"}
PLAN_LIMIT = {
    "code": 100101,
    "message": (
        "You have reached the maximum number of customers allowed in your current plan. "
        "Upgrade your plan to add more customers."
    ),
}
SCOPE = "ZohoSubscriptions.customers."
ALL_SCOPES = tuple(SCOPE + action for action in ("CREATE", "READ", "UPDATE"))


def listed(api: requests.Session, emulator: ZohoEmulator, **params: Any) -> dict[str, Any]:
    response = call(api, emulator, "GET", "/customers", params=params)
    assert response.status_code == 200
    return response.json()


def names(body: dict[str, Any]) -> list[str]:
    return [item["display_name"] for item in body["customers"]]


def custom_values(customer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f["label"], f["value"], f["data_type"]) for f in customer["custom_fields"]]


# Organization errors


@pytest.mark.parametrize(
    ("style", "status", "sent", "message"),
    [
        ("2", 400, "123", "Invalid value passed for organization_id"),
        ("6041", 400, "123", "This user is not associated with the CompanyID/CompanyName:123."),
        ("6041", 403, None, "This user is not associated with the CompanyID/CompanyName:."),
        ("9017", 401, "123", "The user is not associated with any organization."),
        ("9017", 403, None, "The user is not associated with any organization."),
    ],
)
def test_organization_error_follows_the_configured_style_and_status(
    emulator: ZohoEmulator,
    api: requests.Session,
    style: str,
    status: int,
    sent: str | None,
    message: str,
) -> None:
    emulator.configure(organization_error=style, organization_error_status=status)
    del api.headers[ORG_HEADER]
    headers = {} if sent is None else {ORG_HEADER: sent}

    response = call(api, emulator, "GET", "/customers", headers=headers)

    assert response.status_code == status
    assert response.json() == {"code": int(style), "message": message}
    assert emulator.request_log[-1].counted is False


@pytest.mark.parametrize(
    "changes", [{"organization_error": "57"}, {"organization_error_status": 404}]
)
def test_organization_error_settings_are_validated(
    emulator: ZohoEmulator, changes: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="organization_error"):
        emulator.configure(**changes)


# Scopes


@pytest.mark.parametrize("missing", ["CREATE", "READ", "UPDATE"])
def test_a_missing_scope_refuses_only_the_requests_that_need_it(
    emulator: ZohoEmulator, api: requests.Session, missing: str
) -> None:
    customer_id = emulator.add_customer(**ACME)["customer_id"]
    emulator.configure(scopes=tuple(s for s in ALL_SCOPES if s != SCOPE + missing))
    requests_and_scopes = [
        ("POST", "/customers", "CREATE"),
        ("GET", "/customers", "READ"),
        ("GET", f"/customers/{customer_id}", "READ"),
        ("PUT", f"/customers/{customer_id}", "UPDATE"),
    ]

    answers = [
        (scope, call(api, emulator, method, path, json={**ACME, "email": "new@acme.test"}))
        for method, path, scope in requests_and_scopes
    ]

    for scope, response in answers:
        if scope == missing:
            assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)
        else:
            assert response.status_code in (200, 201)
            assert response.json()["code"] == 0


@pytest.mark.parametrize(
    "scopes", [("ZohoSubscriptions.fullaccess.all",), ("ZohoSubscriptions.customers.ALL",)]
)
def test_full_access_scopes_grant_every_customer_operation(
    emulator: ZohoEmulator, api: requests.Session, scopes: tuple[str, ...]
) -> None:
    emulator.configure(scopes=scopes)

    created = create(api, emulator)
    customer_id = created.json()["customer"]["customer_id"]
    updated = call(api, emulator, "PUT", f"/customers/{customer_id}", json={"phone": "1"})
    read = call(api, emulator, "GET", f"/customers/{customer_id}")

    assert [created.status_code, updated.status_code, read.status_code] == [201, 200, 200]


def test_scope_is_checked_after_the_organization(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(scopes=())

    wrong_org = call(api, emulator, "GET", "/customers", headers={ORG_HEADER: "123"})
    right_org = call(api, emulator, "GET", "/customers")

    assert wrong_org.json()["code"] == 2
    assert (right_org.status_code, right_org.json()) == (401, NOT_AUTHORIZED)
    assert [record.counted for record in emulator.request_log] == [False, False]


# Custom fields


def test_drop_mode_create_stores_only_defined_labels(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(custom_field_labels=("Account Number",), unknown_custom_field="drop")
    entries = [{"label": "account number", "value": "CT-1"}, {"label": "Region", "value": "EU"}]

    response = create(api, emulator, custom_fields=entries)

    assert response.status_code == 201
    customer = response.json()["customer"]
    assert custom_values(customer) == [("Account Number", "CT-1", "text")]
    assert emulator.customers() == [customer]


def test_drop_mode_update_ignores_unknown_labels_and_applies_the_rest(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(custom_field_labels=("Account Number",), unknown_custom_field="drop")
    seeded = emulator.add_customer(
        **ACME, custom_fields=[{"label": "Account Number", "value": "CT-1"}]
    )
    field_id = seeded["custom_fields"][0]["customfield_id"]
    changes = [{"label": "Region", "value": "EU"}, {"customfield_id": field_id, "value": "CT-2"}]

    response = call(
        api, emulator, "PUT", f"/customers/{seeded['customer_id']}", json={"custom_fields": changes}
    )

    assert response.status_code == 200
    assert custom_values(response.json()["customer"]) == [("Account Number", "CT-2", "text")]
    assert custom_values(emulator.customers()[0]) == [("Account Number", "CT-2", "text")]


def test_refuse_mode_create_refuses_the_whole_request(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(custom_field_labels=("Account Number",), unknown_custom_field="refuse")
    entries = [{"label": "Account Number", "value": "CT-1"}, {"label": "Region", "value": "EU"}]

    response = create(api, emulator, custom_fields=entries)

    assert response.status_code == 400
    assert response.json() == {
        "code": 120129,
        "message": "Custom field with label 'Region' does not exist.",
    }
    assert emulator.customers() == []


def test_refuse_mode_update_changes_nothing(emulator: ZohoEmulator, api: requests.Session) -> None:
    emulator.configure(custom_field_labels=("Account Number",), unknown_custom_field="refuse")
    seeded = emulator.add_customer(
        **ACME, custom_fields=[{"label": "Account Number", "value": "CT-1"}]
    )
    changes = {"phone": "555", "custom_fields": [{"label": "Account Number", "value": "CT-2"}]}
    path = f"/customers/{seeded['customer_id']}"

    refused = call(
        api, emulator, "PUT", path, json={**changes, "custom_fields": [{"label": "Tier"}]}
    )
    by_index = call(api, emulator, "PUT", path, json={"custom_fields": [{"index": 1, "value": 7}]})

    assert refused.status_code == 400
    assert refused.json() == {
        "code": 120129,
        "message": "Custom field with label 'Tier' does not exist.",
    }
    assert by_index.status_code == 200
    assert custom_values(emulator.customers()[0]) == [("Account Number", "7", "text")]
    assert emulator.customers()[0]["phone"] == ""


def test_create_mode_defines_any_label_and_keeps_defined_spelling(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(custom_field_labels=("Account Number",))
    entries = [{"label": "ACCOUNT NUMBER", "value": "CT-1"}, {"label": "Region", "value": "EU"}]

    response = create(api, emulator, custom_fields=entries)

    assert response.status_code == 201
    assert custom_values(response.json()["customer"]) == [
        ("Account Number", "CT-1", "text"),
        ("Region", "EU", "text"),
    ]


def test_number_field_keeps_only_digits(emulator: ZohoEmulator, api: requests.Session) -> None:
    emulator.configure(number_custom_fields=("Account Number",), unknown_custom_field="refuse")

    created = create(
        api, emulator, custom_fields=[{"label": "Account Number", "value": "CT-2025-00015"}]
    ).json()["customer"]
    updated = call(
        api,
        emulator,
        "PUT",
        f"/customers/{created['customer_id']}",
        json={"custom_fields": [{"label": "Account Number", "value": "000123"}]},
    ).json()["customer"]

    assert custom_values(created) == [("Account Number", "202500015", "number")]
    assert custom_values(updated) == [("Account Number", "123", "number")]
    assert emulator.customers() == [updated]


def test_number_field_without_digits_is_refused(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(number_custom_fields=("Account Number",))

    response = create(api, emulator, custom_fields=[{"label": "Account Number", "value": "CT-"}])

    assert response.status_code == 400
    assert response.json() == {"code": 2, "message": "Invalid value passed for Account Number"}
    assert emulator.customers() == []


# Refused creates


def test_refuse_creates_stores_nothing(emulator: ZohoEmulator, api: requests.Session) -> None:
    customer_id = emulator.add_customer(**ACME)["customer_id"]
    emulator.configure(refuse_creates=True)

    refused = create(api, emulator, email="new@acme.test")
    updated = call(api, emulator, "PUT", f"/customers/{customer_id}", json={"phone": "1"})

    assert refused.status_code == 400
    assert refused.json() == PLAN_LIMIT
    assert updated.status_code == 200
    assert [customer["email"] for customer in emulator.customers()] == ["billing@acme.test"]


def test_refuse_creates_comes_after_auth_and_rate_limits(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(refuse_creates=True)
    emulator.block_for(30)

    blocked = create(api, emulator)
    bad_token = requests.post(
        f"{emulator.api_base_url}/customers",
        json=ACME,
        headers={"Authorization": "Zoho-oauthtoken wrong", ORG_HEADER: EMULATOR_ORGANIZATION_ID},
        timeout=5,
    )

    assert (blocked.status_code, blocked.json()["code"]) == (429, 44)
    assert (bad_token.status_code, bad_token.json()) == (401, NOT_AUTHORIZED)


# List lag, ignored filters, sorting


def test_list_lag_hides_a_new_customer_from_lists_until_it_passes(
    emulator: ZohoEmulator, api: requests.Session, zoho_clock: ZohoClock
) -> None:
    emulator.configure(list_lag_seconds=30)
    emulator.add_customer(display_name="Seeded", email="seeded@acme.test")
    customer_id = create(api, emulator).json()["customer"]["customer_id"]

    zoho_clock.advance(29)
    during = listed(api, emulator)
    searched = listed(api, emulator, email="billing@acme.test")
    by_id = call(api, emulator, "GET", f"/customers/{customer_id}")
    zoho_clock.advance(1)
    after = listed(api, emulator)
    searched_after = listed(api, emulator, email="billing@acme.test")

    assert names(during) == ["Seeded"]
    assert searched["customers"] == []
    assert by_id.status_code == 200
    assert names(after) == ["Seeded", "Acme Ltd"]
    assert names(searched_after) == ["Acme Ltd"]


def test_email_filter_ignored_lists_everyone_other_filters_apply(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.add_customer(display_name="Ana", email="ana@acme.test")
    emulator.add_customer(display_name="Bob", email="bob@acme.test")
    emulator.configure(email_filter_ignored=True)

    by_email = listed(api, emulator, email="ana@acme.test")
    by_email_and_name = listed(api, emulator, email="ana@acme.test", display_name="Bob")

    assert names(by_email) == ["Ana", "Bob"]
    assert names(by_email_and_name) == ["Bob"]


def seed_three(emulator: ZohoEmulator) -> None:
    # Created within the same second: only the precise creation time orders them.
    for name, email in [("Carol", "a@acme.test"), ("alice", "c@acme.test"), ("Bob", "b@acme.test")]:
        emulator.add_customer(display_name=name, email=email)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sort_column": "created_time", "sort_order": "D"}, ["Bob", "alice", "Carol"]),
        ({"sort_column": "created_time"}, ["Carol", "alice", "Bob"]),
        ({"sort_column": "customer_id", "sort_order": "D"}, ["Bob", "alice", "Carol"]),
        ({"sort_column": "display_name", "sort_order": "A"}, ["alice", "Bob", "Carol"]),
        ({"sort_column": "email", "sort_order": "D"}, ["alice", "Bob", "Carol"]),
    ],
)
def test_list_honours_sort_column_and_order(
    emulator: ZohoEmulator, api: requests.Session, params: dict[str, str], expected: list[str]
) -> None:
    seed_three(emulator)

    body = listed(api, emulator, **params)

    assert names(body) == expected
    assert body["page_context"]["sort_column"] == params["sort_column"]
    assert body["page_context"]["sort_order"] == params.get("sort_order", "A")


def test_pages_follow_the_sort(emulator: ZohoEmulator, api: requests.Session) -> None:
    seed_three(emulator)
    params = {"sort_column": "created_time", "sort_order": "D", "per_page": 2}

    first, second = (listed(api, emulator, **params, page=page) for page in (1, 2))

    assert (names(first), names(second)) == (["Bob", "alice"], ["Carol"])
    assert first["page_context"]["has_more_page"] is True


@pytest.mark.parametrize(
    ("params", "name"),
    [({"sort_column": "colour"}, "sort_column"), ({"sort_order": "Z"}, "sort_order")],
)
def test_unknown_sorting_is_refused(
    emulator: ZohoEmulator, api: requests.Session, params: dict[str, str], name: str
) -> None:
    response = call(api, emulator, "GET", "/customers", params=params)

    assert response.status_code == 400
    assert response.json() == {"code": 2, "message": f"Invalid value passed for {name}"}


def test_sort_ignored_answers_in_creation_order(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    seed_three(emulator)
    emulator.configure(sort_ignored=True)

    body = listed(api, emulator, sort_column="display_name", sort_order="D")
    unknown = listed(api, emulator, sort_column="colour")

    assert names(body) == names(unknown) == ["Carol", "alice", "Bob"]
    assert body["page_context"]["sort_column"] == "created_time"
    assert body["page_context"]["sort_order"] == "A"


# An edition without VAT


def test_vat_reg_no_dropped_ignores_it_and_records_lack_the_key(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.configure(vat_reg_no_dropped=True)

    created = create(api, emulator, vat_reg_no="4123456789")
    customer_id = created.json()["customer"]["customer_id"]
    too_short = create(api, emulator, email="short@acme.test", vat_reg_no="1")
    updated = call(api, emulator, "PUT", f"/customers/{customer_id}", json={"vat_reg_no": "GB12"})
    read = call(api, emulator, "GET", f"/customers/{customer_id}")

    assert (created.status_code, too_short.status_code, updated.status_code) == (201, 201, 200)
    for answer in (created, too_short, updated, read):
        assert "vat_reg_no" not in answer.json()["customer"]
    assert all("vat_reg_no" not in customer for customer in emulator.customers())
    assert read.json()["customer"] == emulator.customers()[0]


def test_vat_reg_no_dropped_hides_what_was_held_before(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    customer_id = create(api, emulator, vat_reg_no="4123456789").json()["customer"]["customer_id"]

    emulator.configure(vat_reg_no_dropped=True)
    hidden = call(api, emulator, "GET", f"/customers/{customer_id}").json()["customer"]
    emulator.configure(vat_reg_no_dropped=False)
    shown = call(api, emulator, "GET", f"/customers/{customer_id}").json()["customer"]

    assert "vat_reg_no" not in hidden
    assert shown["vat_reg_no"] == "4123456789"


# Slow token endpoint


def test_token_delay_does_not_hold_up_other_requests(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    delay = 0.5
    emulator.configure(token_delay_seconds=delay)
    started = time.monotonic()

    def timed(send: Any) -> tuple[requests.Response, float]:
        response = send()
        return response, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=2) as pool:
        tokens = [pool.submit(timed, lambda: request_token(requests, emulator)) for _ in range(2)]
        time.sleep(0.05)
        listing, listing_took = timed(lambda: call(api, emulator, "GET", "/customers"))
        answers = [future.result() for future in tokens]

    assert listing.status_code == 200
    assert listing_took < delay
    for response, took in answers:
        assert "access_token" in response.json()
        assert took >= delay > listing_took
    assert answers[0][0].json()["access_token"] != answers[1][0].json()["access_token"]
    assert emulator.token_refresh_count == 3


# error_after_commit


def test_error_after_commit_stores_the_customer_and_answers_500(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.inject("error_after_commit", method="POST", path="/customers")

    failed = create(api, emulator)
    retried = create(api, emulator)

    assert failed.status_code == 500
    assert failed.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert failed.json() == INTERNAL_ERROR
    assert retried.status_code == 201
    assert len(emulator.customers()) == 2
    assert emulator.fault_counts == {"error_after_commit": 1}
    assert emulator.request_log[0].counted is True


def test_error_after_commit_matches_email_and_takes_a_status(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    customer_id = emulator.add_customer(**ACME)["customer_id"]
    emulator.inject("error_after_commit", email="Hit@Acme.test", status=503, times=None)

    spared = create(api, emulator, email="spared@acme.test")
    hit = call(api, emulator, "PUT", f"/customers/{customer_id}", json={"email": "hit@acme.test"})

    assert spared.status_code == 201
    assert (hit.status_code, hit.json()) == (503, INTERNAL_ERROR)
    assert emulator.customers()[0]["email"] == "hit@acme.test"


def test_empty_success_stores_the_customer_and_answers_without_it(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.inject("empty_success", method="POST", path="/customers")

    answer = create(api, emulator)

    assert (answer.status_code, answer.json()) == (201, {"code": 0, "message": "success"})
    assert len(emulator.customers()) == 1
    assert emulator.fault_counts == {"empty_success": 1}


# Control endpoint


def test_control_config_takes_json_lists_as_tuples(
    emulator: ZohoEmulator, http: requests.Session
) -> None:
    changes = {
        "scopes": [SCOPE + "READ"],
        "custom_field_labels": ["Account Number"],
        "number_custom_fields": ["Customer Number"],
        "unknown_custom_field": "refuse",
        "organization_error": "6041",
        "organization_error_status": 403,
        "refuse_creates": True,
        "list_lag_seconds": 0.5,
        "email_filter_ignored": True,
        "sort_ignored": True,
        "token_delay_seconds": 0.1,
        "vat_reg_no_dropped": True,
        "active_subscription_emails": ["billing@acme.test"],
    }

    response = http.post(f"{emulator.url}/__emulator__/config", json=changes, timeout=5)
    state = http.get(f"{emulator.url}/__emulator__/state", timeout=5).json()

    assert response.status_code == 200
    assert emulator.config == EmulatorConfig().with_changes(**changes)
    assert emulator.config.scopes == (SCOPE + "READ",)
    assert emulator.config.custom_field_labels == ("Account Number",)
    assert emulator.config.active_subscription_emails == ("billing@acme.test",)
    assert emulator.config.vat_reg_no_dropped is True
    assert response.json()["config"]["scopes"] == [SCOPE + "READ"]
    assert state["config"] == response.json()["config"]


@pytest.mark.parametrize(
    "changes",
    [
        {"organization_error": "1"},
        {"organization_error_status": 500},
        {"scopes": SCOPE + "READ"},
        {"custom_field_labels": [""]},
        {"unknown_custom_field": "ignore"},
        {"number_custom_fields": [1]},
        {"refuse_creates": "yes"},
        {"list_lag_seconds": -1},
        {"email_filter_ignored": 1},
        {"sort_ignored": None},
        {"token_delay_seconds": -0.5},
        {"vat_reg_no_dropped": "no"},
        {"active_subscription_emails": "billing@acme.test"},
        {"active_subscription_emails": [" "]},
    ],
)
def test_control_config_rejects_bad_new_settings(
    emulator: ZohoEmulator, http: requests.Session, changes: dict[str, Any]
) -> None:
    response = http.post(f"{emulator.url}/__emulator__/config", json=changes, timeout=5)

    assert response.status_code == 400
    assert next(iter(changes)) in response.json()["error"]
    assert emulator.config == EmulatorConfig()
