"""The audit trail: every attempt at a customer is one `SyncAttempt` row, written through here.

An attempt begins "sending" and unsaved (`RunAttempts.begin`); it is saved (`open`, or a
group's at once: `open_all`) before the first request that belongs to it goes out, so a crash
mid-request leaves it on record, and one whose request never went out is deleted (`withdraw`);
it ends once, with its outcome: `set_ended` sets how on the object, `write` writes attempts so
set (with the customer rows that go with them), `finish` does both for one. Once written, the
final ones are reported (`report`). Rows outlive their customer: email and account number are
copied onto them. The verbs are in docs/glossary.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict, Unpack

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_sync.database import DatabaseSteps
from billing_sync.models import AttemptOutcome, Customer, SyncAttempt, SyncRun, SyncRunStatus
from billing_sync.run.claims import value_by_pk

FINISHED_FIELDS = [
    "outcome",
    "finished_at",
    "zoho_customer_id",
    "error_message",
    "http_status",
    "zoho_code",
    "waiting_until",
    "final",
]


class RunAttempts:
    """Writes one run's attempts, the one way: each is begun for its customer, put on record
    ("sending") before its first request to Zoho goes out (`open`), and finished once.

    A finished attempt is `final` when it is how its customer ended in the run; once such a
    row is written, `on_final` hears of it: the run's output is read from these rows, never
    from what the run meant to write. Where a group's attempts go together, they are written
    together (`open_all`, `write`): a few statements a group instead of one a customer. Every
    write is a step of the run's `steps`: a lost database is waited for and the write taken
    again, whole (an attempt and the customer's row it goes with are one transaction).
    """

    def __init__(
        self,
        run: SyncRun,
        steps: DatabaseSteps,
        *,
        on_final: Callable[[SyncAttempt], None] | None = None,
    ) -> None:
        self.run = run
        self.steps = steps
        self.on_final = on_final or _ignore
        # Called before final attempts are reported: writes (and so reports) what is held
        # back to be written together, so customers are reported in the order they ended.
        self.before_report: Callable[[], None] = _nothing
        self._reported: set[int] = set()

    def begin(self, customer: Customer) -> SyncAttempt:
        """An attempt at `customer`, not on record yet."""
        return SyncAttempt(
            run=self.run,
            customer=customer,
            customer_email=customer.email[:254],
            account_number=customer.account_number[:32],
            outcome=AttemptOutcome.SENDING,
        )

    def open(self, attempt: SyncAttempt) -> None:
        """A request of this attempt is about to go out: the attempt must be on record first."""
        if attempt.pk is None:
            self.steps.take(lambda: self._write_together([attempt]))

    def open_all(self, attempts: list[SyncAttempt]) -> None:
        """Put several attempts on record in one statement, in the caller's transaction; each
        gets its primary key (PostgreSQL and SQLite 3.35+ return them)."""
        SyncAttempt.objects.bulk_create(attempts)

    def withdraw(self, attempts: list[SyncAttempt]) -> None:
        """Attempts opened ahead whose request never went out were not attempts."""
        SyncAttempt.objects.filter(pk__in=[attempt.pk for attempt in attempts]).delete()

    def finish(
        self, attempt: SyncAttempt, outcome: AttemptOutcome, **how: Unpack[Ending]
    ) -> SyncAttempt:
        """Set how an attempt ended (`set_ended`), and write it."""
        self.write([set_ended(attempt, outcome, **how)])
        return attempt

    def write(self, attempts: list[SyncAttempt], *, also: Callable[[], None] | None = None) -> None:
        """Write attempts `set_ended` (the new ones in one INSERT, the opened ones in one
        UPDATE) and `also`'s writes in one transaction, taken again whole after a lost
        database; then report the final ones."""
        self.steps.take(lambda: self._write_together(attempts, also))
        self.report(attempts)

    def _write_together(
        self, attempts: list[SyncAttempt], also: Callable[[], None] | None = None
    ) -> None:
        new = [attempt for attempt in attempts if attempt.pk is None]
        opened = [attempt for attempt in attempts if attempt.pk is not None]
        try:
            with transaction.atomic():
                if new:
                    SyncAttempt.objects.bulk_create(new)
                if opened:
                    _update_finished(opened)
                if also is not None:
                    also()
        except BaseException:
            for attempt in new:  # rolled back: not on record after all
                attempt.pk = None
            raise

    def report(self, attempts: list[SyncAttempt]) -> None:
        """Tell `on_final` of the final attempts among these, now on record (each once)."""
        finals = [a for a in attempts if a.final and a.pk not in self._reported]
        if finals:
            self.before_report()
        for attempt in finals:
            if attempt.pk not in self._reported:
                self._reported.add(attempt.pk)
                self.on_final(attempt)


class Ending(TypedDict, total=False):
    """How an attempt ended, besides its outcome."""

    when: datetime  # when it ended (else now)
    final: bool  # how its customer ended the run
    error: Exception  # its status, code and message are recorded
    message: str  # stands instead of the error's own message
    zoho_customer_id: str
    waiting_until: datetime


def set_ended(attempt: SyncAttempt, outcome: AttemptOutcome, **how: Unpack[Ending]) -> SyncAttempt:
    """Set how an attempt ended, on the object only: written by `RunAttempts.write` (or
    `finish`, which does both)."""
    error = how.get("error")
    attempt.outcome = outcome
    attempt.final = how.get("final", False)
    attempt.finished_at = how.get("when") or timezone.now()
    attempt.zoho_customer_id = how.get("zoho_customer_id", "")
    attempt.waiting_until = how.get("waiting_until")
    attempt.error_message = how.get("message") or (describe(error) if error is not None else "")
    attempt.http_status = getattr(error, "status", None)
    attempt.zoho_code = getattr(error, "code", None)
    return attempt


def _update_finished(attempts: list[SyncAttempt]) -> None:
    """One UPDATE: a column the attempts share is set once, the others per row by a CASE (the
    ORM's bulk_update builds a CASE for every column, and costs more than the query)."""
    columns: dict[str, Any] = {}
    for name in FINISHED_FIELDS:
        values = {attempt.pk: getattr(attempt, name) for attempt in attempts}
        distinct = set(values.values())
        if len(distinct) == 1:
            columns[name] = distinct.pop()
        else:
            columns[name] = value_by_pk(values, SyncAttempt._meta.get_field(name))
    SyncAttempt.objects.filter(pk__in=[attempt.pk for attempt in attempts]).update(**columns)


def _ignore(attempt: SyncAttempt) -> None:
    """No one listens for final attempts."""


def _nothing() -> None:
    """Nothing is held back."""


def close_interrupted_attempts(customer: Customer, run: SyncRun) -> None:
    """Attempts another run left "sending" were cut off (`run` now holds the customer)."""
    interrupted = SyncAttempt.objects.filter(
        customer=customer, outcome=AttemptOutcome.SENDING
    ).exclude(run=run)
    run_ids = set(interrupted.values_list("run_id", flat=True))
    if not run_ids:
        return
    interrupted.update(
        outcome=AttemptOutcome.INTERRUPTED,
        finished_at=timezone.now(),
        error_message=f"interrupted: its run stopped mid-attempt; run #{run.pk} took over",
    )
    SyncRun.objects.filter(pk__in=run_ids, status=SyncRunStatus.RUNNING).update(
        status=SyncRunStatus.INTERRUPTED,
        stop_reason=f"interrupted (its process died); run #{run.pk} took over its customers",
    )


def refused_before_a_create(customer: Customer, error: Exception, *, run: SyncRun) -> bool:
    """Whether an earlier run got the same refusal for this customer, and Zoho then created
    another customer: evidence across runs that the refusal is about this customer's data."""
    earlier = (
        SyncAttempt.objects.filter(
            customer=customer, error_message__startswith=describe(error), run_id__lt=run.pk
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    if earlier is None:
        return False
    return (
        SyncAttempt.objects.filter(outcome=AttemptOutcome.CREATED, finished_at__gt=earlier)
        .exclude(customer=customer)
        .exists()
    )


def describe(error: Exception) -> str:
    """The message an attempt (and its customer) records for an error."""
    if isinstance(error, IntegrityError):
        return "the Zoho customer found is already linked to another local customer"
    return str(error)
