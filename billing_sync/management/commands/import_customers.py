"""Import customers from a CSV or JSON Lines file, or from the company's own database."""

from __future__ import annotations

import argparse
from typing import Any, cast

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from billing_sync.database import DatabaseUnavailable, first_line
from billing_sync.imports.customer_import import (
    INTERRUPTED,
    ImportObserver,
    ImportOptions,
    customers_import_file,
)
from billing_sync.imports.files import FORMATS
from billing_sync.imports.rows import IMPORT_FIELDS
from billing_sync.imports.source import SourceNotConfigured, customers_import_source
from billing_sync.management.base import EXIT_SETUP, Ending, Observers, ZohoCommand
from billing_sync.management.import_output import (
    ImportPrinter,
    ImportProgress,
    ImportRows,
    import_exit,
    import_problems,
    import_values,
)
from billing_sync.management.printing import Printer
from billing_sync.models import CustomerImport, ImportStatus


def column_rename(value: str) -> tuple[str, str]:
    """argparse type for --map "Source column=field"."""
    source, equals, field = value.rpartition("=")
    if not equals or not source.strip() or not field.strip():
        raise argparse.ArgumentTypeError(f'{value!r} is not "Source column=field"')
    return source, field


class Command(ZohoCommand):
    help = (
        "Import customers, matched by account_number: from a CSV file (a header row of our "
        f"field names: {', '.join(IMPORT_FIELDS)}; UTF-8 with or without a BOM) or JSON Lines "
        "file, or with --source from the company's database (CUSTOMER_SOURCE_URL and "
        "CUSTOMER_SOURCE_QUERY; then our Zoho ids are written back). New accounts are created, "
        "known ones get the columns the source carries, nothing is deleted; a refused row is "
        "named with its line, column and reason, and the others are imported. Exits 1 when a "
        "row was refused, 2 when the file cannot be read or a column is unknown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "path", nargs="?", metavar="PATH", help="The file to import; - for standard input."
        )
        parser.add_argument(
            "--source",
            action="store_true",
            help="Import what CUSTOMER_SOURCE_QUERY returns from the company's database (read "
            "only), then write our Zoho ids and statuses back where they differ.",
        )
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="The file's format (default: by its extension, .csv or .jsonl; CSV on stdin).",
        )
        parser.add_argument(
            "--map",
            type=column_rename,
            action="append",
            default=[],
            metavar='"COLUMN=field"',
            help='Read the source\'s COLUMN as our field, e.g. --map "Account No=account_number" '
            "(repeatable).",
        )
        parser.add_argument(
            "--ignore-column",
            action="append",
            default=[],
            metavar="COLUMN",
            help="Skip this column of the source on purpose (repeatable).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say per row what would happen (create, update and its fields, unchanged, "
            "refused); write no customer.",
        )

    echoed_options = ("dry_run",)

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["path"]) == options["source"]:
            raise CommandError(
                "Give the file to import (- for standard input), or --source.",
                returncode=EXIT_SETUP,
            )
        import_options = ImportOptions(
            dry_run=options["dry_run"],
            renames=dict(options["map"]),
            ignore=tuple(options["ignore_column"]),
        )
        watched = self.stderr if self.as_json else self.stdout
        progress = ImportProgress.on_terminal(watched, label="Importing")
        self.rows = ImportRows() if self.as_json else None
        printer = None
        if not self.as_json:
            every_row = options["dry_run"] or options["verbosity"] > 1
            printer = ImportPrinter(Printer(self.stdout, self.style, progress), every_row=every_row)
        try:
            observers = cast(ImportObserver, Observers(progress, self.rows, printer))
            record = self._import(options, import_options, observers)
        finally:
            if progress is not None:
                progress.close()
        exit_code, message = import_exit(record)
        if printer is not None and record.status != ImportStatus.REFUSED:
            printer.results(record)
        self.end(self.import_ending(record, exit_code, message, import_problems(record)))

    def stopped_by(self, exc: BaseException) -> tuple[int, str, bool]:
        exit_code, problem, said_in_full = super().stopped_by(exc)
        if isinstance(exc, KeyboardInterrupt):
            problem = INTERRUPTED
        elif isinstance(exc, DatabaseError | DatabaseUnavailable) and self._record() is not None:
            problem = (
                f"The import stopped part way ({first_line(exc)}); the rows before that are "
                "imported: run it again to finish."
            )
        return exit_code, problem, said_in_full

    def ended_early(self, exit_code: int, problem: str) -> Ending:
        """The import ended part way: its document holds the rows it wrote, counted (the
        database, which may be what failed, is not read again)."""
        record = self._record()
        if record is None or self.rows is None:
            return super().ended_early(exit_code, problem)
        return self.import_ending(record, exit_code, problem, [problem], counts=self.rows.counts())

    def _record(self) -> CustomerImport | None:
        rows = getattr(self, "rows", None)
        return None if rows is None else rows.record

    def import_ending(
        self,
        record: CustomerImport,
        exit_code: int,
        message: str,
        problems: list[str],
        counts: dict[str, int] | None = None,
    ) -> Ending:
        """The import's ending; its document: its rows as written (with --json), the rest from
        its record (`counts`: the rows', where the record is not read)."""
        if self.rows is None:
            return Ending(exit_code, message, problems)
        return Ending(
            exit_code,
            message,
            problems,
            values=import_values(record, self.rows.columns, counts),
            listed="rows",
            items=self.rows.texts,
        )

    def _import(
        self, options: dict[str, Any], import_options: ImportOptions, observer: ImportObserver
    ) -> CustomerImport:
        try:
            if options["source"]:
                return customers_import_source(options=import_options, observer=observer)
            return customers_import_file(
                path=options["path"],
                format=options["format"],
                options=import_options,
                observer=observer,
            )
        except SourceNotConfigured as exc:
            raise CommandError(str(exc), returncode=EXIT_SETUP) from exc
