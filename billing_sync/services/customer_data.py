"""What we send Zoho for a customer, and the checks it must pass before we send it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from billing_sync.models import Customer

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


def customer_validation_errors(customer: Customer) -> list[str]:
    """Every reason Zoho would refuse this customer, each naming the field; empty when fine."""
    errors = [
        f"{name}: contains a NUL byte" for name in TEXT_FIELDS if "\x00" in getattr(customer, name)
    ]
    if errors:
        return errors
    email = customer.email.strip()
    if not email:
        errors.append("email: is blank")
    else:
        try:
            validate_email(email)
        except ValidationError:
            errors.append(f"email: {email!r} is not a valid email address")
    for name, limit in MAX_LENGTHS.items():
        value = getattr(customer, name).strip()
        if len(value) > limit:
            errors.append(f"{name}: {len(value)} characters, Zoho accepts at most {limit}")
    display_name = customer.display_name
    if not display_name:
        errors.append("name: first_name, last_name and company_name are all blank")
    elif len(display_name) > DISPLAY_NAME_MAX:
        errors.append(f"name: display name over {DISPLAY_NAME_MAX} characters")
    if not customer.account_number.strip():
        errors.append("account_number: is blank")
    return errors


def customer_zoho_payload(customer: Customer, *, account_field: str) -> dict[str, Any]:
    """The create body for Zoho: names, contact details and our account number."""
    payload: dict[str, Any] = {
        "display_name": customer.display_name,
        "email": customer.email.strip(),
        "first_name": customer.first_name.strip(),
        "last_name": customer.last_name.strip(),
        "company_name": customer.company_name.strip(),
        "phone": customer.phone.strip(),
    }
    payload = {key: value for key, value in payload.items() if value}
    payload["custom_fields"] = [account_number_field(customer, account_field=account_field)]
    return payload


def account_number_field(customer: Customer, *, account_field: str) -> dict[str, str]:
    """The custom field that carries our account number in Zoho."""
    return {"label": account_field, "value": customer.account_number}


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
