"""Parsed Zoho records: the few fields the sync relies on, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
        )


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
    page: int
    has_more_page: bool
