"""A progress bar for long runs and imports on a terminal: count, rate, ETA, and why a run waits.

Drawn with tqdm: it writes to any stream we hand it (the command's own stdout, or stderr
under --json), draws only when a hook of the run calls it (miniters=1: its monitor thread
never redraws), and lets us clear and redraw the bar around our lines, so the runbook's
per-customer lines keep scrolling above it, unchanged.
Nothing is drawn where the stream is not a terminal: there the output stays plain lines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Self

from django.core.management.base import OutputWrapper
from tqdm import tqdm

from billing_sync.models import Customer, SyncRun
from billing_sync.run.report import CustomerResult, RunObserver, WaitKind
from billing_sync.times import in_utc


class ProgressBar:
    """A bar under a command's lines: made when first shown; lines written meanwhile go
    above it (tqdm's `external_write_mode`)."""

    unit = " items"
    # tqdm draws at most this often (seconds): an update sooner than that is not drawn.
    min_interval = 0.1

    def __init__(self, stream: OutputWrapper, *, label: str) -> None:
        self.file = _AsWritten(stream)
        self.label = label
        self.total: int | None = 0
        self.bar: tqdm | None = None

    @classmethod
    def on_terminal(cls, stream: OutputWrapper, *, label: str) -> Self | None:
        """A progress display on `stream` if it is a terminal, else None."""
        return cls(stream, label=label) if stream.isatty() else None

    def _shown(self) -> tqdm:
        if self.bar is None:
            self.bar = tqdm(
                total=self.total,
                desc=self.label,
                unit=self.unit,
                file=self.file,
                dynamic_ncols=True,
                miniters=1,
                mininterval=self.min_interval,
                # The average rate, not a recent one: paced runs come in bursts.
                smoothing=0,
                leave=False,
            )
        return self.bar

    def above(self) -> AbstractContextManager[None]:
        """Lines written meanwhile go above the bar."""
        if self.bar is None:
            return contextlib.nullcontext()
        return tqdm.external_write_mode(file=self.file)

    def close(self) -> None:
        """Take the bar away (the results block follows)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# What the bar calls each wait.
WAITS = {
    WaitKind.BLOCK: "Zoho block",
    WaitKind.UNREACHABLE: "Zoho unreachable",
    WaitKind.DATABASE: "the database",
    WaitKind.SETTLE: "create settling",
    WaitKind.PACE: "request budget",
}


class RunProgress(ProgressBar, RunObserver):
    """Counts finished customers on a bar under the run's lines; shows each wait's reason.

    The bar appears with the first customer (the list of selected customers prints before
    it) and goes when `close` is called, before the results block.
    """

    unit = " customers"

    def run_started(self, run: SyncRun, customers: Iterable[Customer]) -> None:
        self.total = run.selected_count

    def customer_started(self, index: int, total: int, customer: Customer) -> None:
        self._shown().set_postfix_str("", refresh=False)

    def customer_finished(self, index: int, total: int, result: CustomerResult) -> None:
        bar = self._shown()
        bar.set_postfix_str("", refresh=False)
        bar.update(1)

    def waiting(self, kind: WaitKind, until: datetime | None = None, reason: str = "") -> None:
        # Zoho's own words for a block go to the run's lines and the log; the bar names the wait.
        shown = f"waiting: {WAITS[kind]}"
        if until is not None:
            shown += f" until {in_utc(until)}"
        self._shown().set_postfix_str(shown)


class _AsWritten:
    """`stream` as tqdm wants it: its text written as it is. tqdm writes its own "\r" and
    escapes, where Django's wrapper would add a line ending and (on stderr) colour every write;
    what else tqdm asks of a file (its encoding, its fileno) the wrapper answers."""

    def __init__(self, stream: OutputWrapper) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(text, style_func=_as_it_is, ending="")

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _as_it_is(text: str) -> str:
    return text
