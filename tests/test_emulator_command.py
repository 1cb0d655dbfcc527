"""`manage.py zoho_emulator` serves a working emulator in the foreground until interrupted."""

from __future__ import annotations

import io

import pytest
import requests
from django.core.management import CommandError, call_command

from tests.helpers import ACME, ORG_HEADER, TOKEN_PARAMS
from tests.processes import interrupt, start_emulator_command
from zoho_emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_ORGANIZATION_ID,
    EMULATOR_REFRESH_TOKEN,
)


@pytest.mark.django_db
def test_emulator_command_serves_until_interrupted(settings):
    emulator = start_emulator_command()
    process, url = emulator.process, emulator.url
    try:
        settings.ZOHO_CLIENT_ID = EMULATOR_CLIENT_ID
        settings.ZOHO_CLIENT_SECRET = EMULATOR_CLIENT_SECRET
        settings.ZOHO_REFRESH_TOKEN = EMULATOR_REFRESH_TOKEN
        settings.ZOHO_ORGANIZATION_ID = EMULATOR_ORGANIZATION_ID
        settings.ZOHO_ACCOUNTS_URL = url
        settings.ZOHO_API_BASE_URL = url + "/billing/v1"

        out = io.StringIO()
        call_command("zoho_check_credentials", stdout=out)

        assert "Read customers: organization answered" in out.getvalue()
    finally:
        rest = interrupt(process)
    assert process.returncode == 0
    assert "Stopping the emulator." in rest


def test_emulator_command_applies_and_announces_the_behaviour_options():
    options = [
        *("--organization-error", "6041", "--organization-error-status", "403"),
        *("--scopes", "ZohoSubscriptions.customers.READ, ZohoSubscriptions.customers.CREATE"),
        *("--custom-field-labels", "Account Number,Region", "--unknown-custom-field", "refuse"),
        *("--number-custom-fields", "Customer Number", "--refuse-creates"),
        *("--list-lag-seconds", "0.5", "--email-filter-ignored", "--sort-ignored"),
        *("--token-delay-seconds", "0.25", "--vat-reg-no-dropped"),
        *("--active-subscription-emails", "billing@acme.test, Ops@Acme.test"),
    ]
    emulator = start_emulator_command(*options)
    try:
        config = requests.get(f"{emulator.url}/__emulator__/state", timeout=5).json()["config"]
    finally:
        interrupt(emulator.process)
    announcement = emulator.announcement
    assert config["organization_error"] == "6041"
    assert config["organization_error_status"] == 403
    assert config["scopes"] == [
        "ZohoSubscriptions.customers.READ",
        "ZohoSubscriptions.customers.CREATE",
    ]
    assert config["custom_field_labels"] == ["Account Number", "Region"]
    assert config["unknown_custom_field"] == "refuse"
    assert config["number_custom_fields"] == ["Customer Number"]
    assert config["refuse_creates"] is True
    assert config["list_lag_seconds"] == 0.5
    assert config["email_filter_ignored"] is True
    assert config["sort_ignored"] is True
    assert config["token_delay_seconds"] == 0.25
    assert config["vat_reg_no_dropped"] is True
    assert config["active_subscription_emails"] == ["billing@acme.test", "Ops@Acme.test"]
    assert "organization_error=6041" in announcement
    assert "custom_field_labels=Account Number,Region" in announcement
    assert "refuse_creates=True" in announcement
    assert "token_delay_seconds=0.25" in announcement
    assert "vat_reg_no_dropped=True" in announcement
    assert "active_subscription_emails=billing@acme.test,Ops@Acme.test" in announcement


def test_emulator_command_options_switch_vat_and_subscriptions_on():
    emulator = start_emulator_command(
        "--vat-reg-no-dropped", "--active-subscription-emails", "billing@acme.test"
    )
    try:
        with requests.Session() as api:
            token_url = f"{emulator.url}/oauth/v2/token"
            token = api.post(token_url, data=TOKEN_PARAMS, timeout=5).json()["access_token"]
            api.headers.update(
                {"Authorization": f"Zoho-oauthtoken {token}", ORG_HEADER: EMULATOR_ORGANIZATION_ID}
            )
            customers = f"{emulator.url}/billing/v1/customers"
            created = api.post(customers, json={**ACME, "vat_reg_no": "1"}, timeout=5)
            customer_id = created.json()["customer"]["customer_id"]
            refused = api.post(f"{customers}/{customer_id}/markasinactive", timeout=5)
    finally:
        interrupt(emulator.process)
    assert created.status_code == 201
    assert "vat_reg_no" not in created.json()["customer"]
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        "The customer cannot be marked as inactive as it has active subscriptions."
    )


@pytest.mark.parametrize(
    "options",
    [
        ["--organization-error", "57"],
        ["--organization-error-status", "500"],
        ["--unknown-custom-field", "ignore"],
        ["--list-lag-seconds", "-1"],
        ["--token-delay-seconds", "-1"],
        ["--custom-field-labels", "A", "--list-lag-seconds", "x"],
        ["--vat-reg-no-dropped", "yes"],
    ],
)
def test_emulator_command_rejects_bad_behaviour_options(options):
    with pytest.raises(CommandError):
        call_command("zoho_emulator", "--port", "0", *options)
