"""The customer record: its full Zoho shape, the list subset, validated merging of a JSON body."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from zoho_emulator.errors import invalid_value

MAX_DISPLAY_NAME = 200
MAX_EMAIL = 100
VAT_REG_NO_LENGTHS = range(2, 13)
CURRENCY_ID = "6179546000000000097"

REQUIRED_FIELDS = ("display_name", "email")
TEXT_FIELDS = (
    "salutation",
    "first_name",
    "last_name",
    "company_name",
    "phone",
    "mobile",
    "department",
    "designation",
    "website",
    "twitter",
    "facebook",
    "skype",
    "notes",
    "payment_terms_label",
    "currency_code",
)
FLAG_FIELDS = ("is_portal_enabled", "ach_supported")
ADDRESS_KINDS = ("billing_address", "shipping_address")
# The spec's address object: a body's other keys (e.g. `street2`) are ignored.
ADDRESS_FIELDS = (
    "attention",
    "street",
    "city",
    "state",
    "zip",
    "country",
    "state_code",
    "fax",
)
# The spec's list item: a subset without custom fields or addresses.
LIST_FIELDS = (
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
)

Record = dict[str, Any]


def timestamp(now: float) -> str:
    """Format a time.time() value the way Zoho does: `2026-01-05T10:00:00+0000` (UTC here)."""
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


def blank_record(customer_id: str, now: float) -> Record:
    """Return a full customer record with Zoho's defaults: empty strings, never nulls."""
    stamp = timestamp(now)
    return {
        "customer_id": customer_id,
        "display_name": "",
        "salutation": "",
        "first_name": "",
        "last_name": "",
        "email": "",
        "tags": [],
        "company_name": "",
        "phone": "",
        "mobile": "",
        "website": "",
        "is_portal_enabled": False,
        "department": "",
        "designation": "",
        "billing_address": _blank_address(),
        "shipping_address": _blank_address(),
        "currency_code": "USD",
        "currency_id": CURRENCY_ID,
        "currency_symbol": "$",
        "ach_supported": False,
        "twitter": "",
        "facebook": "",
        "skype": "",
        "notes": "",
        "vat_reg_no": "",
        "price_precision": 2,
        "unused_credits": 0,
        "outstanding": 0,
        "status": "active",
        "custom_fields": [],
        "zcrm_account_id": "",
        "zcrm_contact_id": "",
        "updated_time": stamp,
        "created_time": stamp,
        "source": "api",
        "payment_terms": 0,
        "payment_terms_label": "Due on receipt",
        "is_linked_with_zohocrm": False,
        "primary_contactperson_id": "",
        "can_add_card": True,
        "can_add_bank_account": True,
        "default_templates": {"invoice_template_id": "", "creditnote_template_id": ""},
        "documents": [],
        "is_gapps_customer": False,
        "has_attachment": False,
        "payment_reminder_enabled": True,
    }


def list_item(record: Record) -> Record:
    """Return the subset of a record that `GET /customers` shows."""
    return {name: copy.deepcopy(record[name]) for name in LIST_FIELDS}


def shown_record(record: Record, *, vat: bool) -> Record:
    """Return a copy of a full record as the organization answers it.

    Without VAT in the organization's edition, the record has no `vat_reg_no` at all.
    """
    shown = copy.deepcopy(record)
    if not vat:
        del shown["vat_reg_no"]
    return shown


def merged_record(
    record: Record, body: dict[str, Any], *, creating: bool, vat: bool = True
) -> Record:
    """Return a copy of `record` with the body's known fields applied; raise ApiError (code 2).

    Unknown and read-only fields are ignored, and so is `custom_fields` (see custom_fields.py).
    On create, display_name and email are required. Without `vat`, `vat_reg_no` is ignored too.
    """
    if creating:
        for name in REQUIRED_FIELDS:
            if name not in body:
                raise invalid_value(name)
    updated = copy.deepcopy(record)
    if "display_name" in body:
        updated["display_name"] = _required_text(
            "display_name", body["display_name"], MAX_DISPLAY_NAME
        )
    if "email" in body:
        updated["email"] = _email(body["email"])
    _apply_simple_fields(updated, body)
    if vat and "vat_reg_no" in body:
        updated["vat_reg_no"] = _vat_reg_no(body["vat_reg_no"])
    for kind in ADDRESS_KINDS:
        if kind in body:
            updated[kind] = _merged_address(kind, updated[kind], body[kind])
    return updated


def _blank_address() -> dict[str, str]:
    return dict.fromkeys(ADDRESS_FIELDS, "")


def _apply_simple_fields(record: Record, body: dict[str, Any]) -> None:
    for name in TEXT_FIELDS:
        if name in body:
            record[name] = text_value(name, body[name])
    for name in FLAG_FIELDS:
        if name in body:
            if not isinstance(body[name], bool):
                raise invalid_value(name)
            record[name] = body[name]
    if "payment_terms" in body:
        terms = body["payment_terms"]
        if isinstance(terms, bool) or not isinstance(terms, int) or terms < 0:
            raise invalid_value("payment_terms")
        record["payment_terms"] = terms


def text_value(name: str, value: object, max_length: int | None = None) -> str:
    """Return a body value as Zoho stores text: stripped, None as ""; raise ApiError (code 2)."""
    # Zoho's own examples send phone numbers and zips as bare numbers; store them as strings.
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid_value(name)
    text = str(value).strip()
    if max_length is not None and len(text) > max_length:
        raise invalid_value(name)
    return text


def _required_text(name: str, value: object, max_length: int) -> str:
    text = text_value(name, value, max_length)
    if not text:
        raise invalid_value(name)
    return text


def _email(value: object) -> str:
    email = _required_text("email", value, MAX_EMAIL)
    if not is_plausible_email(email):
        raise invalid_value("email")
    return email


def _vat_reg_no(value: object) -> str:
    # The spec: "length should be between 2 and 12 characters"; "" (or null) clears it.
    number = text_value("vat_reg_no", value)
    if number and len(number) not in VAT_REG_NO_LENGTHS:
        raise invalid_value("vat_reg_no")
    return number


def is_plausible_email(email: str) -> bool:
    """True for one `@`, a non-empty local part, a dotted domain and no whitespace."""
    if any(char.isspace() for char in email) or email.count("@") != 1:
        return False
    local, domain = email.split("@")
    return bool(local) and "." in domain.strip(".") and not domain.startswith(".")


def _merged_address(kind: str, current: dict[str, str], value: object) -> dict[str, str]:
    if value is None:
        return current
    if not isinstance(value, dict):
        raise invalid_value(kind)
    merged = dict(current)
    for name in ADDRESS_FIELDS:
        if name in value:
            merged[name] = text_value(f"{kind}.{name}", value[name])
    return merged
