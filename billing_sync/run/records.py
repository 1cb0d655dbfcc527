"""A run's record (SyncRun) from its start to its end: opened, kept alive while the run works,
closed with its counts read from its final attempts; and the records of runs that died (killed,
or cut off from the database for good) closed by the next run.

A run that has ended leaves no attempt "sending": an attempt it opened and never finished (cut
off by a Ctrl-C, or by a lost database after which the customer was taken again) is closed
`interrupted` with its run. Every function here is one step: a transaction, or one statement
that may be taken twice (`run_opened` takes its two itself).
"""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from billing_sync.database import DatabaseSteps
from billing_sync.models import (
    AttemptOutcome,
    SyncAttempt,
    SyncRun,
    SyncRunKind,
    SyncRunStatus,
    SyncTrigger,
    silent_longer_than,
)
from billing_sync.run.report import RunReport

CUT_OFF = (
    "interrupted: its outcome was never written (its run was cut off mid-attempt: a Ctrl-C, or "
    "the database went away); the customer's final attempt in the run says how it ended"
)
DIED = (
    "interrupted: it stopped showing it was alive (its process died, or lost the database for "
    "good); run #{closer} closed its record"
)


def run_opened(
    *,
    kind: SyncRunKind,
    trigger: SyncTrigger,
    dry_run: bool,
    selected_count: int,
    stale_seconds: float,
    steps: DatabaseSteps,
) -> SyncRun:
    """Open this run's record, then close the records of runs that died (two steps)."""

    def opened() -> SyncRun:
        with transaction.atomic():
            return SyncRun.objects.create(
                kind=kind,
                trigger=trigger,
                dry_run=dry_run,
                selected_count=selected_count,
                heartbeat_at=timezone.now(),
            )

    run = steps.take(opened)
    steps.take(partial(close_dead_runs, stale_seconds, closer=run))
    return run


def cut_off(attempts: QuerySet[SyncAttempt]) -> None:
    """Close these attempts left "sending" `interrupted`: their outcome was never written."""
    attempts.filter(outcome=AttemptOutcome.SENDING).update(
        outcome=AttemptOutcome.INTERRUPTED, finished_at=timezone.now(), error_message=CUT_OFF
    )


def run_alive(run: SyncRun) -> None:
    """The run is working: nobody may take it for dead before ZOHO_STALE_CLAIM_SECONDS."""
    SyncRun.objects.filter(pk=run.pk, status=SyncRunStatus.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def close_dead_runs(stale_seconds: float, *, closer: SyncRun) -> int:
    """Close the record of every run silent for longer than `stale_seconds` (its attempts left
    "sending" interrupted, its counts read from its final attempts); how many.

    Its customers are not touched here: their claims are stale too, and the runs that take
    them over look in Zoho first (claims.py, customer/decisions.py).
    """
    silent = silent_longer_than(stale_seconds)
    dead = SyncRun.objects.filter(silent, status=SyncRunStatus.RUNNING).exclude(pk=closer.pk)
    reason = DIED.format(closer=closer.pk)
    closed = [run_closed(run, status=SyncRunStatus.INTERRUPTED, reason=reason) for run in dead]
    return sum(1 for report in closed if report is not None)


def run_closed(
    run: SyncRun, *, status: SyncRunStatus | None = None, reason: str = ""
) -> RunReport | None:
    """Close the run's record: what it left "sending" interrupted, its status (stopped when it
    has a stop reason, else completed), its counts read from its final attempts. With `status`,
    a dead run's record, closed by another run: None when it is not running any more."""
    now = timezone.now()
    with transaction.atomic():
        cut_off(SyncAttempt.objects.filter(run=run))
        if reason:
            run.stop_reason = reason
        closing_own = status is None
        if status is None:
            status = SyncRunStatus.STOPPED if run.stop_reason else SyncRunStatus.COMPLETED
        run.status = status
        run.finished_at = now
        report = RunReport.of(run)  # the attempts are on record; the run's own fields at hand
        run.synced_count = report.synced_count
        run.failed_count = report.failed_count
        run.skipped_count = report.skipped_count
        fields = {
            name: getattr(run, name)
            for name in (
                "status",
                "finished_at",
                "stop_reason",
                "stop_needs_setup",
                "synced_count",
                "failed_count",
                "skipped_count",
                "unreached_count",
                "reached_count",
                "request_count",
            )
        }
        record = SyncRun.objects.filter(pk=run.pk)
        if not closing_own:
            record = record.filter(status=SyncRunStatus.RUNNING)
        if not record.update(**fields):
            return None
    return report
