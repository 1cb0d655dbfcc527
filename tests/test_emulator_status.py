"""Marking customers active and inactive, and customers whose subscriptions keep them active."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.helpers import ACME, NOT_AUTHORIZED, NOT_FOUND_ANSWERS, ZohoClock, call
from zoho_emulator import ZohoEmulator

SCOPE = "ZohoSubscriptions.customers."
MARKED = {
    "markasinactive": {"code": 0, "message": "The customer has been marked as inactive."},
    "markasactive": {"code": 0, "message": "The customer has been marked as active."},
}
HAS_SUBSCRIPTIONS = {
    "code": 3063,
    "message": "The customer cannot be marked as inactive as it has active subscriptions.",
}


def mark(
    api: requests.Session, emulator: ZohoEmulator, customer_id: str, action: str
) -> requests.Response:
    return call(api, emulator, "POST", f"/customers/{customer_id}/{action}")


def listed(api: requests.Session, emulator: ZohoEmulator, filter_by: str) -> list[str]:
    response = call(api, emulator, "GET", "/customers", params={"filter_by": filter_by})
    assert response.status_code == 200
    return [item["display_name"] for item in response.json()["customers"]]


def read(api: requests.Session, emulator: ZohoEmulator, customer_id: str) -> dict[str, Any]:
    return call(api, emulator, "GET", f"/customers/{customer_id}").json()["customer"]


def zoho_time(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


def test_mark_inactive_then_active_sets_status_and_updated_time(
    emulator: ZohoEmulator, api: requests.Session, zoho_clock: ZohoClock
) -> None:
    customer = emulator.add_customer(**ACME)
    emulator.add_customer(display_name="Other", email="other@acme.test")

    zoho_clock.advance(90)
    inactive = mark(api, emulator, customer["customer_id"], "markasinactive")
    after_inactive = read(api, emulator, customer["customer_id"])
    lists_inactive = (
        listed(api, emulator, "Status.Inactive"),
        listed(api, emulator, "Status.Active"),
    )
    zoho_clock.advance(90)
    active = mark(api, emulator, customer["customer_id"], "markasactive")
    after_active = read(api, emulator, customer["customer_id"])
    lists_active = listed(api, emulator, "Status.Inactive"), listed(api, emulator, "Status.Active")

    assert (inactive.status_code, inactive.json()) == (200, MARKED["markasinactive"])
    assert after_inactive["status"] == "inactive"
    assert after_inactive["updated_time"] == zoho_time(zoho_clock.now - 90)
    assert after_inactive["created_time"] == customer["created_time"]
    assert lists_inactive == (["Acme Ltd"], ["Other"])
    assert (active.status_code, active.json()) == (200, MARKED["markasactive"])
    assert after_active["status"] == "active"
    assert after_active["updated_time"] == zoho_time(zoho_clock.now)
    assert lists_active == ([], ["Acme Ltd", "Other"])
    assert emulator.customers()[0] == after_active


@pytest.mark.parametrize(
    ("status", "action"), [("inactive", "markasinactive"), ("active", "markasactive")]
)
def test_marking_a_customer_as_it_already_is_succeeds(
    emulator: ZohoEmulator, api: requests.Session, status: str, action: str
) -> None:
    customer_id = emulator.add_customer(**ACME, status=status)["customer_id"]

    answers = [mark(api, emulator, customer_id, action) for _ in range(2)]

    assert [(answer.status_code, answer.json()) for answer in answers] == [
        (200, MARKED[action])
    ] * 2
    assert read(api, emulator, customer_id)["status"] == status


@pytest.mark.parametrize(
    ("action", "before", "after"),
    [("markasinactive", "active", "inactive"), ("markasactive", "inactive", "active")],
)
def test_status_changes_need_the_create_scope(
    emulator: ZohoEmulator, api: requests.Session, action: str, before: str, after: str
) -> None:
    customer_id = emulator.add_customer(**ACME, status=before)["customer_id"]

    emulator.configure(scopes=(SCOPE + "READ", SCOPE + "UPDATE"))
    refused = mark(api, emulator, customer_id, action)
    status_when_refused = emulator.customers()[0]["status"]
    emulator.configure(scopes=(SCOPE + "CREATE",))
    allowed = mark(api, emulator, customer_id, action)

    assert (refused.status_code, refused.json()) == (401, NOT_AUTHORIZED)
    assert status_when_refused == before
    assert (allowed.status_code, allowed.json()) == (200, MARKED[action])
    assert emulator.customers()[0]["status"] == after


@pytest.mark.parametrize("action", ["markasinactive", "markasactive"])
@pytest.mark.parametrize(("style", "status", "error"), NOT_FOUND_ANSWERS)
def test_marking_an_unknown_customer_follows_the_not_found_style(
    emulator: ZohoEmulator,
    api: requests.Session,
    action: str,
    style: str,
    status: int,
    error: dict[str, Any],
) -> None:
    emulator.configure(not_found_style=style)

    response = mark(api, emulator, "6179546000009999999", action)

    assert response.status_code == status
    assert response.json() == error


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("action", ["markasinactive", "markasactive"])
def test_status_routes_take_only_post(
    emulator: ZohoEmulator, api: requests.Session, method: str, action: str
) -> None:
    customer_id = emulator.add_customer(**ACME, status="inactive")["customer_id"]

    response = call(api, emulator, method, f"/customers/{customer_id}/{action}", json={})

    assert response.status_code == 405
    assert response.json()["code"] == 37
    assert emulator.customers()[0]["status"] == "inactive"


# Customers with an active subscription


def test_a_subscribed_customer_cannot_be_marked_inactive(
    emulator: ZohoEmulator, api: requests.Session, zoho_clock: ZohoClock
) -> None:
    subscribed = emulator.add_customer(**ACME)
    free = emulator.add_customer(display_name="Free", email="free@acme.test")
    emulator.configure(active_subscription_emails=("Billing@ACME.test",))

    zoho_clock.advance(90)
    refused = mark(api, emulator, subscribed["customer_id"], "markasinactive")
    allowed = mark(api, emulator, free["customer_id"], "markasinactive")
    reactivated = mark(api, emulator, subscribed["customer_id"], "markasactive")

    assert (refused.status_code, refused.json()) == (400, HAS_SUBSCRIPTIONS)
    assert (allowed.status_code, allowed.json()) == (200, MARKED["markasinactive"])
    assert (reactivated.status_code, reactivated.json()) == (200, MARKED["markasactive"])
    after = emulator.customers()
    assert [customer["status"] for customer in after] == ["active", "inactive"]
    assert after[1]["updated_time"] == zoho_time(zoho_clock.now)
    assert emulator.request_log[0].code == 3063


def test_subscription_emails_set_over_the_control_endpoint_refuse_deactivation(
    emulator: ZohoEmulator, api: requests.Session, http: requests.Session
) -> None:
    customer_id = emulator.add_customer(**ACME)["customer_id"]

    configured = http.post(
        f"{emulator.url}/__emulator__/config",
        json={"active_subscription_emails": ["billing@acme.test"]},
        timeout=5,
    )
    refused = mark(api, emulator, customer_id, "markasinactive")

    assert configured.status_code == 200
    assert configured.json()["config"]["active_subscription_emails"] == ["billing@acme.test"]
    assert (refused.status_code, refused.json()) == (400, HAS_SUBSCRIPTIONS)
    assert read(api, emulator, customer_id)["status"] == "active"


def test_non_subscribers_filter_leaves_out_subscribed_customers(
    emulator: ZohoEmulator, api: requests.Session
) -> None:
    emulator.add_customer(**ACME)
    emulator.add_customer(display_name="Free", email="free@acme.test")

    everyone = listed(api, emulator, "Status.NonSubscribers")
    emulator.configure(active_subscription_emails=("billing@acme.test",))
    non_subscribers = listed(api, emulator, "Status.NonSubscribers")

    assert everyone == ["Acme Ltd", "Free"]
    assert non_subscribers == ["Free"]
