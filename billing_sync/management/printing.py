"""How our commands write to a terminal (zoho_* and import_customers): the runbook's layout, emoji
when they survive."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.core.management.base import OutputWrapper
from django.core.management.color import Style

from billing_sync.management.run_words import RunWords
from billing_sync.models import AttemptOutcome, Customer, CustomerImport, SyncRun
from billing_sync.run.report import CustomerResult, RunObserver, RunReport, WaitKind
from billing_sync.times import in_utc

if TYPE_CHECKING:
    from billing_sync.management.progress import ProgressBar

# Each marker: emoji where the output can encode them, else a plain ASCII stand-in.
MARKERS = {
    "ok": ("✅", "[OK]"),
    "fail": ("❌", "[FAIL]"),
    "time": ("⏱️ ", "[TIME]"),
    "dry": ("🔍", "[DRY RUN]"),
    "retry": ("🔄", "[RETRY]"),
    "stats": ("📊", "[STATS]"),
    "start": ("🚀", "[START]"),
    "wait": ("⏳", "[WAIT]"),
    "warn": ("⚠️ ", "[WARN]"),
    "rule": ("═", "="),
}
EMOJI = {name: emoji for name, (emoji, _) in MARKERS.items()}
ASCII = {name: ascii for name, (_, ascii) in MARKERS.items()}
RULE_WIDTH = 60


def markers_for(stdout: OutputWrapper) -> dict[str, str]:
    """Emoji when the output stream can encode them, else plain ASCII stand-ins."""
    encoding = getattr(stdout, "encoding", None) or "utf-8"
    try:
        "".join(EMOJI.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return EMOJI


class Printer:
    """Writes a command's lines through its `stdout`, led by markers, coloured by its `style`
    (Django leaves colour out where the output is not a terminal)."""

    def __init__(
        self, stdout: OutputWrapper, style: Style, progress: ProgressBar | None = None
    ) -> None:
        self.stdout = stdout
        self.progress = progress  # lines go above its bar
        self.marks = markers_for(stdout)
        self.styles: dict[str, Callable[[str], str]] = {
            "ok": style.SUCCESS,
            "fail": style.ERROR,
            "warn": style.WARNING,
            "wait": style.WARNING,
        }

    def line(self, text: str = "", style_func: Callable[[str], str] | None = None) -> None:
        with self.progress.above() if self.progress else contextlib.nullcontext():
            self.stdout.write(text, style_func=style_func)

    def mark(self, name: str, text: str, *, indent: str = "") -> None:
        """A line led by the marker `name` (ok, fail, warn, wait, ...)."""
        self.line(f"{indent}{self.marks[name]} {text}", style_func=self.styles.get(name, str))

    def rule(self) -> None:
        self.line(self.marks["rule"] * RULE_WIDTH)

    def banner(self, marker: str, title: str) -> None:
        self.mark(marker, title)
        self.rule()


class RunPrinter(RunObserver):
    """Prints a run (backfill, retry or sync) as the runbook shows it, in its words."""

    def __init__(self, printer: Printer, *, words: RunWords, dry_run: bool) -> None:
        self.p = printer
        self.words = words
        self.dry_run = dry_run

    def header(self) -> None:
        self.p.banner("retry", self.words.title)
        mode = (
            f"{self.p.marks['dry']} DRY RUN" if self.dry_run else f"{self.p.marks['ok']} LIVE SYNC"
        )
        self.p.line(f"Mode: {mode}")
        self.p.rule()
        self.p.line()
        self.p.mark("stats", f"Fetching {self.words.noun} customers...")

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        self.p.line(f"Found {run.selected_count} {self.words.noun} customer(s):")
        for index, customer in enumerate(customers, 1):
            self.p.line(f"  {index}. {customer.email} - {customer.account_number}")
        self.p.line()
        if not run.selected_count:
            return
        if self.dry_run:
            self.p.mark("dry", f"DRY RUN: Would {self.words.verb} these customers")
        else:
            self.p.mark("start", f"Starting {self.words.verb}...")
        self.p.line()

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        """The customer's block, once its final attempt is on record."""
        if self.dry_run:
            if result.error:
                self.p.mark("warn", f"{result.account_number}: {result.error}", indent="  ")
            return
        self.p.line(f"[{index}/{total}] {self.words.doing}: {result.email}")
        self.p.line(f"  Account: {result.account_number}")
        self.p.line(f"  Name: {result.display_name or '(none)'}")
        outcome = result.outcome
        if result.synced:
            how = {
                AttemptOutcome.ADOPTED: " (adopted existing Zoho customer)",
                AttemptOutcome.UPDATED: " (local edits sent to Zoho)",
                AttemptOutcome.DEACTIVATED: " (account closed: marked inactive in Zoho)",
                AttemptOutcome.REACTIVATED: " (account reopened: marked active in Zoho)",
            }.get(outcome, "")
            self.p.mark("ok", f"Successfully synced: {result.zoho_customer_id}{how}", indent="  ")
        elif outcome == AttemptOutcome.SKIPPED:
            self.p.line(f"  Skipped: {result.error}")
        elif outcome == AttemptOutcome.WAITING:
            self.p.mark("wait", f"Left for a later run: {result.error}", indent="  ")
        else:
            self.p.mark("fail", f"Failed: {result.error}", indent="  ")
        self.p.line()

    def waiting(self, kind: WaitKind, until: datetime | None = None, reason: str = "") -> None:
        if kind == WaitKind.DATABASE:
            text = f"Lost the database ({reason}); waiting for it (ZOHO_DB_OUTAGE_WAIT_SECONDS)..."
        elif kind == WaitKind.PACE or until is None:
            return  # the budget's pauses are the bar's: a line each would drown the run's
        elif kind == WaitKind.BLOCK:
            seconds = max(0.0, until.timestamp() - datetime.now(tz=UTC).timestamp())
            text = f"Zoho is blocking requests until {in_utc(until)}; waiting {seconds:.0f} s..."
        elif kind == WaitKind.UNREACHABLE:
            text = f"{reason}; looking again at {in_utc(until)}..."
        else:
            text = (
                f"Waiting until {in_utc(until)} for its earlier create to settle in Zoho, then "
                "looking for it..."
            )
        self._waiting(text)

    def customer_waiting(self, index: int, total: int, customer: Customer, until: datetime) -> None:
        self.p.line(f"[{index}/{total}] {self.words.doing}: {customer.email}")
        self._waiting(
            f"An earlier create may still be settling in Zoho until {in_utc(until)}: "
            "looking again at the end of the run"
        )
        self.p.line()

    def _waiting(self, text: str) -> None:
        self.p.mark("wait", text, indent="  ")

    def results(self, report: RunReport) -> None:
        self.p.rule()
        self.p.mark("stats", self.words.results_heading)
        self.p.rule()
        self.p.line(f"Total Attempted: {report.attempted_count}")
        self.p.mark("ok", f"Successfully Synced: {report.synced_count}")
        self.p.mark("fail", f"Failed: {report.failed_count}")
        if report.unreached_count:
            self.p.line(f"Not reached (the run stopped first): {report.unreached_count}")
        if report.skipped_count:
            self.p.line(f"Skipped: {report.skipped_count}")
        if report.updated_count:
            self.p.line(
                f"Of those synced, local edits sent to Zoho: {report.updated_count} "
                "(closing and reopening included)"
            )
        if report.waiting_count:
            self.p.mark("wait", f"Waiting for an earlier create to settle: {report.waiting_count}")
        self.p.line(f"{self.p.marks['time']} Duration: {report.duration_seconds:.2f} seconds")
        writeback_lines(self.p, report.run)
        self.p.line()
        if report.stop_reason:
            self.p.mark("fail", f"Run stopped: {report.stop_reason}.")
            then = "once that is fixed, " if report.stop_needs_setup else ""
            self.p.line(
                f"   {report.failed_count} customer(s) not synced; "
                f"{then}`manage.py zoho_retry_failed` will take those left failed."
            )


def writeback_lines(printer: Printer, record: SyncRun | CustomerImport) -> None:
    """What the write-back into the company's database did, as recorded (nothing when none ran)."""
    if record.writeback_error:
        printer.mark("warn", f"{record.writeback_error} (the next write-back catches up)")
    elif record.writeback_count is not None:
        printer.line(
            f"Written back to the company's database: {record.writeback_count} row(s) changed"
        )
