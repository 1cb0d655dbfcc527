"""Checking the Zoho settings end to end and saying exactly what is wrong, without secrets."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import DATA_CENTERS, REQUIRED_SETTINGS, config_problems, zoho_config
from billing_sync.zoho.errors import ZohoAuthError, ZohoConfigError, ZohoError
from billing_sync.zoho.pacing import current_api_state


@dataclass(frozen=True)
class CheckLine:
    """One finding: ok or not, and what it says."""

    ok: bool
    text: str


def zoho_credentials_check() -> list[CheckLine]:
    """Check every setting, refresh a token and make one read; stop at the first failure."""
    lines = [_setting_line(name) for name in REQUIRED_SETTINGS]
    problems = config_problems()
    lines += [CheckLine(False, problem) for problem in problems if "is not set" not in problem]
    if problems:
        return lines
    config = zoho_config()
    lines.append(CheckLine(True, f"Data center {config.data_center}"))
    lines.append(CheckLine(True, f"Accounts server {config.accounts_url}"))
    lines.append(CheckLine(True, f"API base {config.api_base_url}"))
    client = ZohoClient(config, max_wait=0)
    try:
        lines += _token_lines(client)
        if lines[-1].ok:
            lines.append(_read_line(client))
    finally:
        client.close()
    return lines


def _setting_line(name: str) -> CheckLine:
    value = getattr(settings, name)
    if not value:
        return CheckLine(False, f"{name} is not set")
    if name == "ZOHO_ORGANIZATION_ID":
        return CheckLine(True, f"{name} = {value}")
    return CheckLine(True, f"{name} is set ({len(value)} characters)")


def _token_lines(client: ZohoClient) -> list[CheckLine]:
    try:
        client.tokens.replace_rejected(client.tokens.get_token())
    except ZohoError as exc:
        return [CheckLine(False, f"Token refresh: {exc}")]
    lines = [CheckLine(True, "Token refresh: Zoho issued an access token")]
    mismatch = _data_center_mismatch(client)
    if mismatch:
        lines.append(CheckLine(False, mismatch))
    return lines


def _data_center_mismatch(client: ZohoClient) -> str:
    """Zoho's token names the API host of the account's data center; compare with ours."""
    state = current_api_state()
    api_domain = state.api_domain if state else ""
    if not api_domain or settings.ZOHO_API_BASE_URL:
        return ""
    expected = DATA_CENTERS[client.config.data_center].api
    if urlsplit(api_domain).hostname != urlsplit(expected).hostname:
        return (
            f"The token belongs to {api_domain}, but ZOHO_DATA_CENTER={client.config.data_center} "
            f"sends requests to {expected}: set ZOHO_DATA_CENTER to the account's data center"
        )
    return ""


def _read_line(client: ZohoClient) -> CheckLine:
    try:
        page = client.list_customers(per_page=1)
    except ZohoConfigError as exc:
        return CheckLine(False, f"Read customers: {exc}")
    except ZohoAuthError as exc:
        return CheckLine(
            False,
            f"Read customers: Zoho refused a fresh token ({exc}); the token may lack the "
            "ZohoSubscriptions.customers.READ scope or belong to another data center",
        )
    except ZohoError as exc:
        return CheckLine(False, f"Read customers: {exc}")
    more = " (and more)" if page.has_more_page else ""
    return CheckLine(
        True, f"Read customers: organization answered ({len(page.customers)} on page 1{more})"
    )
