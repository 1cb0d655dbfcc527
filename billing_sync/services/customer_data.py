"""What we send Zoho for a customer, and the checks it must pass before we send it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from billing_sync.models import Customer
from billing_sync.zoho.records import ZohoCustomer

# Zoho's limits (its customer form and API refuse longer values).
MAX_LENGTHS = {
    "email": 100,
    "first_name": 100,
    "last_name": 100,
    "company_name": 200,
    "phone": 50,
}
DISPLAY_NAME_MAX = 200
TEXT_FIELDS = ("email", "account_number", "first_name", "last_name", "company_name", "phone")


@dataclass(frozen=True)
class FieldProblem:
    """Why Zoho would refuse one field of a customer (`field` "name": the display name)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def customer_field_problems(customer: Customer) -> list[FieldProblem]:
    """Every reason Zoho would refuse this customer, each naming the field; empty when fine."""
    problems = [
        FieldProblem(name, "contains a NUL byte")
        for name in TEXT_FIELDS
        if "\x00" in getattr(customer, name)
    ]
    if problems:
        return problems
    email = customer.email.strip()
    if not email:
        problems.append(FieldProblem("email", "is blank"))
    else:
        try:
            validate_email(email)
        except ValidationError:
            problems.append(FieldProblem("email", f"{email!r} is not a valid email address"))
    for name, limit in MAX_LENGTHS.items():
        value = getattr(customer, name).strip()
        if len(value) > limit:
            problems.append(
                FieldProblem(name, f"{len(value)} characters, Zoho accepts at most {limit}")
            )
    display_name = customer.display_name
    if not display_name:
        problems.append(
            FieldProblem("name", "first_name, last_name and company_name are all blank")
        )
    elif len(display_name) > DISPLAY_NAME_MAX:
        problems.append(FieldProblem("name", f"display name over {DISPLAY_NAME_MAX} characters"))
    if not customer.account_number.strip():
        problems.append(FieldProblem("account_number", "is blank"))
    return problems


def customer_validation_errors(customer: Customer) -> list[str]:
    """Every reason Zoho would refuse this customer, as "field: reason"; empty when fine."""
    return [str(problem) for problem in customer_field_problems(customer)]


def customer_zoho_fields(customer: Customer, *, account_field: str) -> dict[str, Any]:
    """Every field we own in Zoho, as we hold it (blank ones too): what Zoho must show."""
    return {
        "display_name": customer.display_name,
        "email": customer.email.strip(),
        "first_name": customer.first_name.strip(),
        "last_name": customer.last_name.strip(),
        "company_name": customer.company_name.strip(),
        "phone": customer.phone.strip(),
        "custom_fields": [account_number_field(customer, account_field=account_field)],
    }


def customer_zoho_payload(customer: Customer, *, account_field: str) -> dict[str, Any]:
    """The create body for Zoho: the fields we own that have a value."""
    fields = customer_zoho_fields(customer, account_field=account_field)
    return {name: value for name, value in fields.items() if value}


def zoho_fields_hash(fields: dict[str, Any]) -> str:
    """A fingerprint of the fields we own, to tell whether Zoho already holds them."""
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def account_number_field(customer: Customer, *, account_field: str) -> dict[str, str]:
    """The custom field that carries our account number in Zoho."""
    return {"label": account_field, "value": customer.account_number.strip()}


def account_number_update(
    customer: Customer, *, display_name: str, email: str, account_field: str
) -> dict[str, Any]:
    """An update that writes our account number into a Zoho customer, changing nothing else.

    Zoho's document requires display_name and email on every update: send the ones it holds.
    """
    return {
        "display_name": display_name,
        "email": email,
        "custom_fields": [account_number_field(customer, account_field=account_field)],
    }


def zoho_held_fields(zoho_customer: ZohoCustomer, *, account_field: str) -> dict[str, Any]:
    """The fields we own as Zoho holds them, in the shape of `customer_zoho_fields`.

    From a list item (no custom fields), the account number is left out: only a full record
    says what it carries.
    """
    held: dict[str, Any] = {
        "display_name": zoho_customer.display_name.strip(),
        "email": zoho_customer.email.strip(),
        "first_name": zoho_customer.first_name.strip(),
        "last_name": zoho_customer.last_name.strip(),
        "company_name": zoho_customer.company_name.strip(),
        "phone": zoho_customer.phone.strip(),
    }
    if zoho_customer.is_full:
        value = zoho_customer.account_number or ""
        held["custom_fields"] = [{"label": account_field, "value": value}]
    return held


def fields_that_differ(ours: dict[str, Any], held: dict[str, Any]) -> list[str]:
    """The names of the fields Zoho holds otherwise than we do (the account number as
    `account_number`); fields Zoho's answer does not carry are not compared."""
    differ = []
    for name, value in held.items():
        if ours.get(name) != value:
            differ.append("account_number" if name == "custom_fields" else name)
    return differ
