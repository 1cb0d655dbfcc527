"""Parsed Zoho records: the few fields the sync relies on, as frozen dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def email_key(email: str) -> str:
    """An email as Zoho compares it (trimmed, case-insensitive): equal keys, the same email."""
    return email.strip().lower()


@dataclass(frozen=True)
class ZohoCustomer:
    """A customer as Zoho holds it.

    `account_number` is None when unknown: list results leave custom fields out, so only a
    full record (`is_full`) tells whether the customer carries one.
    """

    customer_id: str
    display_name: str
    email: str
    account_number: str | None
    is_full: bool
    created_time: str = ""  # as Zoho wrote it; read with `created_at`
    custom_field_labels: tuple[str, ...] = ()
    first_name: str = ""
    last_name: str = ""
    company_name: str = ""
    phone: str = ""
    # "active" or "inactive" ("" when the answer does not say).
    status: str = ""
    # The parts of `billing_address` we send; None when the answer carries no address (a list
    # item).
    billing_address: dict[str, str] | None = dataclasses.field(default=None, hash=False)
    # None when the answer carries no `vat_reg_no` (a list item, or an edition without VAT).
    vat_reg_no: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any], *, account_field: str) -> ZohoCustomer:
        """Parse a customer node from a list item or a full record."""
        custom_fields = data.get("custom_fields")
        return cls(
            customer_id=str(data["customer_id"]),
            display_name=str(data.get("display_name") or ""),
            email=str(data.get("email") or ""),
            account_number=_custom_field(custom_fields, account_field),
            is_full=custom_fields is not None,
            created_time=str(data.get("created_time") or ""),
            first_name=str(data.get("first_name") or ""),
            last_name=str(data.get("last_name") or ""),
            company_name=str(data.get("company_name") or ""),
            phone=str(data.get("phone") or ""),
            status=str(data.get("status") or ""),
            billing_address=_address(data.get("billing_address")),
            vat_reg_no=None if "vat_reg_no" not in data else str(data["vat_reg_no"] or ""),
            custom_field_labels=tuple(
                str(field.get("label", "")) for field in custom_fields or () if field.get("label")
            ),
        )

    @property
    def created_at(self) -> datetime | None:
        """When Zoho created the customer, or None when it did not say (parsed on demand)."""
        return parse_zoho_time(self.created_time)


def parse_zoho_time(value: object) -> datetime | None:
    """A Zoho timestamp ("2016-06-05T02:30:08-0700", in the organization's time zone) as an
    aware datetime, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


# The parts of Zoho's `billing_address` we send (no street2: Zoho's document has none).
ADDRESS_PARTS = ("attention", "street", "city", "state", "zip", "country")


def _address(node: object) -> dict[str, str] | None:
    if not isinstance(node, dict):
        return None
    return {part: str(node.get(part) or "").strip() for part in ADDRESS_PARTS}


def _custom_field(fields: list[dict[str, Any]] | None, label: str) -> str | None:
    for field in fields or ():
        if str(field.get("label", "")).strip().lower() == label.lower():
            value = str(field.get("value") or "").strip()
            return value or None
    return None


@dataclass(frozen=True)
class CustomerPage:
    """One page of Zoho's customer list."""

    customers: list[ZohoCustomer]
    has_more_page: bool
    # The order Zoho says it applied ("A" or "D"), when it says.
    sort_order: str | None = None
