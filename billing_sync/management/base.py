"""What every command of ours shares: `--json`, the exit codes, and the one way a command ends
(`ZohoCommand.end`: the JSON document, then the exit code), whether it got to its end or not."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Ending:
    """How a command ends: its exit code, the line said with a non-zero one, what is wrong,
    and its --json document: `values` over the empty one, its member `listed` written from
    `items()` (JSON texts, maybe read from the database: through `steps` when given)."""

    exit_code: int = EXIT_OK
    message: str = ""
    problems: Sequence[str] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    listed: str = ""
    items: Callable[[], Iterable[str]] = tuple
    steps: DatabaseSteps | None = None
    # The document instead, when this one's record cannot be read (the database failed).
    unread: Ending | None = None


class ZohoCommand(BaseCommand):
    """Base of our commands: `--json`, and one way to end in either mode (`end`)."""

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
        whatever ends it early ends it through `end` too: Zoho refusing the set-up 2, Ctrl-C
        130 (the process then ends by the signal, as a shell expects), Zoho unreadable or the
        database lost 1, any other failure 1 (its traceback kept for the log)."""
        self.options = options
        self.as_json = bool(options.get("json"))
        self.ended = False
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
        except (Exception, KeyboardInterrupt) as exc:
            if self.ended:  # by `end`: its exit
                raise
            exit_code, problem, said_in_full = self.stopped_by(exc)
            foreseen = said_in_full and not isinstance(exc, CommandError | KeyboardInterrupt)
            self.end(self.ended_early(exit_code, problem), cause=None if foreseen else exc)
            raise  # not reached: `end` raises for every early ending

    def stopped_by(self, exc: BaseException) -> tuple[int, str, bool]:
        """How `exc` ends this command: its exit code, the problem in a line, and whether that
        line says all (else the traceback follows, for the log)."""
        return _stopped_by(exc)

    def ended_early(self, exit_code: int, problem: str) -> Ending:
        """How the command ends when it did not reach its end: its document says why, with
        what it knows so far."""
        return Ending(exit_code, problem, [problem])

    def _database_wait(self, reason: str) -> None:
        self.stderr.write(
            f"Waiting for the database ({reason}) (ZOHO_DB_OUTAGE_WAIT_SECONDS)...", ending="\n"
        )

    def end(self, ending: Ending, *, cause: BaseException | None = None) -> None:
        """Every command ends here, once, having got to its end or not, in text or with
        --json: with --json the one document, written whole (stdout never holds a document
        cut short); then its exit, a non-zero code by CommandError with `ending.message`.
        `cause`, what ended the command early, is raised again instead where the message
        would not do: a Ctrl-C (said in a line first), a CommandError of its own, a failure
        whose traceback the log keeps."""
        if self.as_json:
            try:
                self._write_document(ending)
            except DatabaseError:
                if ending.unread is None:
                    raise
                self._write_document(ending.unread)
        self.ended = True
        if isinstance(cause, KeyboardInterrupt):
            self.stderr.write(ending.message)
        if cause is not None:
            raise cause
        if ending.exit_code:
            raise CommandError(ending.message, returncode=ending.exit_code)

    def _write_document(self, ending: Ending) -> None:
        """The document, read whole (in a temporary file past 1 MB: 100,000 customers hold no
        memory), then written to stdout as it is."""
        echoed = {name: self.options.get(name) for name in self.echoed_options}
        document = empty_document(self.command_name, **echoed) | dict(ending.values)

        def render() -> IO[str]:
            text = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by the caller
                max_size=2**20, mode="w+", encoding="ascii"
            )
            try:
                write_document(
                    text.write,
                    document,
                    exit_code=ending.exit_code,
                    problems=list(ending.problems),
                    listed=ending.listed,
                    items=ending.items(),
                )
            except BaseException:
                text.close()  # read part way: taken again from the start, or not sent
                raise
            return text

        text = render() if ending.steps is None else ending.steps.take(render)
        with text:
            text.seek(0)
            shutil.copyfileobj(text, _Writer(self.stdout))


def _stopped_by(exc: BaseException) -> tuple[int, str, bool]:
    """How `exc` ends a command: its exit code, the problem in a line, and whether that line
    says all (else the traceback follows, for the log)."""
    if isinstance(exc, CommandError):
        return exc.returncode, str(exc), True
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
    """A file-like `write` of text to a command's output as it is (for shutil.copyfileobj)."""

    def __init__(self, stdout: OutputWrapper) -> None:
        self.stdout = stdout

    def write(self, text: str) -> None:
        self.stdout.write(text, ending="")
        self.stdout.flush()


class Observers:
    """Passes every hook it is called with on to each of its observers (None ones left out), in
    order: a run's or an import's progress bar and its output hear the same events."""

    def __init__(self, *observers: object) -> None:
        self.observers = [observer for observer in observers if observer is not None]

    def __getattr__(self, hook: str) -> Callable[..., None]:
        hooks = [getattr(observer, hook) for observer in self.observers]

        def tell(*args: Any, **kwargs: Any) -> None:
            for told in hooks:
                told(*args, **kwargs)

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
