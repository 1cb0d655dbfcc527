"""What every command of ours shares: `--json`, the exit codes, and the one handler for what
ends a command early (it still closes the JSON document, then exits with the right code)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing_sync.management.documents import empty_document, write_document
from billing_sync.services.db_outage import CONNECTION_ERRORS, DatabaseLost, first_line
from billing_sync.zoho.errors import ZohoConfigError, ZohoError

EXIT_OK = 0
# Customers not synced, rows refused, problems found, or the command failed part way.
EXIT_FAILED = 1
# A person must change something first: a setting, the organization, an unreadable file.
EXIT_SETUP = 2
# Stopped by Ctrl-C, as a shell reports it.
EXIT_INTERRUPTED = 130


class ZohoCommand(BaseCommand):
    """Base of our commands: `--json`, and one way to end in either mode."""

    # Options a document carries whatever happens (e.g. "dry_run").
    echoed_options: ClassVar[tuple[str, ...]] = ()

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
        """Run the command; whatever ends it early still ends its document (with --json) and
        leaves with its exit code: Zoho refusing the set-up 2, Ctrl-C 130, Zoho unreadable 1,
        any other failure 1 (its traceback kept for the log)."""
        self.options = options
        self.as_json = bool(options.get("json"))
        self.document_sent = False
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            self.ended_early(exc.returncode, str(exc))
            raise
        except (Exception, KeyboardInterrupt) as exc:
            exit_code, problem, said_in_full = _ending(exc)
            self.ended_early(exit_code, problem)
            if said_in_full:
                raise CommandError(problem, returncode=exit_code) from exc
            raise

    def ended_early(self, exit_code: int, problem: str) -> None:
        """The command did not reach its end: with --json, close the document saying why."""
        if self.as_json and not self.document_sent:
            self.send_document(exit_code=exit_code, problems=[problem])

    def empty_document(self) -> dict[str, Any]:
        """This command's document, valued as when it never got to anything."""
        echoed = {name: self.options.get(name) for name in self.echoed_options}
        return empty_document(self.command_name, **echoed)

    def send_document(
        self,
        *,
        exit_code: int,
        problems: list[str],
        listed: str = "",
        items: Iterable[str] = (),
        **values: Any,
    ) -> None:
        """Write the whole document: `values` over the empty one; `listed` streamed from
        `items` (JSON texts)."""
        write_document(
            self.write_text,
            self.empty_document() | values,
            exit_code=exit_code,
            problems=problems,
            listed=listed,
            items=items,
        )
        self.document_sent = True

    def write_text(self, text: str) -> None:
        """Part of the JSON document, to stdout as it is."""
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


def _ending(exc: BaseException) -> tuple[int, str, bool]:
    """How `exc` ends a command: its exit code, the problem in a line, and whether that line
    says all (else the traceback follows, for the log)."""
    if isinstance(exc, ZohoConfigError):
        return EXIT_SETUP, str(exc), True
    if isinstance(exc, ZohoError):  # Zoho could not be read (a run's own failures never get here)
        return EXIT_FAILED, f"Could not read Zoho: {exc}", True
    if isinstance(exc, DatabaseLost):  # a run waited for the database in vain
        return EXIT_FAILED, str(exc), True
    if isinstance(exc, CONNECTION_ERRORS):
        problem = f"Lost the database ({first_line(exc)}): the command stopped; run it again"
        return EXIT_FAILED, problem, True
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "Interrupted (Ctrl-C) before the command ended", False
    return EXIT_FAILED, f"The command failed: {exc}", False


class Observers:
    """Passes every hook it is called with on to each of its observers (None ones left out), in
    order: a run's or an import's progress bar and its output hear the same events."""

    def __init__(self, *observers: object) -> None:
        self.observers = [observer for observer in observers if observer is not None]

    def __getattr__(self, hook: str) -> Callable[..., None]:
        hooks = [getattr(observer, hook) for observer in self.observers]

        def tell(*args: Any) -> None:
            for told in hooks:
                told(*args)

        return tell


def _number(value: str, convert: Callable[[str], float], *, at_least: float, what: str) -> Any:
    """`value` converted, or an argparse error saying what was wanted."""
    try:
        number = convert(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
    if number < at_least:
        raise argparse.ArgumentTypeError(f"must be at least {at_least:g}")
    return number


def non_negative_seconds(value: str) -> float:
    """argparse type for --max-wait."""
    return _number(value, float, at_least=0, what="a number of seconds")


def positive_int(value: str) -> int:
    """argparse type for --limit."""
    return _number(value, int, at_least=1, what="a whole number")


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
