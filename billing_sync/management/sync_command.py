"""What the run commands share (backfill, retry, sync): options, output, exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, ClassVar, cast

from django.core.management.base import CommandParser
from django.db import DatabaseError

from billing_sync.database import database_steps
from billing_sync.management.base import (
    EXIT_FAILED,
    EXIT_SETUP,
    Ending,
    Observers,
    ZohoCommand,
    add_max_wait_argument,
    positive_int,
)
from billing_sync.management.documents import run_customers, run_document
from billing_sync.management.printing import Printer, RunPrinter
from billing_sync.management.progress import RunProgress
from billing_sync.management.run_words import CHECKING, RUN_WORDS
from billing_sync.models import Customer, SyncRun, SyncRunKind, SyncTrigger
from billing_sync.run.report import RunObserver, RunReport
from billing_sync.run.stops import RunInterrupted


class SyncCommand(ZohoCommand):
    """Base for commands that run the sync service and print the runbook's report."""

    trigger = SyncTrigger.COMMAND
    echoed_options = ("dry_run",)
    # The kind of run (its words: RUN_WORDS), the sync service that runs it (runs.py), and
    # whether it takes --limit.
    kind: ClassVar[SyncRunKind]
    service: ClassVar[Callable[..., RunReport]]
    takes_limit = False

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List what would be synced and check the data; send nothing to Zoho.",
        )
        add_max_wait_argument(parser)
        if self.takes_limit:
            parser.add_argument(
                "--limit",
                type=positive_int,
                default=None,
                metavar="N",
                help="Sync at most N customers (oldest first).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        # The bar goes where a person watches: stdout, or stderr when stdout is the document.
        watched = self.stderr if self.as_json else self.stdout
        words = RUN_WORDS[self.kind]
        progress = RunProgress.on_terminal(watched, label=CHECKING if dry_run else words.doing)
        self.started = RunStarted()
        printer: RunPrinter | None = None
        if not self.as_json:
            printer = RunPrinter(
                Printer(self.stdout, self.style, progress),
                words=words,
                dry_run=dry_run,
            )
            printer.header()
        try:
            observers = Observers(self.started, progress, printer)
            report = self.run_service(options, cast(RunObserver, observers))
        finally:
            if progress is not None:
                progress.close()
        exit_code, message = run_exit(report, dry_run=dry_run)
        if printer is not None and not dry_run and report.selected_count:
            printer.results(report)
            if not exit_code:
                printer.p.mark("ok", words.success_message)
        self.end(self.run_ending(report, exit_code, message, run_problems(report)))

    def stopped_by(self, exc: BaseException) -> tuple[int, str, bool]:
        exit_code, problem, said_in_full = super().stopped_by(exc)
        run = self._run()
        if isinstance(exc, KeyboardInterrupt) and run is not None:
            problem = f"{RunInterrupted()} (run #{run.pk})."
        return exit_code, problem, said_in_full

    def ended_early(self, exit_code: int, problem: str) -> Ending:
        """The run did not end normally: its document says what its record holds so far (one
        look, no waiting: the database may be what failed; where it cannot be read, the
        document says why, no more)."""
        early = super().ended_early(exit_code, problem)
        run = self._run()
        if run is None or not self.as_json:
            return early
        unread = replace(early, values={"run_id": run.pk})
        try:
            report = RunReport.of(run)
        except DatabaseError:
            return unread
        ending = self.run_ending(report, exit_code, problem, [problem], patient=False)
        return replace(ending, unread=unread)

    def _run(self) -> SyncRun | None:
        return getattr(self, "started", RunStarted()).run

    def run_ending(
        self,
        report: RunReport,
        exit_code: int,
        message: str,
        problems: list[str],
        *,
        patient: bool = True,
    ) -> Ending:
        """The run's ending, its document read from its record (`patient`: riding out a lost
        database)."""
        return Ending(
            exit_code,
            message,
            problems,
            values=run_document(self.command_name, report),
            listed="customers",
            items=lambda: run_customers(report.run),
            steps=database_steps() if patient else None,
        )

    def run_service(self, options: dict[str, Any], observer: RunObserver) -> RunReport:
        """Call the sync service for this command, `observer` hearing about the run."""
        limit = {"limit": options["limit"]} if self.takes_limit else {}
        return type(self).service(
            trigger=self.trigger,
            dry_run=options["dry_run"],
            max_wait=options["max_wait"],
            observer=observer,
            **limit,
        )


def run_exit(report: RunReport, *, dry_run: bool) -> tuple[int, str]:
    """The exit code of a run, and the message that goes with a non-zero one."""
    if dry_run or not report.selected_count:
        return 0, ""
    if report.stop_needs_setup:
        return EXIT_SETUP, (
            f"Zoho refused this set-up: fix what the run says above, then rerun "
            f"(run #{report.run.pk})."
        )
    if not report.ok:
        not_synced = report.failed_count + report.waiting_count + report.unaccounted_count
        return EXIT_FAILED, f"{not_synced} customer(s) not synced (run #{report.run.pk})."
    return 0, ""


def run_problems(report: RunReport) -> list[str]:
    """What is wrong after a run, in a few sentences (never one per customer)."""
    problems = []
    if report.stop_reason:
        problems.append(f"Run stopped: {report.stop_reason}")
    if report.failed_count:
        problems.append(f"{report.failed_count} customer(s) failed")
    if report.waiting_count:
        problems.append(
            f"{report.waiting_count} customer(s) waiting for an earlier create to settle"
        )
    if report.unaccounted_count:
        problems.append(
            f"{report.unaccounted_count} customer(s) taken up without a final attempt on record"
        )
    if report.run.dry_run and report.refused_count:
        problems.append(f"{report.refused_count} customer(s) have data our checks refuse")
    return problems


class RunStarted(RunObserver):
    """Remembers the run once it has started (a run that fails part way is still reported)."""

    run: SyncRun | None = None

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        self.run = run
