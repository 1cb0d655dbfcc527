"""The Zoho Billing emulator, exercised over real HTTP on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.helpers import (
    ACME,
    NOT_AUTHORIZED,
    NOT_FOUND_ANSWERS,
    ORG_HEADER,
    TOKEN_PARAMS,
    ZohoClock,
    authorize,
    call,
    create,
    request_token,
    wait_for,
)
from zoho_emulator import (
    EMULATOR_ORGANIZATION_ID,
    EmulatorConfig,
    ZohoEmulator,
)

ACCESS_DENIED = {
    "error": "Access Denied",
    "error_description": (
        "You have made too many requests continuously. Please try again after some time."
    ),
    "status": "failure",
}
LIST_FIELDS = {
    "customer_id",
    "display_name",
    "salutation",
    "first_name",
    "last_name",
    "email",
    "tags",
    "company_name",
    "phone",
    "mobile",
    "website",
    "department",
    "designation",
    "currency_code",
    "unused_credits",
    "outstanding",
    "is_gapps_customer",
    "updated_time",
    "created_time",
    "has_attachment",
    "status",
}
# The spec's billing_address and shipping_address: no street2.
ADDRESS_FIELDS = {"attention", "street", "city", "state", "zip", "country", "state_code", "fax"}
ADDRESS = {
    "attention": "Accounts",
    "street": "1 Main St",
    "city": "Cape Town",
    "state": "Western Cape",
    "zip": "8001",
    "country": "South Africa",
    "state_code": "WC",
    "fax": "0215550100",
}


@pytest.fixture
def emu(emulator_server: ZohoEmulator) -> Iterator[ZohoEmulator]:
    """The session's emulator, fresh; spoken to over HTTP only, so no Django settings."""
    emulator_server.reset(config=EmulatorConfig())
    yield emulator_server
    assert emulator_server.wait_idle(), "the emulator is still busy after the test"


@pytest.fixture
def api(emu: ZohoEmulator, http: requests.Session) -> requests.Session:
    """A session carrying a fresh access token and the organization header: conftest's, on
    `emu` (no Django settings) rather than `emulator`."""
    return authorize(http, emu)


# Tokens


def test_refresh_grant_issues_a_bearer_token(emu: ZohoEmulator, http: requests.Session) -> None:
    response = request_token(http, emu)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    body = response.json()
    assert re.fullmatch(r"1000\.[0-9a-f]{32}\.[0-9a-f]{32}", body["access_token"])
    assert body["api_domain"] == emu.url
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert emu.token_refresh_count == 1


def test_token_params_may_come_in_the_query_string(
    emu: ZohoEmulator, http: requests.Session
) -> None:
    response = http.post(f"{emu.accounts_url}/oauth/v2/token", params=TOKEN_PARAMS, timeout=5)

    assert "access_token" in response.json()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"client_secret": "wrong"}, "invalid_client_secret"),
        ({"refresh_token": "1000.revoked"}, "invalid_code"),
        ({"grant_type": ""}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
    ],
)
def test_bad_grants_answer_http_200_with_an_error(
    emu: ZohoEmulator, http: requests.Session, changes: dict[str, str], error: str
) -> None:
    response = request_token(http, emu, **changes)

    assert response.status_code == 200
    assert response.json() == {"error": error}
    assert emu.token_refresh_count == 0


def test_token_endpoint_ignores_a_json_body(emu: ZohoEmulator, http: requests.Session) -> None:
    response = http.post(f"{emu.accounts_url}/oauth/v2/token", json=TOKEN_PARAMS, timeout=5)

    assert response.json() == {"error": "unsupported_grant_type"}


def test_token_endpoint_only_accepts_post(emu: ZohoEmulator, http: requests.Session) -> None:
    response = http.get(f"{emu.accounts_url}/oauth/v2/token", params=TOKEN_PARAMS, timeout=5)

    assert response.status_code == 405
    assert emu.token_refresh_count == 0


def test_too_many_refreshes_are_denied_until_the_window_passes(
    emu: ZohoEmulator, http: requests.Session, zoho_clock: ZohoClock
) -> None:
    emu.configure(token_refresh_limit=3, token_refresh_window_seconds=60)
    first = [request_token(http, emu) for _ in range(3)]

    denied = request_token(http, emu)
    zoho_clock.advance(60)
    later = request_token(http, emu)

    assert all("access_token" in response.json() for response in first)
    assert denied.status_code == 400
    assert denied.json() == ACCESS_DENIED
    assert "access_token" in later.json()
    assert emu.token_refresh_count == 4


def test_token_throttle_fault_denies_the_next_refresh(
    emu: ZohoEmulator, http: requests.Session
) -> None:
    emu.inject("token_throttle")

    throttled = request_token(http, emu)
    next_one = request_token(http, emu)

    assert throttled.status_code == 400
    assert throttled.json() == ACCESS_DENIED
    assert "access_token" in next_one.json()


def test_issuing_past_max_live_tokens_invalidates_the_oldest(
    emu: ZohoEmulator, http: requests.Session
) -> None:
    emu.configure(max_live_tokens=2)
    oldest, middle, newest = (request_token(http, emu).json()["access_token"] for _ in range(3))

    def status_with(token: str) -> int:
        headers = {
            "Authorization": f"Zoho-oauthtoken {token}",
            ORG_HEADER: EMULATOR_ORGANIZATION_ID,
        }
        return http.get(f"{emu.api_base_url}/customers", headers=headers, timeout=5).status_code

    assert [status_with(oldest), status_with(middle), status_with(newest)] == [401, 200, 200]


def test_access_token_expires_after_its_ttl(
    emu: ZohoEmulator, http: requests.Session, zoho_clock: ZohoClock
) -> None:
    token = request_token(http, emu).json()["access_token"]
    headers = {"Authorization": f"Zoho-oauthtoken {token}", ORG_HEADER: EMULATOR_ORGANIZATION_ID}

    zoho_clock.advance(3599)
    fresh = http.get(f"{emu.api_base_url}/customers", headers=headers, timeout=5)
    zoho_clock.advance(1)
    expired = http.get(f"{emu.api_base_url}/customers", headers=headers, timeout=5)

    assert (fresh.status_code, expired.status_code) == (200, 401)


# Auth and organization


@pytest.mark.parametrize(
    "authorization",
    [None, "Zoho-oauthtoken 1000.unknown.token", "Basic dXNlcjpwYXNz"],
)
def test_api_rejects_a_missing_or_unknown_token(
    emu: ZohoEmulator, http: requests.Session, authorization: str | None
) -> None:
    request_token(http, emu)
    headers = {ORG_HEADER: EMULATOR_ORGANIZATION_ID}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = http.get(f"{emu.api_base_url}/customers", headers=headers, timeout=5)

    assert response.status_code == 401
    assert response.json() == NOT_AUTHORIZED


def test_revoked_tokens_are_rejected(emu: ZohoEmulator, api: requests.Session) -> None:
    before = call(api, emu, "GET", "/customers")
    emu.revoke_access_tokens()
    after = call(api, emu, "GET", "/customers")

    assert before.status_code == 200
    assert after.status_code == 401
    assert after.json() == NOT_AUTHORIZED


def test_bearer_scheme_is_accepted_too(emu: ZohoEmulator, api: requests.Session) -> None:
    token = api.headers["Authorization"].split()[1]
    api.headers["Authorization"] = f"Bearer {token}"

    assert call(api, emu, "GET", "/customers").status_code == 200


@pytest.mark.parametrize("organization_id", [None, "123"])
def test_api_requires_the_organization_header(
    emu: ZohoEmulator, api: requests.Session, organization_id: str | None
) -> None:
    del api.headers[ORG_HEADER]
    headers = {} if organization_id is None else {ORG_HEADER: organization_id}

    response = call(api, emu, "GET", "/customers", headers=headers)

    assert response.status_code == 400
    assert response.json() == {"code": 2, "message": "Invalid value passed for organization_id"}


def test_organization_may_come_as_a_query_param(emu: ZohoEmulator, api: requests.Session) -> None:
    del api.headers[ORG_HEADER]

    response = call(
        api, emu, "GET", "/customers", params={"organization_id": EMULATOR_ORGANIZATION_ID}
    )

    assert response.status_code == 200


# Customers


def test_create_answers_201_with_the_full_record(emu: ZohoEmulator, api: requests.Session) -> None:
    response = create(
        api,
        emu,
        first_name="Ana",
        phone=5550100,
        billing_address={"city": "Austin", "zip": 78701},
        custom_fields=[{"label": "Account Number", "value": "CT-1001"}],
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["code"], body["message"]) == (0, "The customer has been created")
    customer = body["customer"]
    assert re.fullmatch(r"\d+", customer["customer_id"])
    assert customer["display_name"] == "Acme Ltd"
    assert customer["email"] == "billing@acme.test"
    assert customer["first_name"] == "Ana"
    assert customer["phone"] == "5550100"
    assert customer["last_name"] == ""
    assert customer["salutation"] == ""
    assert (customer["status"], customer["currency_code"], customer["source"]) == (
        "active",
        "USD",
        "api",
    )
    assert (customer["unused_credits"], customer["outstanding"]) == (0, 0)
    assert customer["billing_address"]["city"] == "Austin"
    assert customer["billing_address"]["zip"] == "78701"
    assert customer["billing_address"]["street"] == ""
    assert set(customer["shipping_address"].values()) == {""}
    assert customer["vat_reg_no"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", customer["created_time"])
    [field] = customer["custom_fields"]
    assert field["index"] == 1
    assert field["label"] == "Account Number"
    assert field["value"] == "CT-1001"
    assert field["data_type"] == "text"
    assert re.fullmatch(r"\d+", field["customfield_id"])
    assert emu.customers() == [customer]


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"display_name": None}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 201}, "display_name"),
        ({"email": ""}, "email"),
        ({"email": "no-at-sign.test"}, "email"),
        ({"email": "two@@acme.test"}, "email"),
        ({"email": "who@localhost"}, "email"),
        ({"email": "a b@acme.test"}, "email"),
        ({"email": "x" * 95 + "@acme.test"}, "email"),
        ({"custom_fields": "not a list"}, "custom_fields"),
    ],
)
def test_create_rejects_invalid_fields(
    emu: ZohoEmulator, api: requests.Session, fields: dict[str, Any], bad_field: str
) -> None:
    response = create(api, emu, **fields)

    assert response.status_code == 400
    assert response.json() == {"code": 2, "message": f"Invalid value passed for {bad_field}"}
    assert emu.customers() == []


@pytest.mark.parametrize("missing", ["display_name", "email"])
def test_create_requires_display_name_and_email(
    emu: ZohoEmulator, api: requests.Session, missing: str
) -> None:
    body = {key: value for key, value in ACME.items() if key != missing}

    response = call(api, emu, "POST", "/customers", json=body)

    assert response.json() == {"code": 2, "message": f"Invalid value passed for {missing}"}


@pytest.mark.parametrize("body", [b"display_name=Acme", b"[1, 2]", b""])
def test_create_requires_a_json_object(
    emu: ZohoEmulator, api: requests.Session, body: bytes
) -> None:
    response = call(api, emu, "POST", "/customers", data=body)

    assert response.status_code == 400
    assert response.json() == {"code": 1038, "message": "JSON is not well formed"}


def test_addresses_and_vat_reg_no_are_held_as_sent(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    created = create(
        api,
        emu,
        billing_address={**ADDRESS, "street2": "Unit 4"},
        shipping_address={"street": "2 Dock Rd", "street2": "Gate B"},
        vat_reg_no=" 4123456789 ",
    ).json()["customer"]
    customer_id = created["customer_id"]
    read = call(api, emu, "GET", f"/customers/{customer_id}").json()["customer"]
    updated = call(
        api,
        emu,
        "PUT",
        f"/customers/{customer_id}",
        json={"billing_address": {"city": "Durban", "street2": "Unit 5"}, "vat_reg_no": "GB12"},
    ).json()["customer"]

    assert created["billing_address"] == ADDRESS
    assert created["shipping_address"] == {
        **dict.fromkeys(ADDRESS_FIELDS, ""),
        "street": "2 Dock Rd",
    }
    assert created["vat_reg_no"] == "4123456789"
    assert read == created
    assert updated["billing_address"] == {**ADDRESS, "city": "Durban"}
    assert updated["vat_reg_no"] == "GB12"
    assert emu.customers() == [updated]


@pytest.mark.parametrize("vat_reg_no", ["", None])
def test_an_empty_vat_reg_no_clears_it(
    emu: ZohoEmulator, api: requests.Session, vat_reg_no: str | None
) -> None:
    created = create(api, emu, vat_reg_no="4123456789").json()["customer"]

    response = call(
        api, emu, "PUT", f"/customers/{created['customer_id']}", json={"vat_reg_no": vat_reg_no}
    )

    assert response.status_code == 200
    assert response.json()["customer"]["vat_reg_no"] == ""


@pytest.mark.parametrize("vat_reg_no", ["1", " 1 ", "1234567890123", True, ["GB12"]])
def test_vat_reg_no_outside_2_to_12_characters_is_refused(
    emu: ZohoEmulator, api: requests.Session, vat_reg_no: Any
) -> None:
    customer = emu.add_customer(**ACME, vat_reg_no="GB12")
    refused = {"code": 2, "message": "Invalid value passed for vat_reg_no"}

    created = create(api, emu, email="new@acme.test", vat_reg_no=vat_reg_no)
    updated = call(
        api, emu, "PUT", f"/customers/{customer['customer_id']}", json={"vat_reg_no": vat_reg_no}
    )

    assert (created.status_code, created.json()) == (400, refused)
    assert (updated.status_code, updated.json()) == (400, refused)
    assert emu.customers() == [customer]


def test_list_items_omit_custom_fields_and_addresses(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    create(
        api,
        emu,
        custom_fields=[{"label": "Account Number", "value": "CT-1"}],
        billing_address=ADDRESS,
        vat_reg_no="4123456789",
    )

    body = call(api, emu, "GET", "/customers").json()

    assert (body["code"], body["message"]) == (0, "success")
    [item] = body["customers"]
    assert set(item) == LIST_FIELDS
    assert body["page_context"] == {
        "page": 1,
        "per_page": 200,
        "has_more_page": False,
        "report_name": "Customers",
        "applied_filter": "Status.All",
        "sort_column": "created_time",
        "sort_order": "A",
    }


def test_list_pages_in_creation_order(emu: ZohoEmulator, api: requests.Session) -> None:
    for number in range(5):
        emu.add_customer(display_name=f"Customer {number}", email=f"c{number}@acme.test")

    pages = [
        call(api, emu, "GET", "/customers", params={"page": page, "per_page": 2}).json()
        for page in (1, 2, 3)
    ]

    names = [[item["display_name"] for item in page["customers"]] for page in pages]
    assert names == [["Customer 0", "Customer 1"], ["Customer 2", "Customer 3"], ["Customer 4"]]
    assert [page["page_context"]["has_more_page"] for page in pages] == [True, True, False]
    assert [page["page_context"]["page"] for page in pages] == [1, 2, 3]


def test_list_caps_per_page_at_200(emu: ZohoEmulator, api: requests.Session) -> None:
    body = call(api, emu, "GET", "/customers", params={"per_page": 500}).json()

    assert body["page_context"]["per_page"] == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"email": "ANA@Acme.Test"}, ["Ana"]),
        ({"display_name": "Ana"}, ["Ana"]),
        ({"display_name_contains": "an"}, ["Ana", "Bob Anders"]),
        ({"search_text": "globex"}, ["Carol"]),
        ({"filter_by": "Status.Inactive"}, ["Carol"]),
        ({"filter_by": "Status.Active"}, ["Ana", "Bob Anders"]),
    ],
)
def test_list_filters(
    emu: ZohoEmulator, api: requests.Session, params: dict[str, str], expected: list[str]
) -> None:
    emu.add_customer(display_name="Ana", email="ana@acme.test")
    emu.add_customer(display_name="Bob Anders", email="bob@acme.test")
    emu.add_customer(
        display_name="Carol", email="carol@x.test", company_name="Globex", status="inactive"
    )

    body = call(api, emu, "GET", "/customers", params=params).json()

    assert [item["display_name"] for item in body["customers"]] == expected


def test_get_returns_the_full_record(emu: ZohoEmulator, api: requests.Session) -> None:
    created = create(api, emu, custom_fields=[{"label": "Account Number", "value": "CT-7"}])
    customer_id = created.json()["customer"]["customer_id"]

    body = call(api, emu, "GET", f"/customers/{customer_id}").json()

    assert (body["code"], body["message"]) == (0, "success")
    assert body["customer"] == created.json()["customer"]


@pytest.mark.parametrize(("style", "status", "error"), NOT_FOUND_ANSWERS)
def test_unknown_customer_follows_the_not_found_style(
    emu: ZohoEmulator, api: requests.Session, style: str, status: int, error: dict[str, Any]
) -> None:
    emu.configure(not_found_style=style)

    response = call(api, emu, "GET", "/customers/6179546000009999999")

    assert response.status_code == status
    assert response.json() == error


def test_update_changes_only_the_given_fields(emu: ZohoEmulator, api: requests.Session) -> None:
    created = create(api, emu, first_name="Ana", phone="111").json()["customer"]

    response = call(api, emu, "PUT", f"/customers/{created['customer_id']}", json={"phone": "222"})

    assert response.status_code == 200
    body = response.json()
    assert (body["code"], body["message"]) == (0, "The customer details have been updated.")
    updated = body["customer"]
    assert updated["phone"] == "222"
    assert {**updated, "phone": "111", "updated_time": created["updated_time"]} == created
    assert emu.customers() == [updated]


def test_update_matches_custom_fields_by_id_index_or_label(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    created = create(
        api,
        emu,
        custom_fields=[{"label": "Account Number", "value": "A"}, {"label": "Tier", "value": "1"}],
    ).json()["customer"]
    account_field_id = created["custom_fields"][0]["customfield_id"]
    changes = [
        {"customfield_id": account_field_id, "value": "A2"},
        {"index": 2, "value": "2"},
        {"label": "Region", "value": "EU"},
    ]

    updated = call(
        api, emu, "PUT", f"/customers/{created['customer_id']}", json={"custom_fields": changes}
    ).json()["customer"]

    values = [
        (field["index"], field["label"], field["value"]) for field in updated["custom_fields"]
    ]
    assert values == [(1, "Account Number", "A2"), (2, "Tier", "2"), (3, "Region", "EU")]


def test_update_validates_the_fields_present(emu: ZohoEmulator, api: requests.Session) -> None:
    created = create(api, emu).json()["customer"]

    response = call(
        api, emu, "PUT", f"/customers/{created['customer_id']}", json={"email": "not-an-email"}
    )

    assert response.json() == {"code": 2, "message": "Invalid value passed for email"}
    assert emu.customers() == [created]


def test_duplicate_names_and_emails_are_allowed_by_default(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    first = create(api, emu).json()["customer"]["customer_id"]
    second = create(api, emu).json()["customer"]["customer_id"]

    assert first != second
    assert len(emu.customers()) == 2


def test_unique_display_names_reject_a_duplicate(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.configure(display_name_unique=True)
    create(api, emu)

    response = create(api, emu, email="other@acme.test")

    assert response.status_code == 400
    assert response.json() == {
        "code": 3062,
        "message": 'The customer "Acme Ltd" already exists. Please specify a different name.',
    }
    assert len(emu.customers()) == 1


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/invoices", 404, 5),
        ("GET", "/customers/1/contactpersons", 404, 5),
        ("POST", "/customers/6179546000000100001/markasdeleted", 404, 5),
        ("GET", "/customers/6179546000000100001/markasinactive", 405, 37),
        ("PATCH", "/customers", 405, 37),
        ("POST", "/customers/6179546000000100001", 405, 37),
        ("DELETE", "/customers/6179546000000100001", 405, 37),
    ],
)
def test_unknown_routes_and_methods(
    emu: ZohoEmulator, api: requests.Session, method: str, path: str, status: int, code: int
) -> None:
    response = call(api, emu, method, path, json={})

    assert response.status_code == status
    assert response.json()["code"] == code


def test_add_customer_seeds_without_a_request(emu: ZohoEmulator) -> None:
    seeded = emu.add_customer(
        display_name="Legacy", email="legacy@acme.test", custom_fields=[{"label": "A", "value": 1}]
    )

    assert emu.customers() == [seeded]
    assert seeded["custom_fields"][0]["value"] == "1"
    assert emu.request_log == []
    with pytest.raises(ValueError, match="email"):
        emu.add_customer(display_name="No email")


# Rate limits


def test_minute_breach_blocks_the_org_until_the_block_ends(
    emu: ZohoEmulator, api: requests.Session, zoho_clock: ZohoClock
) -> None:
    emu.configure(rate_limit_requests=5, rate_limit_window_seconds=60)
    allowed = [call(api, emu, "GET", "/customers").status_code for _ in range(5)]

    breach = call(api, emu, "GET", "/customers")
    zoho_clock.advance(599)
    during = call(api, emu, "GET", "/customers")
    assert emu.blocked_until == pytest.approx(zoho_clock() + 1)
    zoho_clock.advance(1)
    after = call(api, emu, "GET", "/customers")

    assert allowed == [200] * 5
    for response in (breach, during):
        assert response.status_code == 429
        assert response.json()["code"] == 44
        assert response.json()["message"].startswith("For security reasons your organization")
    # The block lasts 10 minutes (Zoho's documented default), counted down in Retry-After.
    assert (breach.headers["Retry-After"], during.headers["Retry-After"]) == ("600", "1")
    assert after.status_code == 200
    assert emu.blocked_until is None


def test_minute_window_slides(
    emu: ZohoEmulator, api: requests.Session, zoho_clock: ZohoClock
) -> None:
    emu.configure(rate_limit_requests=5, rate_limit_window_seconds=60)
    first = [call(api, emu, "GET", "/customers").status_code for _ in range(5)]
    zoho_clock.advance(60)
    second = [call(api, emu, "GET", "/customers").status_code for _ in range(5)]

    assert first + second == [200] * 10


def test_retry_after_can_be_switched_off(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.configure(send_retry_after=False)
    emu.block_for(5)

    response = call(api, emu, "GET", "/customers")

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_block_for_blocks_now_with_the_remaining_time(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.block_for(120)

    response = call(api, emu, "GET", "/customers")

    assert response.json()["code"] == 44
    assert 119 <= int(response.headers["Retry-After"]) <= 120
    assert emu.request_log[-1].counted is False


def test_daily_cap_answers_45_until_the_day_window_resets(
    emu: ZohoEmulator, api: requests.Session, zoho_clock: ZohoClock
) -> None:
    emu.configure(daily_limit=3)
    allowed = [call(api, emu, "GET", "/customers").status_code for _ in range(3)]

    capped = call(api, emu, "GET", "/customers")
    zoho_clock.advance(86400)
    authorize(api, emu)  # the day outlived the access token
    next_day = call(api, emu, "GET", "/customers")

    assert allowed == [200] * 3
    assert capped.status_code == 429
    assert capped.json() == {
        "code": 45,
        "message": (
            "The API call for this organization has exceeded the maximum call rate limit of 3."
        ),
    }
    assert capped.headers["Retry-After"] == "86400"  # the day's window, all of it still to run
    assert next_day.status_code == 200


def test_daily_cap_retry_after_points_at_the_reset(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.configure(daily_limit=1)
    call(api, emu, "GET", "/customers")

    capped = call(api, emu, "GET", "/customers")

    assert 86399 <= int(capped.headers["Retry-After"]) <= 86400


def test_concurrency_limit_answers_1070(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.configure(concurrency_limit=1)
    emu.inject("slow", delay=0.4, method="GET", path="/customers")
    url, headers = f"{emu.api_base_url}/customers", dict(api.headers)

    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(requests.get, url, headers=headers, timeout=5)
        time.sleep(0.15)
        rejected = call(api, emu, "GET", "/customers")

        assert slow.result().status_code == 200
    assert rejected.status_code == 429
    assert rejected.json()["code"] == 1070
    assert rejected.headers["Retry-After"] == "1"


def test_request_log_records_status_and_counting(
    emu: ZohoEmulator, api: requests.Session, http: requests.Session
) -> None:
    emu.configure(rate_limit_requests=1)
    started = time.time()
    call(api, emu, "GET", "/customers", params={"email": "a@acme.test"})
    call(api, emu, "GET", "/customers")
    http.headers["Authorization"] = "Zoho-oauthtoken wrong"
    call(http, emu, "GET", "/customers")

    log = emu.request_log

    assert [(r.method, r.path, r.status, r.counted) for r in log] == [
        ("GET", "/customers", 200, True),
        ("GET", "/customers", 429, False),
        ("GET", "/customers", 401, False),
    ]
    assert [r.code for r in log] == [0, 44, 57]
    assert all(started <= record.time <= time.time() for record in log)


# Faults


def test_error_fault_answers_500_without_doing_the_work(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.inject("error", method="POST", path="/customers")

    failed = create(api, emu)
    retried = create(api, emu)

    assert failed.status_code == 500
    assert failed.json() == {"code": -1, "message": "Internal error"}
    assert retried.status_code == 201
    assert len(emu.customers()) == 1


def test_html_error_fault_answers_an_html_page(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.inject("html_error")
    emu.inject("html_error", status=503)

    first = create(api, emu)
    second = create(api, emu)

    assert (first.status_code, second.status_code) == (502, 503)
    assert first.headers["Content-Type"].startswith("text/html")
    assert "<html>" in first.text
    assert emu.customers() == []
    assert [r.code for r in emu.request_log] == [None, None]


def test_drop_fault_closes_without_doing_the_work(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.inject("drop", method="POST")

    with pytest.raises(requests.ConnectionError):
        create(api, emu)

    assert emu.customers() == []
    assert emu.request_log[-1].status == 0
    assert create(api, emu).status_code == 201


def test_lose_response_fault_does_the_work_then_closes(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.inject("lose_response", method="POST")

    with pytest.raises(requests.ConnectionError):
        create(api, emu)

    assert [customer["email"] for customer in emu.customers()] == ["billing@acme.test"]
    assert emu.request_log[-1].counted is True


def test_slow_fault_does_the_work_even_when_the_client_gives_up(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.inject("slow", delay=0.3, method="POST")

    with pytest.raises(requests.Timeout):
        call(api, emu, "POST", "/customers", json=ACME, timeout=0.1)

    wait_for(lambda: len(emu.customers()) == 1, "the customer to be stored", timeout=2)


def test_rate_limit_fault_hits_only_the_chosen_email(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.inject("rate_limit", email="Blocked@Acme.test", times=None)

    refused = [create(api, emu, email="blocked@acme.test") for _ in range(2)]
    allowed = create(api, emu, email="fine@acme.test")

    assert [response.status_code for response in refused] == [429, 429]
    assert refused[0].json()["code"] == 44
    assert refused[0].headers["Retry-After"] == "1"
    assert allowed.status_code == 201
    assert emu.blocked_until is None
    assert [customer["email"] for customer in emu.customers()] == ["fine@acme.test"]


def test_faults_are_used_up_and_can_be_cleared(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.inject("error", times=2, method="GET")
    emu.inject("error", times=None, method="PUT")

    gets = [call(api, emu, "GET", "/customers").status_code for _ in range(3)]
    created = create(api, emu)
    customer_id = created.json()["customer"]["customer_id"]
    update_before = call(api, emu, "PUT", f"/customers/{customer_id}", json={"phone": "1"})
    emu.clear_faults()
    update_after = call(api, emu, "PUT", f"/customers/{customer_id}", json={"phone": "1"})

    assert gets == [500, 500, 200]
    assert created.status_code == 201
    assert (update_before.status_code, update_after.status_code) == (500, 200)


def test_inject_rejects_an_unknown_kind(emu: ZohoEmulator) -> None:
    with pytest.raises(ValueError, match="Unknown fault kind"):
        emu.inject("explode")


# Control endpoints


def test_control_endpoints_show_reset_and_configure(
    emu: ZohoEmulator, api: requests.Session, http: requests.Session
) -> None:
    create(api, emu)

    state = http.get(f"{emu.url}/__emulator__/state", timeout=5).json()
    configured = http.post(
        f"{emu.url}/__emulator__/config", json={"rate_limit_requests": 11}, timeout=5
    )
    reset = http.post(f"{emu.url}/__emulator__/reset", timeout=5)

    assert [customer["email"] for customer in state["customers"]] == ["billing@acme.test"]
    assert "custom_fields" in state["customers"][0]
    assert (state["request_count"], state["token_refresh_count"]) == (1, 1)
    assert state["blocked_until"] is None
    assert configured.status_code == 200
    assert emu.config.rate_limit_requests == 11
    assert reset.status_code == 200
    assert emu.customers() == []
    assert emu.token_refresh_count == 0
    assert emu.request_log == []
    assert emu.config.rate_limit_requests == 11


@pytest.mark.parametrize(
    "changes", [{"no_such_setting": 1}, {"rate_limit_requests": 0}, ["not", "an", "object"]]
)
def test_control_config_rejects_bad_changes(
    emu: ZohoEmulator, http: requests.Session, changes: Any
) -> None:
    response = http.post(f"{emu.url}/__emulator__/config", json=changes, timeout=5)

    assert response.status_code == 400
    assert "error" in response.json()
    assert emu.config == EmulatorConfig()


def test_control_state_shows_a_block(emu: ZohoEmulator, http: requests.Session) -> None:
    emu.block_for(30)

    state = http.get(f"{emu.url}/__emulator__/state", timeout=5).json()

    assert state["blocked_until"] == pytest.approx(time.time() + 30, abs=2)


# Random faults


def statuses(api: requests.Session, emu: ZohoEmulator, count: int) -> list[int]:
    """Send `count` list requests one at a time; 0 stands for a closed connection."""
    answers = []
    for _ in range(count):
        try:
            answers.append(call(api, emu, "GET", "/customers").status_code)
        except requests.ConnectionError:
            answers.append(0)
    return answers


def test_random_faults_repeat_with_the_same_seed(emu: ZohoEmulator, api: requests.Session) -> None:
    kinds = ("error", "html_error", "rate_limit", "drop")
    emu.inject_random(0.5, kinds, seed=42)
    first = statuses(api, emu, 30)
    emu.inject_random(0.5, kinds, seed=42)
    second = statuses(api, emu, 30)
    emu.inject_random(0.5, kinds, seed=43)
    other = statuses(api, emu, 30)

    assert first == second
    assert other != first
    assert set(first) == {200, 500, 502, 429, 0}


def test_random_rate_zero_gives_no_fault(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.inject_random(0.0, seed=1)

    assert statuses(api, emu, 20) == [200] * 20
    assert emu.fault_counts == {}


def test_random_rate_one_faults_every_request_and_the_counts_add_up(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.inject_random(1.0, seed=7, delay=0.01)

    answers = statuses(api, emu, 60)

    counts = emu.fault_counts
    assert set(counts) == {"error", "html_error", "slow", "drop", "lose_response", "rate_limit"}
    assert sum(counts.values()) == len(emu.request_log) == 60
    assert answers.count(500) == counts["error"]
    assert answers.count(502) == counts["html_error"]
    assert answers.count(429) == counts["rate_limit"]
    assert answers.count(0) == counts["drop"] + counts["lose_response"]
    # A slow answer is a good one, only late.
    assert answers.count(200) == counts["slow"]
    assert emu.blocked_until is None


def test_random_faults_act_like_injected_ones(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.inject_random(1.0, ("lose_response",))
    with pytest.raises(requests.ConnectionError):
        create(api, emu)
    emu.inject_random(1.0, ("slow",), delay=0.3)
    with pytest.raises(requests.Timeout):
        call(api, emu, "POST", "/customers", json={**ACME, "email": "slow@acme.test"}, timeout=0.1)
    emu.inject_random(1.0, ("rate_limit",))
    limited = create(api, emu, email="limited@acme.test")

    assert limited.status_code == 429
    assert limited.json()["code"] == 44
    assert limited.headers["Retry-After"] == "1"
    wait_for(lambda: len(emu.customers()) == 2, "the customer to be stored", timeout=2)
    assert [c["email"] for c in emu.customers()] == ["billing@acme.test", "slow@acme.test"]
    assert emu.fault_counts == {"lose_response": 1, "slow": 1, "rate_limit": 1}


def test_random_faults_spare_the_token_endpoint(emu: ZohoEmulator, http: requests.Session) -> None:
    emu.inject_random(1.0, ("error", "drop"))

    token = request_token(http, emu)

    assert token.status_code == 200
    assert "access_token" in token.json()
    assert emu.fault_counts == {}


def test_clear_faults_and_reset_stop_random_faults(
    emu: ZohoEmulator, api: requests.Session
) -> None:
    emu.inject_random(1.0, ("error",))
    before = statuses(api, emu, 2)
    emu.clear_faults()
    after_clear = statuses(api, emu, 2)
    counts_after_clear = emu.fault_counts
    emu.inject_random(1.0, ("error",))
    emu.reset()

    assert before == [500, 500]
    assert after_clear == [200, 200]
    assert counts_after_clear == {"error": 2}
    assert emu.fault_counts == {}
    token = request_token(api, emu).json()["access_token"]
    api.headers["Authorization"] = f"Zoho-oauthtoken {token}"
    assert statuses(api, emu, 2) == [200, 200]


def test_injected_faults_are_counted_too(emu: ZohoEmulator, api: requests.Session) -> None:
    emu.inject("error", times=2)
    emu.inject("token_throttle")

    statuses(api, emu, 3)
    request_token(api, emu)

    assert emu.fault_counts == {"error": 2, "token_throttle": 1}


@pytest.mark.parametrize(
    ("rate", "kinds", "delay"),
    [(1.5, ("error",), 1.0), (-0.1, ("error",), 1.0), (0.5, (), 1.0), (0.5, ("boom",), 1.0)]
    + [(0.5, ("token_throttle",), 1.0), (0.5, ("slow",), -1.0)],
)
def test_inject_random_rejects_bad_settings(
    emu: ZohoEmulator, rate: float, kinds: tuple[str, ...], delay: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        emu.inject_random(rate, kinds, delay=delay)


def test_control_faults_endpoint_turns_random_faults_on_and_off(
    emu: ZohoEmulator, api: requests.Session, http: requests.Session
) -> None:
    url = f"{emu.url}/__emulator__/faults"
    armed = http.post(url, json={"random_rate": 1, "kinds": ["error"], "seed": 1}, timeout=5)
    faulted = statuses(api, emu, 2)
    state = http.get(f"{emu.url}/__emulator__/state", timeout=5).json()
    cleared = http.post(url, json={"clear": True}, timeout=5)

    assert armed.status_code == 200
    assert armed.json()["random_faults"] == {"rate": 1.0, "kinds": ["error"], "delay": 1.0}
    assert faulted == [500, 500]
    assert state["fault_counts"] == {"error": 2}
    assert state["random_faults"]["rate"] == 1.0
    assert cleared.json() == {
        "random_faults": {"rate": 0.0, "kinds": [], "delay": 1.0},
        "fault_counts": {"error": 2},
    }
    assert statuses(api, emu, 1) == [200]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"random_rate": 2},
        {"random_rate": 0.5, "kinds": "error"},
        {"random_rate": 0.5, "seed": "x"},
        {"random_rate": 0.5, "colour": "red"},
        ["clear"],
    ],
)
def test_control_faults_endpoint_rejects_bad_bodies(
    emu: ZohoEmulator, http: requests.Session, body: Any
) -> None:
    response = http.post(f"{emu.url}/__emulator__/faults", json=body, timeout=5)

    assert response.status_code == 400
    assert "error" in response.json()
    assert http.get(f"{emu.url}/__emulator__/state", timeout=5).json()["random_faults"]["rate"] == 0
