"""Checking the Zoho settings end to end and saying exactly what is wrong, without secrets."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from billing_sync.operations.notify import service_name, url_problems
from billing_sync.run.selection import customers_syncable
from billing_sync.run.stops import account_field_fix
from billing_sync.zoho.client import ZohoClient
from billing_sync.zoho.config import DATA_CENTERS, REQUIRED_SETTINGS, config_problems, zoho_config
from billing_sync.zoho.errors import ZohoAuthError, ZohoError
from billing_sync.zoho.records import CustomerPage, ZohoCustomer
from billing_sync.zoho.state import current_api_state


@dataclass(frozen=True)
class CheckLine:
    """One finding: ok, wrong, or (ok None) something the check cannot tell."""

    ok: bool | None
    text: str

    @property
    def failed(self) -> bool:
        return self.ok is False


def zoho_credentials_check() -> list[CheckLine]:
    """Check every setting, refresh a token and make one read; stop at the first failure."""
    lines = [_setting_line(name) for name in REQUIRED_SETTINGS] + _alert_url_lines()
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
            line, page = _read_line(client)
            lines.append(line)
            if page is not None:
                field_line, record = _account_field_line(client, page)
                lines += [field_line, _vat_number_line(record), CheckLine(None, NOT_CHECKED)]
    finally:
        client.close()
    return lines


def _alert_url_lines() -> list[CheckLine]:
    """Whether each of ZOHO_ALERT_URLS parses as an Apprise URL (named by its service only)."""
    urls = settings.ZOHO_ALERT_URLS
    if not urls:
        return []
    problems = url_problems(urls)
    if problems:
        return [CheckLine(False, problem) for problem in problems]
    services = ", ".join(service_name(url) for url in urls)
    return [CheckLine(True, f"ZOHO_ALERT_URLS: {len(urls)} notification service(s) ({services})")]


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


def _read_line(client: ZohoClient) -> tuple[CheckLine, CustomerPage | None]:
    try:
        page = client.list_customers(per_page=1)
    except ZohoAuthError as exc:
        return CheckLine(
            False,
            f"Read customers: Zoho refused a fresh token ({exc}); the token may lack the "
            "ZohoSubscriptions.customers.READ scope or belong to another data center",
        ), None
    except ZohoError as exc:
        return CheckLine(False, f"Read customers: {exc}"), None
    more = " (and more)" if page.has_more_page else ""
    return CheckLine(
        True, f"Read customers: organization answered ({len(page.customers)} on page 1{more})"
    ), page


NOT_CHECKED = (
    "Not checked: the CREATE and UPDATE scopes (that needs a write); the first create tells, "
    "and a run stops at once (exit 2) if Zoho refuses it or its answer lacks the account number "
    "or the VAT number"
)


def _account_field_line(
    client: ZohoClient, page: CustomerPage
) -> tuple[CheckLine, ZohoCustomer | None]:
    """Does the organization keep our account number in the custom field? As far as reads tell;
    with the customer record read to tell it, if any.

    Zoho Billing has no API that lists custom fields: read a customer we linked (it must carry
    our account number as we sent it), else any customer (the field shows on its record).
    """
    label = client.config.account_number_field
    linked = (
        customers_syncable()
        .filter(zoho_billing_customer_id__isnull=False)
        .order_by("-zoho_last_synced_at")
        .first()
    )
    try:
        if linked is not None:
            record = client.get_customer(linked.zoho_billing_customer_id)
            return _linked_field_line(label, record, linked.account_number), record
        if not page.customers:
            return CheckLine(
                None,
                f"Custom field {label!r}: cannot tell, the organization has no customer to read "
                "it from (Zoho Billing has no API that lists custom fields)",
            ), None
        record = client.get_customer(page.customers[0].customer_id)
    except ZohoError as exc:
        return CheckLine(
            None, f"Custom field {label!r}: cannot tell, reading a customer failed: {exc}"
        ), None
    seen = [known.casefold() for known in record.custom_field_labels]
    if label.casefold() in seen:
        return CheckLine(
            True,
            f"Custom field {label!r} exists (on Zoho customer {record.customer_id}); whether it "
            "keeps our account numbers exactly is checked by the first create",
        ), record
    others = ", ".join(repr(known) for known in record.custom_field_labels) or "none"
    return CheckLine(
        None,
        f"Custom field {label!r}: cannot tell, Zoho customer {record.customer_id} does not carry "
        f"it (its custom fields: {others}); it may hold no value there, or the field is missing or "
        f"named otherwise. {account_field_fix(label)}",
    ), record


def _vat_number_line(record: ZohoCustomer | None) -> CheckLine:
    """Does the organization keep VAT numbers? Zoho keeps `vat_reg_no` only where VAT applies
    (its edition), which no API names: a customer's record shows the field, or not."""
    if record is None:
        return CheckLine(None, "VAT numbers: cannot tell, no customer record could be read")
    if record.vat_reg_no is None:
        return CheckLine(
            None,
            f"VAT numbers: Zoho customer {record.customer_id}'s record carries no vat_reg_no: the "
            "organization may not be VAT registered (Zoho keeps VAT numbers only where VAT "
            "applies: Settings > Taxes). A run that sends a VAT number stops (exit 2) if Zoho's "
            "answer does not carry it back",
        )
    return CheckLine(
        True,
        f"VAT numbers: Zoho customer {record.customer_id}'s record carries vat_reg_no (the "
        "organization has VAT); each answer is checked to carry ours back",
    )


def _linked_field_line(label: str, record: ZohoCustomer, account_number: str) -> CheckLine:
    if record.account_number == account_number.strip():
        return CheckLine(
            True,
            f"Custom field {label!r} keeps our account numbers (Zoho customer "
            f"{record.customer_id} carries {account_number})",
        )
    found = f"carries {record.account_number!r}" if record.account_number else "carries none"
    return CheckLine(
        False,
        f"Custom field {label!r}: Zoho customer {record.customer_id}, linked to our "
        f"{account_number}, {found}. {account_field_fix(label)}; then `zoho_verify --deep`",
    )
