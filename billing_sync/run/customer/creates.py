"""The creates: each one's intent written before it goes out, its sending, and Zoho's answers
written together with their group.

A group's creates that are sure to go (its customers surely new) have their intents written
ahead, in two statements (`IntentsAhead`); one not written ahead gets its own when it goes
(acting.py). A create is sent by `send_create`, which says on the customer's row whether its
outcome is known. What Zoho answered is held and written a group at a time (`AnsweredCreates`).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_sync.customer_data import customer_validation_errors, customer_zoho_payload
from billing_sync.models import AccountStatus, AttemptOutcome, Customer, SyncAttempt, SyncStatus
from billing_sync.run.audit import RunAttempts, describe, set_ended
from billing_sync.run.claims import Claims, InStep
from billing_sync.run.customer.matching import ZohoCustomerFinder
from billing_sync.zoho.client import BeforeSending, ZohoClient
from billing_sync.zoho.errors import ZohoError, ZohoTransient
from billing_sync.zoho.records import ZohoCustomer


class IntentsAhead:
    """The intents a group's creates have on record before any of them goes out."""

    def __init__(self, attempts: RunAttempts, claims: Claims, finder: ZohoCustomerFinder) -> None:
        self.attempts = attempts
        self.steps = attempts.steps
        self.claims = claims
        self.finder = finder
        # Intents on record whose create has not gone out yet, by customer id.
        self._written: dict[int, tuple[Customer, SyncAttempt]] = {}

    def write(self, customers: list[Customer]) -> None:
        """Write in one INSERT and one UPDATE the intents of the creates this group will surely
        send: valid customers with no earlier create in doubt, absent from Zoho by the index.

        Each gets its "sending" attempt and its create-sent mark before any of them goes out,
        as one at a time would; `CustomerSync.sync` then sends its create without writing either
        again.
        """
        new = [customer for customer in customers if self._surely_new(customer)]
        if len(new) < 2:
            return
        attempts = [self.attempts.begin(customer) for customer in new]

        def write() -> None:
            try:
                with transaction.atomic():  # both or neither: the step may be taken again
                    self.attempts.open_all(attempts)
                    self.claims.set_creates_sent(new, timezone.now())
            except BaseException:
                for customer, attempt in zip(new, attempts, strict=True):
                    attempt.pk = None
                    customer.zoho_create_sent_at = None
                raise

        self.steps.take(write)
        for customer, attempt in zip(new, attempts, strict=True):
            self._written[customer.pk] = (customer, attempt)

    def take(self, customer: Customer) -> SyncAttempt | None:
        """The attempt of the customer's intent written ahead (its create is going now), if any."""
        written = self._written.pop(customer.pk, None)
        return None if written is None else written[1]

    def drop(self) -> None:
        """The run stops: intents written ahead whose create never went out are undone."""
        if not self._written:
            return
        customers, attempts = zip(*self._written.values(), strict=True)

        def undo() -> None:
            with transaction.atomic():
                self.attempts.withdraw(list(attempts))
                self.claims.set_creates_sent(list(customers), None)

        self.steps.take(undo)
        self._written.clear()

    def _surely_new(self, customer: Customer) -> bool:
        """Whether the customer's create will surely go: its data valid, its account open, no
        earlier create in doubt, and surely absent from Zoho by the run's index."""
        return (
            customer.zoho_create_sent_at is None
            and customer.account_status != AccountStatus.CLOSED
            and not customer_validation_errors(customer)
            and self.finder.surely_absent(customer)
        )


def send_create(
    customer: Customer,
    *,
    client: ZohoClient,
    claims: Claims,
    account_field: str,
    before_sending: BeforeSending = None,
) -> ZohoCustomer:
    """Send the create, whose intent (attempt and create-sent mark) is on record.

    A refusal clears the mark: nothing was created. Any answer but "created, here it is" or
    a refusal leaves the outcome unknown: Zoho may have committed the record before failing,
    and its search may lag behind; the mark is restamped, so the look in Zoho waits
    ZOHO_CREATE_SETTLE_SECONDS from now. (A created customer's mark is cleared when it is
    written with its group.)
    """
    payload = customer_zoho_payload(customer, account_field=account_field)
    try:
        return client.create_customer(payload, before_sending=before_sending)
    except ZohoTransient as error:
        claims.set_create_sent(customer, timezone.now() if error.request_sent else None)
        raise
    except ZohoError:
        # A clear refusal (or the organization's block): Zoho did not create it.
        claims.set_create_sent(customer, None)
        raise


# A create Zoho answered: the customer, its attempt, its Zoho id, the data Zoho holds.
Answered = tuple[Customer, SyncAttempt, str, InStep | None]


class AnsweredCreates:
    """Creates Zoho has answered, written to the database together: two statements a group.

    Each finishes its attempt `created` (audit.py) and links its customer (claims.py). Written
    at the end of each group, before any wait, and before a stopped run lets go of what it
    holds. Should the process die before, each such customer still carries its create-sent
    mark and its "sending" attempt: the next run takes it over, finds it in Zoho and adopts it.
    """

    def __init__(self, claims: Claims, attempts: RunAttempts) -> None:
        self.claims = claims
        self.attempts = attempts
        self._answered: list[Answered] = []

    def add(
        self,
        customer: Customer,
        attempt: SyncAttempt,
        zoho_customer_id: str,
        in_step: InStep | None,
    ) -> None:
        """Zoho created `customer` as `zoho_customer_id` in `attempt`, holding `in_step` (None:
        not all of ours)."""
        self._answered.append((customer, attempt, zoho_customer_id, in_step))

    def write(self) -> None:
        """Write the answered creates (taken again whole after a lost database), then report
        them (as written). Kept until written: a run that stops meanwhile still has them."""
        if not self._answered:
            return
        answered, self._answered = self._answered, []
        try:
            self._write_all(answered)
        except IntegrityError:  # a Zoho id already linked elsewhere: find which, one by one
            for entry in answered:
                self._write_one(entry)
        except BaseException:
            self._answered = answered + self._answered
            raise

    def _write_all(self, answered: list[Answered]) -> None:
        now = timezone.now()
        for _, attempt, zoho_id, _ in answered:
            set_ended(
                attempt, AttemptOutcome.CREATED, when=now, final=True, zoho_customer_id=zoho_id
            )
        linked = {customer.pk: (zoho_id, in_step) for customer, _, zoho_id, in_step in answered}
        self.attempts.write(
            [attempt for _, attempt, _, _ in answered],
            also=lambda: self.claims.mark_many_synced(linked, now),
        )

    def _write_one(self, entry: Answered) -> None:
        customer, attempt, zoho_id, _ = entry
        try:
            self._write_all([entry])
        except IntegrityError as error:
            why = describe(error)
            failed = set_ended(
                attempt, AttemptOutcome.FAILED, final=True, error=error, zoho_customer_id=zoho_id
            )
            self.attempts.write(
                [failed], also=lambda: self.claims.release(customer, SyncStatus.FAILED, why)
            )
