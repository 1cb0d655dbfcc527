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
A held refusal's final attempt is written once its fault is known (`HeldRefusals.end_held`):
the customer's data (invalid), the organization's (failed, saying why the run stops), or not
known by the end of the run (failed, to be retried).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncStatus
from billing_sync.run.audit import RunAttempts, describe, set_ended
from billing_sync.run.claims import Claims, unclaimed
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
# Said of a refusal that named nothing of the customer's, while its fault is not known.
RETRIED_NOTE = (
    "; Zoho named none of this customer's fields, so it is retried: if Zoho refuses other "
    "customers the same way, the organization is refusing creates"
)


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

    def break_streak(self) -> None:
        """A create ended otherwise: the refusals are no longer in a row."""
        self._answer, self._in_a_row = None, 0

    def take_held(self) -> list[tuple[int, SyncAttempt, SyncStatus]]:
        """The refusals held so far, no longer held."""
        held, self.held = self.held, []
        return held


class HeldRefusals:
    """The refusals one run holds until their fault is known; then their final attempts are
    written, once, with the changes to their customers' rows."""

    def __init__(self, attempts: RunAttempts, claims: Claims) -> None:
        self.attempts = attempts
        self.claims = claims
        self.streak = RefusalStreak()

    def hold(
        self, customer: Customer, attempt: SyncAttempt, error: ZohoInvalidData, left_as: SyncStatus
    ) -> None:
        """A refusal that named nothing of the customer's: the customer is let go retryable
        (`left_as`), its final attempt held. On a streak the organization is refusing: every
        refusal held ends saying why the run stops, and SystemicRefusal is raised."""
        self.claims.release(customer, left_as, describe(error) + RETRIED_NOTE)
        set_ended(attempt, AttemptOutcome.FAILED, final=True, error=error)
        try:
            self.streak.hold(customer, attempt, error, left_as)
        except SystemicRefusal as stop:
            why = str(stop)
            held = list(self.streak.held)

            def say_why() -> None:
                for customer_id, _, status in held:
                    unclaimed([customer_id], status).update(zoho_last_error=why)

            self.end_held(AttemptOutcome.FAILED, message=why, rows=say_why)
            raise

    def were_their_own(self) -> None:
        """Zoho created a customer after refusing others: those refusals were about their data."""
        self.streak.break_streak()
        held = list(self.streak.held)
        if not held:
            return

        def need_attention() -> None:
            for customer_id, attempt, status in held:
                unclaimed([customer_id], status).update(
                    zoho_sync_status=SyncStatus.NEEDS_ATTENTION,
                    zoho_last_error=attempt.error_message,
                )

        self.end_held(AttemptOutcome.INVALID, rows=need_attention)

    def end_held(
        self,
        outcome: AttemptOutcome,
        *,
        message: str = "",
        rows: Callable[[], None] | None = None,
    ) -> None:
        """Write the final attempts of the refusals held, now that their fault is known: the
        customer's data (invalid), or not known by the end of the run (failed, to be retried),
        or the organization's (`message`: why the run stops); `rows`' changes to their rows
        in the same transaction. They stay held until that is written."""
        held = [attempt for _, attempt, _ in self.streak.held]
        if not held:
            return
        for attempt in held:
            said = attempt.error_message.removesuffix(RETRIED_NOTE)
            attempt.outcome = outcome
            if message:
                attempt.error_message = message
            elif outcome == AttemptOutcome.FAILED:
                attempt.error_message = said + RETRIED_NOTE
            else:
                attempt.error_message = said
        self.attempts.write(held, also=rows)
        self.streak.take_held()
