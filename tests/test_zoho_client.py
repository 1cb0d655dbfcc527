"""The Zoho client over HTTP: OAuth, headers, the error family, secrets kept out of logs."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_sync.models import ZohoApiState
from billing_sync.zoho.client import ZohoClient, session_for
from billing_sync.zoho.config import zoho_config
from billing_sync.zoho.errors import (
    ZohoAuthError,
    ZohoConfigError,
    ZohoError,
    ZohoInvalidData,
    ZohoNotFound,
    ZohoOrganizationError,
    ZohoRateLimited,
    ZohoTokenThrottled,
    ZohoTransient,
    ZohoUnreachable,
    ZohoUnreachableTooLong,
    error_from_response,
)

pytestmark = pytest.mark.django_db
ORG = ZohoOrganizationError


def new_client() -> ZohoClient:
    """A client as a fresh process would build it."""
    return ZohoClient(zoho_config(), max_wait=0)


def test_token_is_shared_between_clients_and_refreshed_once(emulator):
    new_client().list_customers()
    new_client().list_customers()
    new_client().list_customers()

    assert emulator.token_refresh_count == 1


def test_token_is_refreshed_shortly_before_it_expires(emulator):
    new_client().list_customers()
    ZohoApiState.objects.update(token_expires_at=timezone.now() + timedelta(seconds=60))

    new_client().list_customers()
    new_client().list_customers()

    assert emulator.token_refresh_count == 2


def test_rejected_token_is_refreshed_once_and_the_call_succeeds(emulator):
    client = new_client()
    client.list_customers()
    emulator.revoke_access_tokens()

    client.list_customers()

    assert emulator.token_refresh_count == 2
    assert [r.status for r in emulator.request_log] == [200, 401, 200]


def test_auth_failure_after_refresh_fails_loudly(emulator, settings):
    new_client().list_customers()
    emulator.revoke_access_tokens()
    settings.ZOHO_REFRESH_TOKEN = "1000.revoked-refresh-token"

    with pytest.raises(ZohoAuthError, match="ZOHO_REFRESH_TOKEN is invalid"):
        new_client().list_customers()


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("ZOHO_CLIENT_ID", "1000.unknown", "does not know ZOHO_CLIENT_ID"),
        ("ZOHO_CLIENT_SECRET", "wrong-secret", "ZOHO_CLIENT_SECRET is wrong"),
        ("ZOHO_REFRESH_TOKEN", "1000.wrong", "ZOHO_REFRESH_TOKEN is invalid"),
    ],
)
def test_token_errors_name_the_setting(emulator, settings, setting, value, expected):
    setattr(settings, setting, value)

    with pytest.raises(ZohoAuthError, match=expected):
        new_client().list_customers()


def test_token_endpoint_throttle_is_its_own_error(emulator):
    emulator.inject("token_throttle", times=1)

    with pytest.raises(ZohoTokenThrottled, match="Access Denied"):
        new_client().list_customers()


def test_wrong_organization_is_a_config_error(emulator, settings):
    settings.ZOHO_ORGANIZATION_ID = "123"

    with pytest.raises(ZohoConfigError, match="ZOHO_ORGANIZATION_ID"):
        new_client().list_customers()


@pytest.mark.parametrize(
    ("kind", "status", "error_class"),
    [
        ("error", 500, ZohoTransient),
        ("error", 503, ZohoTransient),
        ("html_error", 502, ZohoTransient),
        ("drop", 500, ZohoTransient),
        ("rate_limit", 429, ZohoRateLimited),
    ],
)
def test_faults_become_the_right_error(emulator, kind, status, error_class):
    emulator.inject(kind, status=status, times=1)

    with pytest.raises(error_class):
        new_client().list_customers()


def test_slow_answer_times_out_as_transient(emulator, settings):
    settings.ZOHO_TIMEOUT_SECONDS = 0.2
    emulator.inject("slow", delay=0.5, times=1)

    with pytest.raises(ZohoTransient, match="did not answer in time") as caught:
        new_client().list_customers()

    assert caught.value.request_sent


def test_unreachable_server_is_waited_for_then_named_never_sent(emulator, settings):
    settings.ZOHO_API_BASE_URL = "http://127.0.0.1:9/billing/v1"
    new_client().tokens.get_token()

    with pytest.raises(ZohoUnreachableTooLong, match="127.0.0.1:9: connection refused") as caught:
        new_client().list_customers()

    assert isinstance(caught.value.__context__, ZohoUnreachable)
    assert not caught.value.__context__.request_sent


@pytest.mark.parametrize("style", ["400/3004", "404/1002"])
def test_unknown_customer_is_not_found_in_both_styles(emulator, style):
    emulator.configure(not_found_style=style)

    with pytest.raises(ZohoNotFound):
        new_client().get_customer("6179546000000999999")


def test_invalid_data_is_its_own_error(emulator):
    with pytest.raises(ZohoInvalidData, match="email"):
        new_client().create_customer({"display_name": "No Email"})


def test_list_gives_no_account_number_and_get_does(emulator):
    created = new_client().create_customer(
        {
            "display_name": "Ann",
            "email": "ann@example.co.za",
            "custom_fields": [{"label": "Account Number", "value": "CT-1"}],
        }
    )
    assert created.account_number == "CT-1"

    (listed,) = new_client().list_customers().customers
    assert (listed.is_full, listed.account_number) == (False, None)
    assert new_client().get_customer(listed.customer_id).account_number == "CT-1"


def test_pages_are_followed(emulator):
    for n in range(5):
        emulator.add_customer(display_name=f"C{n}", email=f"c{n}@example.co.za")
    client = new_client()

    pages = [client.list_customers(page=p, per_page=2) for p in (1, 2, 3)]
    everyone = list(new_client().iter_customers())

    assert [len(p.customers) for p in pages] == [2, 2, 1]
    assert [p.has_more_page for p in pages] == [True, True, False]
    assert len(everyone) == 5


def test_find_by_email_ignores_case(emulator):
    emulator.add_customer(display_name="A", email="Mixed.Case@Example.co.za")
    emulator.add_customer(display_name="B", email="other@example.co.za")

    found = new_client().find_customers_by_email("mixed.case@example.co.za")

    assert [c.display_name for c in found] == ["A"]


@pytest.mark.parametrize(
    ("method", "status", "body", "error_class"),
    [
        ("GET", 429, {"code": 45, "message": "daily"}, ZohoRateLimited),
        ("POST", 429, {"code": 1070, "message": "concurrency"}, ZohoRateLimited),
        ("GET", 401, {"code": 57, "message": "no"}, ZohoAuthError),
        ("GET", 400, {"code": 3004, "message": "ref"}, ZohoNotFound),
        # The organization, in each of its known forms, whatever the request carried.
        ("GET", 400, {"code": 2, "message": "Invalid value passed for organization_id"}, ORG),
        ("POST", 400, {"code": 6041, "message": "not associated with the CompanyID"}, ORG),
        ("GET", 401, {"code": 9017, "message": "not associated with any organization"}, ORG),
        ("PUT", 403, {"code": 7, "message": "not a user of this organization"}, ORG),
        # A request without customer data is never refused for a customer's fault.
        ("GET", 200, {"code": 9, "message": "odd"}, ZohoConfigError),
        ("GET", 418, {"code": 7, "message": "teapot"}, ZohoConfigError),
        ("GET", 400, {"code": 2, "message": "Invalid value passed for email"}, ZohoConfigError),
        # A create's refusal is for the caller to place; "success" with an error is unknown.
        ("POST", 400, {"code": 2, "message": "Invalid value passed for email"}, ZohoInvalidData),
        ("POST", 200, {"code": 9, "message": "odd"}, ZohoTransient),
        ("POST", 418, {"code": 7, "message": "teapot"}, ZohoError),
        # Bodies that are not Zoho's JSON.
        ("POST", 400, None, ZohoTransient),
        ("POST", 201, None, ZohoTransient),
        ("GET", 502, None, ZohoTransient),
        ("GET", 403, None, ZohoConfigError),
    ],
)
def test_classification_by_what_the_request_carried_code_and_status(
    method, status, body, error_class
):
    error = error_from_response(status, body, method=method, path="/customers", retry_after="12")

    assert type(error) is error_class
    if isinstance(error, ZohoRateLimited):
        assert error.retry_after == 12
        assert error.kind == {45: "daily", 1070: "concurrency"}[body["code"]]


def test_success_is_code_zero_with_2xx():
    assert (
        error_from_response(201, {"code": 0, "message": "x"}, method="POST", path="/customers")
        is None
    )


def test_secrets_never_reach_logs_or_errors(emulator, settings, caplog):
    caplog.set_level(logging.DEBUG)
    client = new_client()
    client.list_customers()
    token = ZohoApiState.objects.get().access_token
    settings.ZOHO_CLIENT_SECRET = "wrong-secret-value"
    emulator.revoke_access_tokens()
    with pytest.raises(ZohoAuthError) as caught:
        new_client().list_customers()

    text = caplog.text + str(caught.value) + repr(zoho_config())
    for secret in (token, "wrong-secret-value", settings.ZOHO_REFRESH_TOKEN):
        assert secret not in text


def test_one_keep_alive_connection_serves_the_token_and_every_call(emulator):
    client = new_client()
    for _ in range(5):
        client.list_customers()
    client.close()

    assert emulator.connections_opened == 1
    assert len(emulator.request_log) == 5


@pytest.mark.parametrize(
    ("data_center", "accounts", "api"),
    [
        ("com", "https://accounts.zoho.com", "https://www.zohoapis.com/billing/v1"),
        ("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu/billing/v1"),
        ("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca/billing/v1"),
        ("com.au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au/billing/v1"),
    ],
)
def test_data_center_picks_both_hosts(settings, data_center, accounts, api):
    settings.ZOHO_CLIENT_ID = "id"
    settings.ZOHO_CLIENT_SECRET = "secret"
    settings.ZOHO_REFRESH_TOKEN = "refresh"
    settings.ZOHO_ORGANIZATION_ID = "1"
    settings.ZOHO_ACCOUNTS_URL = ""
    settings.ZOHO_API_BASE_URL = ""
    settings.ZOHO_DATA_CENTER = data_center

    config = zoho_config()

    assert (config.accounts_url, config.api_base_url) == (accounts, api)


API_URL = "https://www.zohoapis.com/billing/v1"


def test_session_takes_the_proxy_and_ca_bundle_from_the_environment(monkeypatch, tmp_path):
    bundle = tmp_path / "company-ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.circletel.invalid:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    session = session_for(API_URL)

    assert session.proxies["https"] == "http://proxy.circletel.invalid:3128"
    assert session.verify == str(bundle)
    # Read once: a change to the environment later does not reach a session already made.
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.invalid:8080")
    assert session.proxies["https"] == "http://proxy.circletel.invalid:3128"


def test_session_goes_direct_where_no_proxy_says_so(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.circletel.invalid:3128")
    monkeypatch.setenv("NO_PROXY", ".zohoapis.com")

    assert "https" not in session_for(API_URL).proxies
