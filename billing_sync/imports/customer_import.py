"""Importing customers: an upsert by account number from a file, the company's database or an
admin upload, checked with the sync's own rules, recorded in CustomerImport and ImportRefusal.

Rows are taken a batch at a time, each batch in one transaction: read the customers it names,
decide each row (create; update, with the fields it changes; unchanged; refused, with the
column and the reason), write the customers, the refusals and the import's counts, commit.
Only then does the observer hear of the batch's rows, so what is shown is what was written. A
dry run decides the same way and writes no customer (it records the import and its refusals,
so the audit shows the preview happened). An import of the company's database (the schedule's)
carries an unchanged refusal forward from the import before rather than recording it again:
the record of refusals grows with the rows refused, not with the times they are read.

The rules: the key is `account_number`, exactly as stored (trimmed); a column the source does
not carry leaves that field alone, an empty one sets it empty; nothing is ever deleted; a row
identical to its customer writes nothing (`updated_at` stays, so the sync sends nothing); an
account number given again in one source is refused after its first row; `created_at` sets a
new customer's creation time only. An import that changed customers queues one sync task.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, IntegrityError, reset_queries, transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from billing_sync.ctrl_c import ctrl_c_held
from billing_sync.customer_data import customer_field_problems
from billing_sync.imports.files import (
    STDIN,
    RowSource,
    SourceRow,
    UnreadableFile,
    open_file,
)
from billing_sync.imports.rows import (
    ColumnError,
    Columns,
    columns_for,
    parse_cells,
    problem_column,
)
from billing_sync.models import (
    Customer,
    CustomerImport,
    ImportRefusal,
    ImportSource,
    ImportStatus,
    SyncTrigger,
    silent_longer_than,
)
from billing_sync.operations.alerts import alerts_check

BATCH_ROWS = 1000
T = TypeVar("T")
INTERRUPTED = "Interrupted (Ctrl-C): the rows before that are imported"
DIED = (
    "stopped writing part way (its process died, or lost the database for good); the rows "
    "before that are imported: a rerun finishes it"
)
SYNC_TASK = "billing_sync.tasks.sync_task"
REASON_CHARS = 1000


class RowAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True)
class RowProblem:
    """Why a row is refused: the column (as the source names it; empty: the whole row)."""

    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.column}: {self.reason}" if self.column else self.reason


@dataclass(frozen=True)
class RowOutcome:
    """What an import did with one row, once written."""

    line: int
    account_number: str
    action: RowAction
    fields: tuple[str, ...] = ()  # update: the fields it changed; create: those the row gave
    problems: tuple[RowProblem, ...] = ()


class ImportObserver:
    """Hears about an import's progress (commands print it); every hook is optional."""

    def import_started(
        self, customer_import: CustomerImport, columns: Columns, total: int | None
    ) -> None:
        """The columns are placed; `total` rows follow (None: not known ahead)."""

    def rows_written(self, outcomes: list[RowOutcome]) -> None:
        """A batch of rows is decided and written (committed)."""


@dataclass(frozen=True)
class ImportOptions:
    """How to read the source's columns, and whether to write."""

    trigger: SyncTrigger = SyncTrigger.COMMAND
    dry_run: bool = False
    renames: Mapping[str, str] | None = None  # source column -> our field
    ignore: tuple[str, ...] = ()  # source columns skipped on purpose


def customers_import_file(
    *, path: str, format: str | None = None, options: ImportOptions, observer: ImportObserver
) -> CustomerImport:
    """Import the customers of a CSV or JSON Lines file (`-`: standard input)."""
    name = "standard input" if path == STDIN else path
    record = import_started(ImportSource.FILE, name, format or "", options)
    try:
        with open_file(path, format=format) as rows:
            import_rows(record, rows, options, observer)
    except UnreadableFile as exc:
        return import_refused(record, str(exc))
    return _told(import_finished(record))


def customers_import_upload(
    *, rows: RowSource, options: ImportOptions, observer: ImportObserver
) -> CustomerImport:
    """Import rows a person uploaded (the admin's Import), already read by its page."""
    record = import_started(ImportSource.UPLOAD, rows.name, rows.format, options)
    import_rows(record, rows, options, observer)
    return _told(import_finished(record))


def _told(record: CustomerImport) -> CustomerImport:
    """After a live import: the alerts see the backlog it made (its completion is told)."""
    if not record.dry_run:
        alerts_check()
    return record


def import_started(
    source: ImportSource, name: str, format: str, options: ImportOptions
) -> CustomerImport:
    """The import's record, before anything is read; the records of imports that died (silent
    for longer than ZOHO_STALE_CLAIM_SECONDS) closed `failed` first."""
    close_dead_imports(settings.ZOHO_STALE_CLAIM_SECONDS)
    with transaction.atomic():
        return CustomerImport.objects.create(
            source=source,
            name=name[:255],
            format=format,
            trigger=options.trigger,
            dry_run=options.dry_run,
            heartbeat_at=timezone.now(),
        )


def close_dead_imports(stale_seconds: float) -> int:
    """Close `failed` the record of every import that stopped writing batches more than
    `stale_seconds` ago (its process died, or lost the database for good); how many. Its
    committed batches stand: a rerun finishes it."""
    silent = silent_longer_than(stale_seconds)
    return CustomerImport.objects.filter(silent, status=ImportStatus.RUNNING).update(
        status=ImportStatus.FAILED,
        problem=DIED,
        finished_at=timezone.now(),
    )


def import_refused(record: CustomerImport, problem: str) -> CustomerImport:
    """Nothing could be imported (unreadable, an unknown column): say why, on the record."""
    record.status = ImportStatus.REFUSED
    record.problem = problem
    record.finished_at = timezone.now()
    record.save(update_fields=["status", "problem", "finished_at"])
    return record


def import_rows(
    record: CustomerImport, rows: RowSource, options: ImportOptions, observer: ImportObserver
) -> CustomerImport:
    """Import `rows` under `record`, a batch at a time (refused when its columns cannot be
    placed); `import_finished` ends it, once its source is closed."""
    record.format = rows.format
    record.save(update_fields=["format"])
    try:
        columns = columns_for(rows.header, renames=options.renames, ignore=options.ignore)
    except ColumnError as exc:
        return import_refused(record, str(exc))
    observer.import_started(record, columns, rows.total)
    batches = _Batches(record, columns)
    try:
        for batch in in_batches(rows.rows, BATCH_ROWS):
            with ctrl_c_held():  # a batch written is a batch reported
                observer.rows_written(batches.write(batch))
            # With DEBUG on, Django keeps the text of every query: not 100,000 rows' worth.
            reset_queries()
    except KeyboardInterrupt:
        with ctrl_c_held():
            _ended(record, ImportStatus.STOPPED, INTERRUPTED)
        raise
    except BaseException as exc:
        _ended(record, ImportStatus.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    return record


def in_batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), read as they are needed."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _ended(record: CustomerImport, status: ImportStatus, problem: str) -> None:
    """An import that ended part way: its committed batches stand; a rerun finishes it. When
    the database is what failed, the next import closes the record (`close_dead_imports`)."""
    with contextlib.suppress(DatabaseError):
        CustomerImport.objects.filter(pk=record.pk).update(
            status=status, problem=problem[:REASON_CHARS], finished_at=timezone.now()
        )


def import_finished(record: CustomerImport) -> CustomerImport:
    """Mark the import done and queue one sync for what it changed (a refused one stays so).

    Called once the source is closed: queueing may close idle database connections.
    """
    record.refresh_from_db()
    if record.status != ImportStatus.RUNNING:
        return record
    changed = record.created_count + record.updated_count
    if changed and not record.dry_run and settings.ZOHO_SYNC_ON_SAVE:
        transaction.on_commit(_enqueue_sync)
        record.sync_queued = True
    record.status = ImportStatus.COMPLETED
    record.finished_at = timezone.now()
    record.save(update_fields=["status", "finished_at", "sync_queued"])
    return record


def _enqueue_sync() -> None:
    async_task(SYNC_TASK, task_name="zoho-sync-after-import")


@dataclass
class _Draft:
    """A row read and checked on its own, before its customer is looked at."""

    line: int
    account_number: str
    values: dict[str, Any]
    problems: list[RowProblem]


@dataclass
class _Decided:
    """A batch's rows decided, and what that writes."""

    outcomes: list[RowOutcome]
    creates: list[tuple[Customer, datetime | None]]
    updates: dict[tuple[str, ...], list[Customer]]
    refusals: list[ImportRefusal]

    def count(self, action: RowAction) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action == action)


class _Batches:
    """Writes an import's batches; remembers which line first gave each account number."""

    def __init__(self, record: CustomerImport, columns: Columns) -> None:
        self.record = record
        self.columns = columns
        self.first_line: dict[str, int] = {}

    def write(self, rows: list[SourceRow]) -> list[RowOutcome]:
        """Decide and write one batch in one transaction; its outcomes once committed."""
        drafts = [self._draft(row) for row in rows]
        try:
            return self._write(drafts)
        except IntegrityError:
            # Another process created one of these accounts meanwhile: read them again.
            return self._write(drafts)

    def _write(self, drafts: list[_Draft]) -> list[RowOutcome]:
        with transaction.atomic():
            decided = self._decide(drafts)
            if not self.record.dry_run:
                _write_customers(decided)
            self._record(decided)
        return decided.outcomes

    def _draft(self, row: SourceRow) -> _Draft:
        if row.problem:
            return _Draft(row.line, "", {}, [RowProblem("", row.problem)])
        parsed = parse_cells(row.cells, self.columns)
        problems = [
            RowProblem(problem_column(problem, self.columns), problem.reason)
            for problem in parsed.problems
        ]
        account = parsed.account_number
        column = self.columns.column_of("account_number")
        if not account and "account_number" in parsed.values:
            problems.append(RowProblem(column, "is blank: customers are matched by it"))
        elif account in self.first_line:
            first = self.first_line[account]
            problems.append(
                RowProblem(column, f"{account!r} is given again (first on line {first})")
            )
        elif account:
            self.first_line[account] = row.line
        return _Draft(row.line, account, parsed.values, problems)

    def _decide(self, drafts: list[_Draft]) -> _Decided:
        wanted = [draft.account_number for draft in drafts if not draft.problems]
        existing = {
            customer.account_number: customer
            for customer in Customer.objects.select_for_update().filter(account_number__in=wanted)
        }
        decided = _Decided([], [], defaultdict(list), [])
        for draft in drafts:
            decided.outcomes.append(self._decide_row(draft, existing, decided))
        return decided

    def _decide_row(
        self, draft: _Draft, existing: dict[str, Customer], decided: _Decided
    ) -> RowOutcome:
        values = {name: value for name, value in draft.values.items() if name != "created_at"}
        customer = existing.get(draft.account_number) if not draft.problems else None
        if draft.problems:
            changed: tuple[str, ...] = ()
        elif customer is None:
            customer = Customer(**values)
            changed = tuple(draft.values)
        else:
            changed = tuple(
                name for name, value in values.items() if getattr(customer, name) != value
            )
            for name in changed:
                setattr(customer, name, values[name])
        problems = list(draft.problems)
        if customer is not None:
            problems += [
                RowProblem(problem_column(problem, self.columns), problem.reason)
                for problem in customer_field_problems(customer)
            ]
        if problems:
            decided.refusals += [
                ImportRefusal(
                    customer_import=self.record,
                    line=draft.line,
                    account_number=draft.account_number[:64],
                    column=problem.column[:200],
                    reason=problem.reason[:REASON_CHARS],
                )
                for problem in problems
            ]
            return RowOutcome(
                draft.line, draft.account_number, RowAction.REFUSED, problems=tuple(problems)
            )
        if customer.pk is None:
            decided.creates.append((customer, draft.values.get("created_at")))
            return RowOutcome(draft.line, draft.account_number, RowAction.CREATE, changed)
        if changed:
            decided.updates[changed].append(customer)
            return RowOutcome(draft.line, draft.account_number, RowAction.UPDATE, changed)
        return RowOutcome(draft.line, draft.account_number, RowAction.UNCHANGED)

    def _record(self, decided: _Decided) -> None:
        """The batch's refusals and counts, in its transaction."""
        refusals = decided.refusals
        if self.record.source == ImportSource.DATABASE and not self.record.dry_run:
            refusals = _carried_forward(refusals, self.record)
        ImportRefusal.objects.bulk_create(refusals)
        CustomerImport.objects.filter(pk=self.record.pk).update(
            row_count=F("row_count") + len(decided.outcomes),
            created_count=F("created_count") + decided.count(RowAction.CREATE),
            updated_count=F("updated_count") + decided.count(RowAction.UPDATE),
            unchanged_count=F("unchanged_count") + decided.count(RowAction.UNCHANGED),
            refused_count=F("refused_count") + decided.count(RowAction.REFUSED),
            heartbeat_at=timezone.now(),
        )


def _carried_forward(refusals: list[ImportRefusal], record: CustomerImport) -> list[ImportRefusal]:
    """The refusals of a scheduled import's batch that an earlier import of the company's
    database made already (same row, column and reason) are carried forward to this import
    (its record, its line) instead of being recorded again: one row a refusal, however often
    the schedule reads the row unchanged. The others, to record."""
    wanted = {(r.account_number, r.column, r.reason): r for r in refusals if r.account_number}
    if not wanted:
        return refusals
    earlier = (
        ImportRefusal.objects.filter(
            customer_import__source=ImportSource.DATABASE,
            customer_import__dry_run=False,
            account_number__in={account for account, _, _ in wanted},
        )
        .exclude(customer_import=record)
        .order_by("-pk")
    )
    carried = {}
    for old in earlier:
        key = (old.account_number, old.column, old.reason)
        if key in wanted and key not in carried:
            old.customer_import, old.line = record, wanted[key].line
            carried[key] = old
    ImportRefusal.objects.bulk_update(carried.values(), ["customer_import", "line"])
    return [r for r in refusals if (r.account_number, r.column, r.reason) not in carried]


def _write_customers(decided: _Decided) -> None:
    """Create and update the batch's customers: a few statements, whatever its size.

    The plain manager writes here: the import queues one sync for all it changed, where an
    update() of the customers' own manager would queue one per customer (signals.py).
    """
    plain = Customer._base_manager
    created = [customer for customer, _created_at in decided.creates]
    Customer.objects.bulk_create(created)
    # The database stamps a new row's creation; a source's own creation time replaces it.
    dated = []
    for customer, created_at in decided.creates:
        if created_at is not None:
            customer.created_at = created_at
            dated.append(customer)
    plain.bulk_update(dated, ["created_at"])
    # An edit of a field we send puts a customer that needs attention back in the queue: the
    # database's trigger does it (migration 0014), for an import as for any edit.
    now = timezone.now()
    for fields, customers in decided.updates.items():
        for customer in customers:
            customer.updated_at = now
        plain.bulk_update(customers, [*fields, "updated_at"])


def import_summary(record: CustomerImport) -> str:
    """One line on what an import did, read from its record."""
    mode = " (dry run)" if record.dry_run else ""
    if record.status in (ImportStatus.REFUSED, ImportStatus.FAILED):
        return f"import #{record.pk}{mode} {record.status}: {record.problem}"
    verbs = ("to create", "to update") if record.dry_run else ("created", "updated")
    text = (
        f"import #{record.pk}{mode} of {record.name}: {record.row_count} row(s), "
        f"{record.created_count} {verbs[0]}, {record.updated_count} {verbs[1]}, "
        f"{record.unchanged_count} unchanged, {record.refused_count} refused"
    )
    if record.sync_queued:
        text += "; one sync task queued"
    if record.writeback_error:
        text += f"; {record.writeback_error}"
    elif record.writeback_count is not None:
        text += f"; {record.writeback_count} row(s) written back"
    return text
