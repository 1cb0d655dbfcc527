"""What we send Zoho for a customer, and the checks it must pass before we send it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from billing_sync.models import ZOHO_DATA_FIELDS, AccountStatus, Customer
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
# Zoho's `vat_reg_no` takes 2 to 12 characters (its document); a blank one is not sent.
VAT_NUMBER_LENGTHS = (2, 12)
# The free-text fields we send (the account status is one of two words).
TEXT_FIELDS = tuple(name for name in ZOHO_DATA_FIELDS if name != "account_status")
# Zoho's name for each of our fields that differ (the rest keep theirs).
ZOHO_NAMES = {"custom_fields": "account_number", "vat_reg_no": "vat_number"}


@dataclass(frozen=True, slots=True)
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
    return problems + _billing_problems(customer)


def _billing_problems(customer: Customer) -> list[FieldProblem]:
    problems = []
    vat_number = customer.vat_number.strip()
    shortest, longest = VAT_NUMBER_LENGTHS
    if vat_number and not shortest <= len(vat_number) <= longest:
        problems.append(
            FieldProblem(
                "vat_number",
                f"{len(vat_number)} characters, Zoho accepts {shortest} to {longest}",
            )
        )
    if customer.account_status not in AccountStatus.values:
        problems.append(
            FieldProblem(
                "account_status",
                f"{customer.account_status!r} is not one of {', '.join(AccountStatus.values)}",
            )
        )
    return problems


def customer_validation_errors(customer: Customer) -> list[str]:
    """Every reason Zoho would refuse this customer, as "field: reason"; empty when fine."""
    return [str(problem) for problem in customer_field_problems(customer)]


def customer_zoho_fields(customer: Customer, *, account_field: str) -> dict[str, Any]:
    """Every field we own in Zoho, as we hold it (blank ones too, but a blank VAT number):
    what Zoho must show, and what an update sends. The account status is not among them: it
    is Zoho's status, set by its own requests (`zoho_status`)."""
    fields: dict[str, Any] = {
        "display_name": customer.display_name,
        "email": customer.email.strip(),
        "first_name": customer.first_name.strip(),
        "last_name": customer.last_name.strip(),
        "company_name": customer.company_name.strip(),
        "phone": customer.phone.strip(),
        "billing_address": billing_address(customer),
        "custom_fields": [account_number_field(customer, account_field=account_field)],
    }
    if customer.vat_number.strip():
        fields["vat_reg_no"] = customer.vat_number.strip()
    return fields


def billing_address(customer: Customer) -> dict[str, str]:
    """Our billing address as Zoho's `billing_address` takes it: Zoho's document gives it one
    street, so a second line joins the first on a line of its own."""
    street = "\n".join(
        line for line in (customer.billing_street.strip(), customer.billing_street2.strip()) if line
    )
    return {
        "attention": customer.billing_attention.strip(),
        "street": street,
        "city": customer.billing_city.strip(),
        "state": customer.billing_state.strip(),
        "zip": customer.billing_zip.strip(),
        "country": customer.billing_country.strip(),
    }


def zoho_status(customer: Customer) -> str:
    """The status Zoho must hold for this customer: a closed account is inactive."""
    return "inactive" if customer.account_status == AccountStatus.CLOSED else "active"


def customer_zoho_payload(customer: Customer, *, account_field: str) -> dict[str, Any]:
    """The create body for Zoho: the fields we own that have a value."""
    fields = customer_zoho_fields(customer, account_field=account_field)
    return {name: value for name, value in fields.items() if _has_value(value)}


def _has_value(value: Any) -> bool:
    if isinstance(value, dict):
        return any(value.values())
    return bool(value)


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
    if zoho_customer.billing_address is not None:
        held["billing_address"] = zoho_customer.billing_address
    if zoho_customer.is_full:
        value = zoho_customer.account_number or ""
        held["custom_fields"] = [{"label": account_field, "value": value}]
        held["vat_reg_no"] = (zoho_customer.vat_reg_no or "").strip()
    return held


def fields_that_differ(ours: dict[str, Any], held: dict[str, Any]) -> list[str]:
    """Our names of the fields Zoho holds otherwise than we do (`account_number`,
    `vat_number`, the address's `billing_street`...); fields Zoho's answer does not carry (a
    list item's) are not compared."""
    differ = []
    for name, value in held.items():
        if name == "billing_address":
            differ += _address_parts_that_differ(ours[name], value)
        elif ours.get(name, "") != value:  # a blank VAT number is not among ours
            differ.append(ZOHO_NAMES.get(name, name))
    return sorted(differ, key=_FIELD_ORDER.index)


def _address_parts_that_differ(ours: dict[str, str], held: dict[str, str]) -> list[str]:
    return [f"billing_{part}" for part, value in ours.items() if held.get(part, "") != value]


# Our fields in the order people read them (the name Zoho shows first).
_FIELD_ORDER = ("display_name", *ZOHO_DATA_FIELDS)


def address_not_kept(customer: Customer, answer: ZohoCustomer) -> list[tuple[str, str, str]]:
    """The parts of our billing address Zoho's answer holds otherwise than we sent them:
    (our field, sent, held); an answer without an address holds none of ours."""
    held = answer.billing_address or {}
    return [
        (f"billing_{part}", value, held.get(part, ""))
        for part, value in billing_address(customer).items()
        if held.get(part, "") != value
    ]


def vat_number_kept(customer: Customer, answer: ZohoCustomer) -> bool:
    """Whether Zoho's answer carries our VAT number back as sent (true when we send none)."""
    ours = customer.vat_number.strip()
    return not ours or (answer.vat_reg_no or "").strip() == ours
