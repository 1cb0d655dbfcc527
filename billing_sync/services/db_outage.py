"""Riding out a lost database: wait for it to answer again, reconnect, go on; longer, stop.

A run holds what Zoho answered in memory until it is written, and every step of a customer is
safe to take again (claims are conditional updates, a create is looked for before it is sent a
second time). So when the database goes away mid-run, the run waits for it (up to
ZOHO_DB_OUTAGE_WAIT_SECONDS, within its --max-wait), then takes the interrupted step again.
When it stays away longer, the run stops with `DatabaseLost`: one line, no traceback; the
customers it held are taken over by a later run once their claims are stale, as after a crash.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from django.db import DatabaseError, InterfaceError, OperationalError, connection

# What a lost connection raises (psycopg's AdminShutdown, a refused connection, a closed one).
CONNECTION_ERRORS = (OperationalError, InterfaceError)
FIRST_LOOK_SECONDS = 0.5
LONGEST_LOOK_SECONDS = 5.0


class DatabaseLost(Exception):
    """The database stayed away longer than the run may wait: the run stops."""

    def __init__(self, error: Exception, *, waited: float) -> None:
        super().__init__(
            f"Lost the database ({first_line(error)}) for {waited:.0f} s: the run stops. What "
            "Zoho had answered but was not written is found again: the customers this run held are "
            "taken over by the next run once ZOHO_STALE_CLAIM_SECONDS have passed, and it looks "
            "in Zoho before creating any"
        )


def first_line(error: Exception) -> str:
    """The database error's first line (psycopg adds hints below), or its kind."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def wait_for_database(
    error: Exception,
    *,
    longest: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Reconnect once the database answers again; how long that took. Raise DatabaseLost when
    it has not after `longest` seconds (0: at once)."""
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
        except CONNECTION_ERRORS as again:
            error = again
        waited = clock() - started
        if waited + delay > longest:
            raise DatabaseLost(error, waited=waited) from error
        sleep(delay)
        delay = min(delay * 2, LONGEST_LOOK_SECONDS)
