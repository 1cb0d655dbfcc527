"""The database's faults, and taking a step through them: a lost connection is waited for, a
lock conflict is tried again, each within its bound; any other error is not ours to ride out.

Two kinds of failure are passing, and told apart by what the driver says, never by guessing:
- LOST: the connection went away (the server restarted, the network dropped, the file could
  not be read). The step is taken again once the database answers, waited for up to
  ZOHO_DB_OUTAGE_WAIT_SECONDS (a run: within its --max-wait); longer, `DatabaseLost`.
- CONFLICT: the database refused the statement because of another transaction (a deadlock, a
  serialization failure, a lock that was not granted, a statement timeout, SQLite's "database
  is locked"). The connection is fine: the step is taken again at once, then after short
  pauses, CONFLICT_TRIES times in all; then `DatabaseConflict` names it.

A step is a function that reads or writes and may be taken twice: a transaction (rolled back
whole when it fails), or one idempotent statement. Steps nest: one taken inside an open
transaction is not retried on its own (the transaction is broken), its failure goes to the step
that opened the transaction.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_LOOK_SECONDS = 0.5
LONGEST_LOOK_SECONDS = 5.0
CONFLICT_TRIES = 5
FIRST_CONFLICT_PAUSE_SECONDS = 0.05
# PostgreSQL's SQLSTATEs: the connection is gone (class 08, and the server shutting down)...
LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# ... or another transaction stood in the way.
CONFLICT_SQLSTATES = {
    "40001": "a serialization failure",
    "40P01": "a deadlock",
    "55P03": "a lock that was not granted",
    "57014": "a statement timeout",
}
SQLITE_CONFLICTS = ("database is locked", "database table is locked")
SQLITE_LOST = ("unable to open database file", "disk i/o error")


class Fault(Enum):
    """A passing failure of the database."""

    LOST = "the connection was lost"
    CONFLICT = "another transaction stood in the way"


def fault_of(error: BaseException) -> Fault | None:
    """Whether `error` is a lost connection, a conflict, or neither (None)."""
    if not isinstance(error, DatabaseError):
        return None
    if isinstance(error, InterfaceError):
        return Fault.LOST
    cause = error.__cause__
    if isinstance(cause, sqlite3.Error):
        text = str(cause).casefold()
        if any(words in text for words in SQLITE_CONFLICTS):
            return Fault.CONFLICT
        return Fault.LOST if any(words in text for words in SQLITE_LOST) else None
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate in CONFLICT_SQLSTATES:
        return Fault.CONFLICT
    if isinstance(error, OperationalError) and (
        sqlstate is None or sqlstate.startswith(LOST_SQLSTATES)
    ):
        return Fault.LOST
    return None


def first_line(error: BaseException) -> str:
    """The database error's first line (psycopg adds hints below), or its kind."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def conflict_name(error: BaseException) -> str:
    """What stood in the way, in words: "a deadlock", "SQLite's lock (database is locked)"."""
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate in CONFLICT_SQLSTATES:
        return CONFLICT_SQLSTATES[sqlstate]
    return f"a lock held by another process ({first_line(error)})"


class DatabaseUnavailable(Exception):
    """The database could not be used for longer than we may wait: the command stops."""


class DatabaseLost(DatabaseUnavailable):
    """The database stayed away longer than we may wait."""

    def __init__(self, error: BaseException, *, waited: float) -> None:
        super().__init__(
            f"Lost the database ({first_line(error)}) for {waited:.0f} s: the command stops. "
            "Nothing is lost: what it did not finish is taken up by the next run (customers it "
            "held once ZOHO_STALE_CLAIM_SECONDS have passed; it looks in Zoho before creating "
            "any)"
        )


class DatabaseConflict(DatabaseUnavailable):
    """Another transaction stood in the way of a step every time it was taken."""

    def __init__(self, error: BaseException, *, tries: int) -> None:
        super().__init__(
            f"The database refused a step {tries} times because of {conflict_name(error)}: the "
            "command stops. Another process holds what it needs (a long transaction, a "
            "migration?); nothing is lost: run it again once that has ended"
        )


class WaitAllowance:
    """The seconds a command may still spend waiting for the database: ZOHO_DB_OUTAGE_WAIT_
    SECONDS at a time, and within a run's --max-wait, shared with its other waits."""

    def __init__(self, outage_seconds: float, max_wait: float | None = None) -> None:
        self.outage_seconds = outage_seconds
        self.max_wait = max_wait
        self._waited = 0.0
        self._gate: Any = None

    @property
    def waited(self) -> float:
        """Seconds waited so far (for the database, and for Zoho once shared with a gate)."""
        return self._gate.block_waited if self._gate is not None else self._waited

    def share_with(self, gate: Any) -> None:
        """Count the waits of a run's request gate (Zoho's blocks, creates settling) and the
        database's as one, against one max_wait (the gate's `block_waited`)."""
        gate.block_waited += self._waited
        self._gate = gate

    def left(self) -> float:
        """Seconds the next wait for the database may last."""
        if self.max_wait is None:
            return self.outage_seconds
        return max(0.0, min(self.outage_seconds, self.max_wait - self.waited))

    def spend(self, seconds: float) -> None:
        if self._gate is not None:
            self._gate.block_waited += seconds
        else:
            self._waited += seconds


class DatabaseSteps:
    """Takes steps through the database's passing faults (see the module's docstring)."""

    def __init__(
        self,
        allowance: WaitAllowance,
        *,
        on_wait: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_wait` hears (the error's first line) when a wait for a lost database begins."""
        self.allowance = allowance
        self.on_wait = on_wait
        self.sleep = sleep
        self.clock = clock
        # Times the database went away and came back: what was read before may be stale.
        self.outages = 0

    def take(self, step: Callable[[], T]) -> T:
        """Take `step`, again after a lost connection (once the database answers) or a
        conflict; raise DatabaseLost or DatabaseConflict past their bounds."""
        if connection.in_atomic_block:
            return step()  # inside a transaction: the step that opened it takes it again
        conflicts = 0
        while True:
            try:
                return step()
            except DatabaseError as error:
                fault = fault_of(error)
                if fault is Fault.LOST:
                    self.wait_for_database(error)
                elif fault is Fault.CONFLICT:
                    conflicts += 1
                    if conflicts >= CONFLICT_TRIES:
                        raise DatabaseConflict(error, tries=conflicts) from error
                    logger.warning("the database refused a step (%s); again", first_line(error))
                    self.sleep(FIRST_CONFLICT_PAUSE_SECONDS * 2 ** (conflicts - 1))
                else:
                    raise

    def wait_for_database(self, error: BaseException) -> None:
        """Wait until the database answers again, within the allowance; DatabaseLost past it."""
        logger.warning("lost the database (%s); waiting for it", first_line(error))
        if self.on_wait is not None:
            self.on_wait(first_line(error))
        waited = wait_for_database(
            error, longest=self.allowance.left(), sleep=self.sleep, clock=self.clock
        )
        self.allowance.spend(waited)
        self.outages += 1


def wait_for_database(
    error: BaseException,
    *,
    longest: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Reconnect once the database answers again; how long that took. Raise DatabaseLost when
    it has not after `longest` seconds (0: one look)."""
    started = clock()
    delay = FIRST_LOOK_SECONDS
    while True:
        with contextlib.suppress(DatabaseError):
            connection.close()  # the broken connection: a new one is made below
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return clock() - started
        except DatabaseError as again:
            if fault_of(again) is not Fault.LOST:
                raise
            error = again
        waited = clock() - started
        if waited + delay > longest:
            raise DatabaseLost(error, waited=waited) from error
        sleep(delay)
        delay = min(delay * 2, LONGEST_LOOK_SECONDS)


def database_look() -> None:
    """One look at the database (a new connection if there is none): a step that says it
    answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def database_steps(
    *, max_wait: float | None = None, on_wait: Callable[[str], None] | None = None
) -> DatabaseSteps:
    """Steps with the configured patience (ZOHO_DB_OUTAGE_WAIT_SECONDS, within `max_wait`)."""
    allowance = WaitAllowance(settings.ZOHO_DB_OUTAGE_WAIT_SECONDS, max_wait)
    return DatabaseSteps(allowance, on_wait=on_wait)
