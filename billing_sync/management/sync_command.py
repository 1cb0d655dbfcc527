"""What the backfill and retry commands share: options, error handling, exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar

from django.core.management.base import CommandError, CommandParser

from billing_sync.management.json_output import (
    RunDocument,
    ZohoCommand,
    empty_run_document,
    run_problems,
)
from billing_sync.management.printing import Printer, RunPrinter
from billing_sync.management.progress import RunProgress
from billing_sync.models import Customer, SyncRun, SyncTrigger
from billing_sync.services.run_report import CustomerResult, RunObserver, RunReport
from billing_sync.zoho.errors import ZohoConfigError

EXIT_FAILED_CUSTOMERS = 1
EXIT_BAD_CONFIG = 2
# Stopped by Ctrl-C, as a shell reports it.
EXIT_INTERRUPTED = 130


def non_negative_seconds(value: str) -> float:
    """argparse type for --max-wait."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return seconds


def add_max_wait_argument(parser: CommandParser) -> None:
    """--max-wait, as every command that talks to Zoho takes it."""
    parser.add_argument(
        "--max-wait",
        type=non_negative_seconds,
        default=None,
        metavar="SECONDS",
        help="Longest total wait for a Zoho rate-limit block to end (and, in a run, for "
        "earlier creates to settle) before stopping (default: ZOHO_MAX_WAIT_SECONDS; 0 stops "
        "at the first block).",
    )


def positive_int(value: str) -> int:
    """argparse type for --limit."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


class SyncCommand(ZohoCommand):
    """Base for commands that run the sync service and print the runbook's report."""

    trigger = SyncTrigger.COMMAND
    # The sync service this command runs (runs.py), and whether it takes --limit.
    service: ClassVar[Callable[..., RunReport]]
    takes_limit = False
    title = ""
    noun = ""
    verb = ""
    action = ""
    results_heading = ""
    success_message = ""

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

    def empty_document(self) -> dict[str, Any]:
        return empty_run_document(dry_run=bool(self.options.get("dry_run")))

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        label = "Checking" if dry_run else self.verb
        # The bar goes where a person watches: stdout, or stderr when stdout is the document.
        watched = self.stderr if self.as_json else self.stdout
        progress = RunProgress.on_terminal(watched, label=label)
        output: RunDocument | RunPrinter
        if self.as_json:
            output = RunDocument(self, dry_run=dry_run)
        else:
            stdout = progress.lines_above(self.stdout) if progress else self.stdout
            output = RunPrinter(
                Printer(stdout, self.style),
                title=self.title,
                noun=self.noun,
                verb=self.verb,
                action=self.action,
                dry_run=dry_run,
            )
            output.header()
        try:
            report = self.run_service(options, RunObservers(progress, output))
        except ZohoConfigError as exc:
            self._failed(output, EXIT_BAD_CONFIG, str(exc))
            raise CommandError(str(exc), returncode=EXIT_BAD_CONFIG) from exc
        except CommandError as exc:
            self._failed(output, exc.returncode, str(exc))
            raise
        except KeyboardInterrupt:
            self._failed(output, EXIT_INTERRUPTED, "Interrupted (Ctrl-C) before the run ended")
            raise
        except Exception as exc:
            self._failed(output, EXIT_FAILED_CUSTOMERS, f"The run failed: {exc}")
            raise
        finally:
            if progress is not None:
                progress.close()
        exit_code, message = run_exit(report, dry_run=dry_run)
        if isinstance(output, RunDocument):
            problems = run_problems(report, refused_data=output.refused_data)
            output.close(exit_code=exit_code, problems=problems, report=report)
        elif not dry_run and report.selected_count:
            output.results(report, heading=self.results_heading)
            if not exit_code:
                output.p.mark("ok", self.success_message)
        if exit_code:
            raise CommandError(message, returncode=exit_code)

    def _failed(self, output: RunDocument | RunPrinter, exit_code: int, problem: str) -> None:
        """The run did not end normally: with --json, close the document saying so."""
        if isinstance(output, RunDocument):
            output.close(exit_code=exit_code, problems=[problem])

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
        return EXIT_BAD_CONFIG, (
            f"Zoho refused this set-up: fix what the run says above, then rerun "
            f"(run #{report.run.pk})."
        )
    if not report.ok:
        return EXIT_FAILED_CUSTOMERS, (
            f"{report.failed_count + report.waiting_count} customer(s) not synced "
            f"(run #{report.run.pk})."
        )
    return 0, ""


class RunObservers(RunObserver):
    """Tells each of its observers (None ones left out), in order, about the run."""

    def __init__(self, *observers: RunObserver | None) -> None:
        self.observers = [observer for observer in observers if observer is not None]

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        # The customers stream once: only the last observer (the output) reads them.
        for observer in self.observers[:-1]:
            observer.run_started(run, ())
        self.observers[-1].run_started(run, customers)

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        for observer in self.observers:
            observer.customer_started(index, total, customer)

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        for observer in self.observers:
            observer.customer_finished(index, total, result)

    def customer_waiting(self, index: int, total: int, customer: Customer, until: datetime) -> None:
        for observer in self.observers:
            observer.customer_waiting(index, total, customer, until)

    def block_wait(self, until: datetime, reason: str) -> None:
        for observer in self.observers:
            observer.block_wait(until, reason)

    def settle_wait(self, until: datetime) -> None:
        for observer in self.observers:
            observer.settle_wait(until)

    def pace_wait(self, until: datetime) -> None:
        for observer in self.observers:
            observer.pace_wait(until)
