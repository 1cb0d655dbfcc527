"""Whose fault a refused create is: this customer's data, or the organization's.

Zoho answers both with HTTP 400 and a code we may never have seen, so the wording cannot
decide it. What decides it is what the request carried and whether the refusal repeats:
- an answer that names one of the fields we sent (or one of this customer's values) is about
  this customer: a person must fix the record (`needs_attention`);
- an answer that names the custom field carrying our account number is about the
  organization's set-up: the run stops at once;
- any other refusal is held: the customer is left retryable (`failed`, or `synced` when Zoho
  holds it already and only our edit was refused), and its fate waits for evidence.
  When creates of REFUSAL_STREAK different customers in a row are refused with the same code
  and message, the organization is refusing (a plan limit, a setting): the run stops and the
  customers stay retryable. When Zoho creates another customer after refusing this one, the
  refusal was about this customer after all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from billing_sync.models import Customer, SyncAttempt, SyncStatus
from billing_sync.run.stops import SystemicRefusal
from billing_sync.zoho.errors import CUSTOM_FIELD_CODES, ZohoInvalidData

REFUSAL_STREAK = 3
# Zoho codes that are about one record's data (3062: the display name is taken).
CUSTOMER_DATA_CODES = {3062}
# How Zoho may spell the fields we send, in a message.
FIELD_WORDS = (
    "display_name",
    "display name",
    "email",
    "e-mail",
    "first_name",
    "first name",
    "last_name",
    "last name",
    "company_name",
    "company name",
    "phone",
)
CUSTOM_FIELD_WORDS = ("custom field", "custom_field", "customfield")
# Values shorter than this say nothing about whom a message is about.
MIN_VALUE_LENGTH = 3


def names_account_field(exc: ZohoInvalidData, *, account_field: str) -> bool:
    """Whether a refusal is about the custom field that carries our account number."""
    text = exc.message.casefold()
    return (
        exc.code in CUSTOM_FIELD_CODES
        or account_field.casefold() in text
        or any(word in text for word in CUSTOM_FIELD_WORDS)
    )


def names_customer(exc: ZohoInvalidData, customer: Customer) -> bool:
    """Whether a refusal names a field we sent, or one of this customer's own values."""
    if exc.code in CUSTOMER_DATA_CODES:
        return True
    text = exc.message.casefold()
    values = (customer.email, customer.display_name, customer.company_name, customer.phone)
    return any(word in text for word in FIELD_WORDS) or any(
        len(value.strip()) >= MIN_VALUE_LENGTH and value.strip().casefold() in text
        for value in values
    )


@dataclass
class RefusalStreak:
    """Refusals held in one run, waiting for evidence of whose fault they are."""

    threshold: int = REFUSAL_STREAK
    # (customer id, its attempt, the status it was left with) of each refusal held.
    held: list[tuple[int, SyncAttempt, SyncStatus]] = field(default_factory=list)
    _answer: tuple[object, object, str] | None = None
    _in_a_row: int = 0

    def hold(
        self, customer: Customer, attempt: SyncAttempt, exc: ZohoInvalidData, left_as: SyncStatus
    ) -> None:
        """Hold a refusal that named nothing of ours; raise SystemicRefusal on a streak."""
        answer = (exc.status, exc.code, exc.message)
        self._in_a_row = self._in_a_row + 1 if answer == self._answer else 1
        self._answer = answer
        self.held.append((customer.pk, attempt, left_as))
        if self._in_a_row >= self.threshold:
            raise SystemicRefusal(exc, customers=self._in_a_row)

    def interrupt(self) -> None:
        """A create ended otherwise: the refusals are no longer in a row."""
        self._answer, self._in_a_row = None, 0

    def take_held(self) -> list[tuple[int, SyncAttempt, SyncStatus]]:
        """The refusals held so far, no longer held."""
        held, self.held = self.held, []
        return held
