"""The `--json` contract of the zoho_* commands: exactly one JSON document on stdout.

Every document has `command` (first), `exit_code` and `problems` (last): the code the command
exits with (the same as without --json) and what is wrong, as sentences (empty when nothing
is). Each kind of command adds its keys, always all of them, null or empty where the command
never got that far (a configuration error), so a script can rely on the shape. Times are ISO
8601 with their offset. Nothing else reaches stdout: Django's error message, logs and a
progress bar go to stderr. No secret is ever written.

A run's `customers` array is streamed, not collected: the document's head is written when the
run has selected its customers, then one customer per line as each finishes, then the counts.
A run over 100,000 customers holds none of them in memory for its output, and a reader sees it
advance line by line. If the run fails half-way, the document is still closed (the failure in
`problems`), so stdout parses whatever happens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_sync.models import Customer, CustomerImport, SyncRun
from billing_sync.services.run_report import CustomerResult, RunObserver, RunReport

# The counts every run document has, in this order (RunReport's `<name>_count`).
RUN_COUNTS = (
    "selected",
    "attempted",
    "synced",
    "failed",
    "skipped",
    "waiting",
    "finished",
    "unreached",
    "updated",
)
# What a run document says after its customers.
TAIL_KEYS = ("counts", "stopped", "duration_seconds", "requests", "writeback")


def json_text(value: Any) -> str:
    """`value` as JSON: ASCII only, so any terminal encoding can carry it."""
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ZohoCommand(BaseCommand):
    """Base of the zoho_* commands: `--json`, and one way to end in either mode."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print one JSON document on stdout instead of text (same exit codes; shape "
            "in docs/json-output.md); messages and progress go to stderr.",
        )

    @property
    def command_name(self) -> str:
        return type(self).__module__.rpartition(".")[2]

    def execute(self, *args: Any, **options: Any) -> str | None:
        """Run the command; with --json, a CommandError the command raised before writing its
        document still ends with one (the error as its problem, the same exit code)."""
        self.options = options
        self.as_json = bool(options.get("json"))
        self.document_sent = False
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            if self.as_json and not self.document_sent:
                self.send_document(exit_code=exc.returncode, problems=[str(exc)])
            raise

    def empty_document(self) -> dict[str, Any]:
        """This kind of command's keys, valued as when it never got to them."""
        return {}

    def send_document(self, *, exit_code: int, problems: list[str], **values: Any) -> None:
        """Write the whole document: `values` over the empty one."""
        document = {"command": self.command_name, **self.empty_document(), **values}
        document.update(exit_code=exit_code, problems=problems)
        self.write_json(json_text(document) + "\n")
        self.document_sent = True

    def write_json(self, text: str) -> None:
        self.stdout.write(text, ending="")
        self.stdout.flush()

    def end(
        self, exit_code: int, message: str = "", problems: list[str] | None = None, **values: Any
    ) -> None:
        """Finish: the document (with --json), then exit with `exit_code` (`message` to stderr)."""
        if self.as_json:
            self.send_document(exit_code=exit_code, problems=problems or [], **values)
        if exit_code:
            raise CommandError(message, returncode=exit_code)


def customer_object(result: CustomerResult) -> dict[str, Any]:
    """One finished customer of a run."""
    return {
        "customer_id": result.customer_id,
        "email": result.email,
        "account_number": result.account_number,
        "outcome": str(result.outcome),
        "zoho_customer_id": result.zoho_customer_id or None,
        "error": result.error or None,
        "waiting_until": result.waiting_until.isoformat() if result.waiting_until else None,
    }


def run_counts(report: RunReport | None) -> dict[str, int]:
    """The run's counts, as RunReport reads them from the record (all zero without a run)."""
    if report is None:
        return dict.fromkeys(RUN_COUNTS, 0)
    return {name: getattr(report, f"{name}_count") for name in RUN_COUNTS}


def empty_run_document(*, dry_run: bool) -> dict[str, Any]:
    """A run document's keys, for a run that never started."""
    return {
        "run_id": None,
        "dry_run": dry_run,
        "customers": [],
        "counts": run_counts(None),
        "stopped": None,
        "duration_seconds": 0.0,
        "requests": 0,
        "writeback": None,
    }


def run_tail(report: RunReport) -> dict[str, Any]:
    """What a run document says after its customers."""
    stopped = None
    if report.stop_reason:
        stopped = {"reason": report.stop_reason, "needs_setup": report.stop_needs_setup}
    return {
        "counts": run_counts(report),
        "stopped": stopped,
        "duration_seconds": round(report.duration_seconds, 3),
        "requests": report.run.request_count,
        "writeback": writeback_object(report.run),
    }


def writeback_object(record: SyncRun | CustomerImport) -> dict[str, Any] | None:
    """What the write-back into the company's database did, as recorded; None when none ran."""
    if record.writeback_count is None and not record.writeback_error:
        return None
    return {"rows": record.writeback_count, "error": record.writeback_error or None}


class StreamedList:
    """A document whose one list is written item by item: the keys before it, then each item on
    a line of its own, then the keys after it. Its keys stay in that order and stdout parses
    once it is closed."""

    def __init__(self, command: ZohoCommand, name: str) -> None:
        self.command = command
        self.name = name
        self.opened = False
        self.items = 0

    def open(self, head: dict[str, Any]) -> None:
        """`command`, then `head`'s keys, then the list's name: its items follow."""
        head = {"command": self.command.command_name, **head}
        self.command.write_json(json_text(head)[:-1] + f", {json_text(self.name)}: [")
        self.opened = True

    def add(self, item: dict[str, Any]) -> None:
        lead = ",\n" if self.items else "\n"
        self.command.write_json(lead + json_text(item))
        self.items += 1

    def close(self, tail: dict[str, Any], *, exit_code: int, problems: list[str]) -> None:
        """The keys after the list, then exit_code and problems: the document is whole."""
        tail = {**tail, "exit_code": exit_code, "problems": problems}
        end = "\n" if self.items else ""
        self.command.write_json(end + "], " + json_text(tail)[1:] + "\n")
        self.command.document_sent = True


class RunDocument(RunObserver):
    """Streams a run's document to the command's stdout while the run goes."""

    def __init__(self, command: ZohoCommand, *, dry_run: bool) -> None:
        self.command = command
        self.dry_run = dry_run
        self.document = StreamedList(command, "customers")
        self.refused_data = 0  # dry run: customers whose data our checks refuse

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        self.document.open({"run_id": run.pk, "dry_run": self.dry_run})

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        self.document.add(customer_object(result))
        self.refused_data += bool(self.dry_run and result.error)

    def close(
        self, *, exit_code: int, problems: list[str], report: RunReport | None = None
    ) -> None:
        """Finish the document: the rest of it, or all of it when the run never started."""
        if not self.document.opened:
            values = empty_run_document(dry_run=self.dry_run)
            if report is not None:
                values |= run_tail(report) | {"run_id": report.run.pk}
            self.command.send_document(exit_code=exit_code, problems=problems, **values)
            return
        empty = empty_run_document(dry_run=self.dry_run)
        tail = {key: empty[key] for key in TAIL_KEYS}
        if report is not None:
            tail |= run_tail(report)
        self.document.close(tail, exit_code=exit_code, problems=problems)


def run_problems(report: RunReport, *, refused_data: int = 0) -> list[str]:
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
    if refused_data:
        problems.append(f"{refused_data} customer(s) have data our checks refuse")
    return problems
