"""How `import_customers` shows an import: lines on a terminal, or one JSON document.

Rows are shown a batch at a time, once the batch is written (the document: at the import's
end); the totals are read from the import's record (CustomerImport) when it ends.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import Any

from billing_sync.imports.customer_import import ImportObserver, RowAction, RowOutcome
from billing_sync.imports.rows import Columns
from billing_sync.management.base import EXIT_FAILED, EXIT_SETUP
from billing_sync.management.documents import IMPORT_COUNTS, json_text, writeback_object
from billing_sync.management.printing import Printer, writeback_lines
from billing_sync.management.progress import ProgressBar
from billing_sync.models import CustomerImport, ImportStatus


def import_exit(record: CustomerImport) -> tuple[int, str]:
    """The exit code of an import, and the message that goes with a non-zero one."""
    if record.status == ImportStatus.REFUSED:
        return EXIT_SETUP, f"Nothing imported: {record.problem}"
    if record.refused_count:
        return EXIT_FAILED, (
            f"{record.refused_count} row(s) refused (import #{record.pk}); the others are "
            f"{'checked' if record.dry_run else 'imported'}."
        )
    return 0, ""


def import_problems(record: CustomerImport) -> list[str]:
    """What is wrong after an import, in a few sentences (never one per row)."""
    problems = []
    if record.problem:
        problems.append(record.problem)
    if record.refused_count:
        problems.append(f"{record.refused_count} row(s) refused")
    if record.writeback_error:
        problems.append(record.writeback_error)
    return problems


class ImportProgress(ProgressBar, ImportObserver):
    """Rows read on a bar, with their rate and the time left when the total is known."""

    unit = " rows"
    min_interval = 0  # one update a batch of 1,000 rows: each is drawn

    def import_started(
        self, customer_import: CustomerImport, columns: Columns, total: int | None
    ) -> None:
        self.total = total
        self._shown()

    def rows_written(self, outcomes: list[RowOutcome]) -> None:
        self._shown().update(len(outcomes))


def row_text(outcome: RowOutcome) -> str:
    """E.g. "line 3: CT-2025-00013 update: email, phone"."""
    account = outcome.account_number or "(no account number)"
    text = f"line {outcome.line}: {account} {outcome.action}"
    if outcome.action == RowAction.UPDATE:
        text += f": {', '.join(outcome.fields)}"
    if outcome.problems:
        text += ": " + "; ".join(str(problem) for problem in outcome.problems)
    return text


class ImportPrinter(ImportObserver):
    """Prints an import: its columns, the refused rows (every row with `every_row`), totals."""

    def __init__(self, printer: Printer, *, every_row: bool) -> None:
        self.p = printer
        self.every_row = every_row

    def import_started(
        self, customer_import: CustomerImport, columns: Columns, total: int | None
    ) -> None:
        mode = " (dry run: nothing is written)" if customer_import.dry_run else ""
        self.p.banner(
            "start",
            f"Customer import #{customer_import.pk} from {customer_import.name} "
            f"({customer_import.format}){mode}",
        )
        self.p.line(f"Columns: {columns_text(columns)}")
        if total is not None:
            self.p.line(f"Rows to read: {total}")
        self.p.line()

    def rows_written(self, outcomes: list[RowOutcome]) -> None:
        for outcome in outcomes:
            if outcome.action == RowAction.REFUSED:
                self.p.mark("fail", row_text(outcome), indent="  ")
            elif self.every_row:
                self.p.line(f"  {row_text(outcome)}")

    def results(self, record: CustomerImport) -> None:
        """The totals, as the import's record holds them."""
        dry = record.dry_run
        self.p.rule()
        self.p.mark("stats", f"Import {'Preview' if dry else 'Results'} (#{record.pk})")
        self.p.rule()
        self.p.line(f"Rows read: {record.row_count}")
        self.p.mark("ok", f"{'Would create' if dry else 'Created'}: {record.created_count}")
        self.p.line(f"{'Would update' if dry else 'Updated'}: {record.updated_count}")
        self.p.line(f"Unchanged: {record.unchanged_count}")
        refused = f"Refused: {record.refused_count}"
        if record.refused_count:
            refused += " (each named above, and in the admin under Customer imports)"
        self.p.mark("fail", refused)
        if record.sync_queued:
            self.p.line("Queued one sync task: a worker sends the new and changed customers.")
        elif not dry and record.created_count + record.updated_count:
            self.p.line(
                "They reach Zoho with the next zoho-sync run, or now with "
                "`manage.py zoho_sync_customers`."
            )
        writeback_lines(self.p, record)


def columns_text(columns: Columns) -> str:
    """E.g. `account_number ("Account No"), email; ignored: Notes`."""
    placed = [
        field if column == field else f"{field} ({column!r})"
        for column, field in columns.fields.items()
    ]
    text = ", ".join(placed)
    if columns.ignored or columns.unnamed:
        text += f"; ignored: {', '.join([*columns.ignored, *columns.unnamed])}"
    if columns.written_by_sync:
        text += f"; written by the sync, not imported: {', '.join(columns.written_by_sync)}"
    return text


def row_object(outcome: RowOutcome) -> dict[str, Any]:
    """One row of an import, as written."""
    return {
        "line": outcome.line,
        "account_number": outcome.account_number or None,
        "action": str(outcome.action),
        "fields": list(outcome.fields),
        "problems": [
            {"column": problem.column or None, "reason": problem.reason}
            for problem in outcome.problems
        ],
    }


def import_values(
    record: CustomerImport, columns: Columns | None, counts: dict[str, int] | None = None
) -> dict[str, Any]:
    """An import's document but for its rows, read from its record (columns: None when the
    import never placed them; `counts`: the rows' own, where the record cannot be read)."""
    if counts is None:
        counts = {name: getattr(record, field) for name, field in IMPORT_COUNTS.items()}
    return {
        "import_id": record.pk,
        "dry_run": record.dry_run,
        "source": {"kind": record.source, "name": record.name, "format": record.format or None},
        "columns": dict(columns.fields) if columns else {},
        "ignored_columns": [*columns.ignored, *columns.unnamed] if columns else [],
        "written_by_sync": list(columns.written_by_sync) if columns else [],
        "counts": counts,
        "sync_queued": record.sync_queued,
        "writeback": writeback_object(record),
    }


class ImportRows(ImportObserver):
    """Keeps an import's rows as JSON text, each batch once written, for its document at its
    end (in a temporary file past 1 MB: 100,000 rows hold no memory), and counts them: each
    batch's rows and the record's counts are committed together, so these counts are the
    record's, for an import whose database went away before its end."""

    def __init__(self) -> None:
        self.record: CustomerImport | None = None
        self.columns: Columns | None = None
        self.actions: Counter[RowAction] = Counter()
        # Open for the command's life: read at its end, after a failure too; gone with it.
        self.file = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=2**20, mode="w+", encoding="ascii"
        )

    def import_started(
        self, customer_import: CustomerImport, columns: Columns, total: int | None
    ) -> None:
        self.record = customer_import
        self.columns = columns

    def rows_written(self, outcomes: list[RowOutcome]) -> None:
        for outcome in outcomes:
            self.file.write(json_text(row_object(outcome)) + "\n")
            self.actions[outcome.action] += 1

    def counts(self) -> dict[str, int]:
        """The document's counts, from the rows written."""
        return {
            "rows": sum(self.actions.values()),
            "created": self.actions[RowAction.CREATE],
            "updated": self.actions[RowAction.UPDATE],
            "unchanged": self.actions[RowAction.UNCHANGED],
            "refused": self.actions[RowAction.REFUSED],
        }

    def texts(self) -> Iterator[str]:
        """Each row kept, in order."""
        self.file.seek(0)
        for line in self.file:
            yield line.rstrip("\n")
