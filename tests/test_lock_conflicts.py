"""A lock conflict is not an outage: another transaction holding what a run needs (SQLite's
write lock, a PostgreSQL table lock past lock_timeout) makes the step be taken again, a few
times with short pauses; a conflict that lasts stops the command in one line naming it. A lost
connection, and only that, is waited for as an outage."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, connection

from billing_sync.database import Fault, fault_of
from billing_sync.models import Customer, SyncRun, SyncStatus
from tests.commands import run

pytestmark = pytest.mark.django_db(transaction=True)


def wrapped(cause: Exception, kind: type[Exception] = OperationalError) -> Exception:
    """The error as Django raises it: its own class over the driver's."""
    error = kind(*cause.args)
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("cause", "fault"),
    [
        (psycopg.errors.DeadlockDetected("deadlock detected"), Fault.CONFLICT),
        (psycopg.errors.SerializationFailure("could not serialize access"), Fault.CONFLICT),
        (
            psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
            Fault.CONFLICT,
        ),
        (
            psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
            Fault.CONFLICT,
        ),
        (sqlite3.OperationalError("database is locked"), Fault.CONFLICT),
        (psycopg.OperationalError("server closed the connection unexpectedly"), Fault.LOST),
        (
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            Fault.LOST,
        ),
        (psycopg.OperationalError("connection failed: Connection refused"), Fault.LOST),
        (sqlite3.OperationalError("disk I/O error"), Fault.LOST),
        (sqlite3.OperationalError("no such table: customers"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_a_database_error_is_told_apart_by_what_the_driver_says(cause, fault):
    assert fault_of(wrapped(cause)) is fault


def test_a_refused_write_is_neither_lost_nor_a_conflict():
    cause = psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
    assert fault_of(wrapped(cause, IntegrityError)) is None


@contextmanager
def write_lock_held(seconds: float | None) -> Iterator[None]:
    """Another connection holds what a run writes (SQLite: the database's write lock;
    PostgreSQL: the run table), for `seconds` (None: until the block ends); our connection
    gives up waiting for a lock after 0.1 s, as a busy timeout or lock_timeout does."""
    options = connection.settings_dict["OPTIONS"]
    saved = dict(options)
    if connection.vendor == "sqlite":
        other = sqlite3.connect(
            connection.settings_dict["NAME"], isolation_level=None, check_same_thread=False
        )
        other.execute("BEGIN IMMEDIATE")
        release = other.rollback
        options["timeout"] = 0.1
    else:
        db = connection.settings_dict
        other = psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
        )
        other.execute("LOCK TABLE billing_sync_syncrun IN ACCESS EXCLUSIVE MODE")
        release = other.rollback
        options["options"] = "-c lock_timeout=100"
    connection.close()  # the next connection takes the short timeout
    timer = threading.Timer(seconds, release) if seconds is not None else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.join()
        else:
            release()
        other.close()
        options.clear()
        options.update(saved)
        connection.close()


def test_a_lock_held_for_a_moment_is_waited_out(emulator, make_customer):
    customers = [make_customer() for _ in range(3)]

    with write_lock_held(0.4):
        output, code = run("zoho_backfill_customers")

    assert code == 0, output
    assert Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).count() == len(customers)
    assert "Lost the database" not in output  # a conflict is not an outage


def test_a_lock_that_lasts_stops_the_command_naming_the_conflict(emulator, make_customer):
    make_customer()

    with write_lock_held(None):
        document_text, code = run("zoho_backfill_customers", "--json")

    assert code == 1
    (problem,) = json.loads(document_text)["problems"]
    assert problem.startswith("The database refused a step 5 times because of")
    held = "a lock held by another process" if connection.vendor == "sqlite" else "a lock that"
    assert held in problem
    assert "Lost the database" not in problem
    assert not SyncRun.objects.exists()  # it never got to open its record
    assert Customer.objects.get().zoho_sync_status == SyncStatus.PENDING
