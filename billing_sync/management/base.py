"""What every command of ours shares: `--json`, the exit codes, and the one handler for what
ends a command early (it still closes the JSON document, then exits with the right code)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import IO, Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import DatabaseError

from billing_sync.database import (
    DatabaseSteps,
    DatabaseUnavailable,
    database_look,
    database_steps,
    first_line,
)
from billing_sync.management.documents import empty_document, write_document
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
        """Run the command once the database answers (waited for as when it is lost mid-run);
        whatever ends it early still ends its document (with --json) and leaves with its exit
        code and one line: Zoho refusing the set-up 2, Ctrl-C 130 (the process then ends by
        the signal, as a shell expects), Zoho unreadable or the database lost 1, any other
        failure 1 (its traceback kept for the log)."""
        self.options = options
        self.as_json = bool(options.get("json"))
        self.document_sent = False
        # As BaseCommand.execute sets them, for what is said before it runs.
        if options.get("stdout"):
            self.stdout = OutputWrapper(options["stdout"])
        if options.get("stderr"):
            self.stderr = OutputWrapper(options["stderr"])
        try:
            database_steps(max_wait=options.get("max_wait"), on_wait=self._database_wait).take(
                database_look
            )
            return super().execute(*args, **options)
        except CommandError as exc:
            self.ended_early(exc.returncode, str(exc))
            raise
        except (Exception, KeyboardInterrupt) as exc:
            exit_code, problem, said_in_full = self.ending(exc)
            self.ended_early(exit_code, problem)
            if isinstance(exc, KeyboardInterrupt):
                self.stderr.write(problem)
                raise
            if said_in_full:
                raise CommandError(problem, returncode=exit_code) from exc
            raise

    def ending(self, exc: BaseException) -> tuple[int, str, bool]:
        """How `exc` ends this command: its exit code, the problem in a line, and whether that
        line says all (else the traceback follows, for the log)."""
        return _ending(exc)

    def _database_wait(self, reason: str) -> None:
        self.stderr.write(
            f"Waiting for the database ({reason}) (ZOHO_DB_OUTAGE_WAIT_SECONDS)...", ending="\n"
        )

    def ended_early(self, exit_code: int, problem: str, **known: Any) -> None:
        """The command did not reach its end: with --json, close the document saying why
        (with the values `known` of it)."""
        if self.as_json and not self.document_sent:
            self.send_document(exit_code=exit_code, problems=[problem], **known)

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
        items: Callable[[], Iterable[str]] = tuple,
        steps: DatabaseSteps | None = None,
        **values: Any,
    ) -> None:
        """Write the whole document: `values` over the empty one; `listed` from `items()`
        (JSON texts, maybe read from the database: through `steps` when given). It is written
        whole, once read whole: stdout never holds a document cut short."""

        def render() -> IO[str]:
            # In a temporary file past 1 MB: 100,000 customers hold no memory.
            text = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by the caller
                max_size=2**20, mode="w+", encoding="ascii"
            )
            try:
                write_document(
                    text.write,
                    self.empty_document() | values,
                    exit_code=exit_code,
                    problems=problems,
                    listed=listed,
                    items=items(),
                )
            except BaseException:
                text.close()  # read part way: taken again from the start, or not sent
                raise
            return text

        text = render() if steps is None else steps.take(render)
        with text:
            text.seek(0)
            shutil.copyfileobj(text, _Writer(self.write_text))
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
    if isinstance(exc, DatabaseUnavailable):  # waited for, or tried again, in vain
        return EXIT_FAILED, str(exc), True
    if isinstance(exc, DatabaseError):
        problem = (
            f"The database failed ({first_line(exc)}): the command stopped; what it wrote "
            "stands, run it again"
        )
        return EXIT_FAILED, problem, True
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "Interrupted (Ctrl-C) before the command ended", True
    return EXIT_FAILED, f"The command failed: {exc}", False


class _Writer:
    """A file-like `write` over a function that writes text (for shutil.copyfileobj)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write


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
