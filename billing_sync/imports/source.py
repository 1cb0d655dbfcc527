"""The company's own customer database (the `source` entry of DATABASES): its customers read by
CUSTOMER_SOURCE_QUERY in a read-only transaction, and our answer written back into
CUSTOMER_SOURCE_WRITEBACK_TABLE: each customer's Zoho id and sync status, in the columns
`zoho_billing_customer_id` and `zoho_sync_status`, matched by `account_number`, and where the
table has a `zoho_sync_error` column (looked for once a process) why it is not synced: the
import's refusal of the row (a row the import refused is `needs_attention` there, whether or
not we hold a customer for it), Zoho's refusal, the last failure; cleared once it is synced.

The write-back is the only code that writes there: it updates rows whose values differ, in
batches, each in a short transaction, and never inserts or deletes. The table name is checked as
an identifier (settings.py) and quoted; every value is a bound parameter.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from billing_sync.imports.customer_import import (
    ImportObserver,
    ImportOptions,
    import_finished,
    import_refused,
    import_rows,
    import_started,
    in_batches,
)
from billing_sync.imports.files import RowSource, SourceRow
from billing_sync.imports.selectors import source_refusals
from billing_sync.models import (
    Customer,
    CustomerImport,
    ImportSource,
    ImportStatus,
    SyncAttempt,
    SyncRun,
    SyncRunStatus,
    SyncStatus,
)
from billing_sync.operations.alerts import alerts_check, alerts_writeback, writeback_catch_up_due

SOURCE = "source"
QUERY_SETTING = "CUSTOMER_SOURCE_QUERY"
FETCH_ROWS = 1000
WRITEBACK_BATCH = 500
WRITEBACK_COLUMNS = ("zoho_billing_customer_id", "zoho_sync_status")
REASON_COLUMN = "zoho_sync_error"  # optional: written where the company's table has it
ERROR_CHARS = 1000
SELECT = re.compile(r"\s*(select|with)\b", re.IGNORECASE)

logger = logging.getLogger(__name__)


class SourceNotConfigured(Exception):
    """The settings name no source database, or no query to read it with."""


def source_configured() -> bool:
    """Whether customers are imported from the company's database."""
    return bool(settings.CUSTOMER_SOURCE_URL and settings.CUSTOMER_SOURCE_QUERY)


def writeback_configured() -> bool:
    """Whether our answer is written back into the company's database."""
    return bool(settings.CUSTOMER_SOURCE_URL and settings.CUSTOMER_SOURCE_WRITEBACK_TABLE)


def customers_import_source(*, options: ImportOptions, observer: ImportObserver) -> CustomerImport:
    """Import what CUSTOMER_SOURCE_QUERY returns, then (live) write back whatever differs."""
    if not source_configured():
        raise SourceNotConfigured(
            "No source database: set CUSTOMER_SOURCE_URL and CUSTOMER_SOURCE_QUERY "
            '(docs/importing.md, "The company\'s database").'
        )
    record = import_started(ImportSource.DATABASE, QUERY_SETTING, "query", options)
    try:
        with source_rows() as rows:
            import_rows(record, rows, options, observer)
    except _QueryRefused as exc:
        import_refused(record, without_secrets(str(exc)))
    else:
        import_finished(record)
    if record.status == ImportStatus.COMPLETED and not options.dry_run and writeback_configured():
        record.writeback_count, record.writeback_error = writeback_safely(
            Customer.objects.all(), every_row=True
        )
        record.save(update_fields=["writeback_count", "writeback_error"])
    if not options.dry_run:
        alerts_check()  # rows refused, the source unreadable, a backlog: told once
    return record


def without_secrets(text: str) -> str:
    """`text` without the password of CUSTOMER_SOURCE_URL, should a driver have repeated it."""
    password = urlsplit(settings.CUSTOMER_SOURCE_URL).password
    return text.replace(password, "***") if password else text


class _QueryRefused(Exception):
    """The source would not run the query: nothing is imported."""


@contextlib.contextmanager
def source_rows() -> Iterator[RowSource]:
    """The query's rows, read in one read-only transaction of the source database, streamed."""
    query = settings.CUSTOMER_SOURCE_QUERY
    if not SELECT.match(query):
        raise _QueryRefused(f"{QUERY_SETTING} must be a SELECT (or WITH ... SELECT) query")
    connection = connections[SOURCE]
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        raise _QueryRefused(f"cannot reach the source database: {exc}") from exc
    with transaction.atomic(using=SOURCE), _read_only(connection):
        # On PostgreSQL a server-side cursor: rows arrive as they are read.
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(query)
            # A server-side cursor runs the query at its first fetch: fail here, not mid-import.
            first = cursor.fetchmany(FETCH_ROWS)
        except DatabaseError as exc:
            raise _QueryRefused(f"the source database refused {QUERY_SETTING}: {exc}") from exc
        header = [column[0] for column in cursor.description]
        try:
            yield RowSource(
                ImportSource.DATABASE,
                QUERY_SETTING,
                "query",
                header,
                _fetch(cursor, header, first),
            )
        finally:
            cursor.close()


@contextlib.contextmanager
def _read_only(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """A mistaken write fails loudly, on either database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET TRANSACTION READ ONLY")
            yield
            return
        cursor.execute("PRAGMA query_only = ON")
        try:
            yield
        finally:
            if connection.needs_rollback:
                connection.close()  # a broken transaction: the next connection starts writable
            else:
                cursor.execute("PRAGMA query_only = OFF")


def _fetch(cursor: Any, header: list[str], first: list[tuple]) -> Iterator[SourceRow]:
    number = 0
    rows = first
    while rows:
        for row in rows:
            number += 1
            yield SourceRow(number, dict(zip(header, row, strict=True)))
        rows = cursor.fetchmany(FETCH_ROWS)


def writeback_after_run(run: SyncRun) -> None:
    """Write back the Zoho ids and statuses of the customers a live run finished; all
    customers after a stopped run (it left unreached ones failed) or a failed write-back.
    Recorded on the run; a failure never fails the run."""
    if run.dry_run or not writeback_configured():
        return
    if run.status == SyncRunStatus.STOPPED or writeback_catch_up_due():
        run.writeback_count, run.writeback_error = writeback_safely(
            Customer.objects.all(), every_row=True
        )
    else:
        its_own = Customer.objects.filter(
            pk__in=SyncAttempt.objects.filter(run=run).values("customer_id")
        )
        run.writeback_count, run.writeback_error = writeback_safely(its_own)
    run.save(update_fields=["writeback_count", "writeback_error"])


def writeback_safely(
    customers: QuerySet[Customer], *, every_row: bool = False
) -> tuple[int | None, str]:
    """Write back `customers` (`every_row`: they are all of them; the rows the last import
    refused and made no customer of too): (rows written, "") or (None, why it failed); alerts
    when it starts or stops failing."""
    try:
        written = source_writeback(customers, every_row=every_row)
    except DatabaseError as exc:
        connections[SOURCE].close()
        error = without_secrets(
            f"Writing back to {settings.CUSTOMER_SOURCE_WRITEBACK_TABLE} failed: {exc}"
        )
        logger.warning("%s; the next write-back catches up", error)
        alerts_writeback(error=error)
        return None, error[:ERROR_CHARS]
    alerts_writeback(error="")
    return written, ""


def source_writeback(customers: QuerySet[Customer], *, every_row: bool = False) -> int:
    """Give the source's rows of `customers` our Zoho id, sync status and (where the table has
    the column) the reason it is not synced, where they differ; the source rows the last import
    refused become `needs_attention`, saying why (with `every_row`, `customers` being all of
    them, those it made no customer of too). The number of rows changed. Raises
    DatabaseError."""
    connection = connections[SOURCE]
    table = ".".join(
        connection.ops.quote_name(part)
        for part in settings.CUSTOMER_SOURCE_WRITEBACK_TABLE.split(".")
    )
    columns = writeback_columns(connection, table)
    refused = source_refusals()
    ours = customers.order_by().values_list(
        "account_number", "zoho_billing_customer_id", "zoho_sync_status", "zoho_last_error"
    )
    answers = (
        (account, written_values(zoho_id, status, error, refused.pop(account, "")))
        for account, zoho_id, status, error in ours.iterator(chunk_size=2000)
    )
    written = 0
    for batch in in_batches(answers, WRITEBACK_BATCH):
        written += _write_batch(connection, table, columns, dict(batch))
    if not every_row:
        return written
    # Refused rows the import made no customer of (a new row refused): told all the same.
    for batch in in_batches(refused.items(), WRITEBACK_BATCH):
        wanted = {account: written_values(None, "", "", reason) for account, reason in batch}
        written += _write_batch(connection, table, columns, wanted)
    return written


def written_values(
    zoho_id: str | None, status: str, error: str, refusal: str
) -> tuple[str | None, str, str | None]:
    """What the source's row holds of one customer: its Zoho id, its status, and why it is not
    synced (None once it is): the import's refusal of the row, else Zoho's refusal or the last
    failure."""
    if refusal:
        return zoho_id, SyncStatus.NEEDS_ATTENTION, refusal[:ERROR_CHARS]
    why = error if status in (SyncStatus.FAILED, SyncStatus.NEEDS_ATTENTION) else ""
    return zoho_id, status, why[:ERROR_CHARS] or None


def _write_batch(
    connection: BaseDatabaseWrapper,
    table: str,
    columns: tuple[str, ...],
    wanted: dict[str, tuple[str | None, str, str | None]],
) -> int:
    """Update the rows of `wanted` (account number: values) whose values differ; how many."""
    wanted = {account: values[: len(columns)] for account, values in wanted.items()}
    with transaction.atomic(using=SOURCE), connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(wanted))
        cursor.execute(
            f"SELECT account_number, {', '.join(columns)} FROM {table} "  # noqa: S608 - a checked, quoted identifier
            f"WHERE account_number IN ({marks})",
            list(wanted),
        )
        held = {str(row[0]): _texts(row[1:]) for row in cursor.fetchall()}
        changes = [
            (*values, account)
            for account, values in wanted.items()
            if account in held and held[account] != values
        ]
        if changes:
            assignments = ", ".join(f"{column} = %s" for column in columns)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE account_number = %s",  # noqa: S608 - as above
                changes,
            )
    return len(changes)


# Whether the write-back table has the reason column, by table: looked for once a process.
_REASON_COLUMN_FOUND: dict[str, bool] = {}


def writeback_columns(connection: BaseDatabaseWrapper, table: str) -> tuple[str, ...]:
    """The columns the write-back writes: ours, and `zoho_sync_error` where the table has it
    (the company's table need not; read once a process, from an empty SELECT's description)."""
    key = f"{connection.settings_dict.get('NAME')}:{table}"
    if key not in _REASON_COLUMN_FOUND:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {table} WHERE 1 = 0")  # noqa: S608 - as above
            names = {column[0].casefold() for column in cursor.description}
        _REASON_COLUMN_FOUND[key] = REASON_COLUMN in names
    return (*WRITEBACK_COLUMNS, REASON_COLUMN) if _REASON_COLUMN_FOUND[key] else WRITEBACK_COLUMNS


def _texts(values: Iterable[Any]) -> tuple[str | None, ...]:
    return tuple(None if value is None else str(value) for value in values)
