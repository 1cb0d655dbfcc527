"""The run's entry points: backfill, retry, sync, one customer, the admin's selection and its
preview; each records a SyncRun over the customers it wants and takes the one path (`_run`).

Commands, tasks and admin actions call these and nothing else of the run. The path a customer
takes is told in the package's docstring (run/__init__.py); the words, in docs/glossary.md.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Required, TypedDict, Unpack

from django.conf import settings
from django.db.models import Q

from billing_sync.ctrl_c import ctrl_c_held
from billing_sync.customer_data import customer_validation_errors
from billing_sync.database import DatabaseSteps, WaitAllowance
from billing_sync.imports.source import writeback_after_run
from billing_sync.models import AttemptOutcome, SyncRun, SyncRunKind, SyncTrigger
from billing_sync.operations.alerts import alerts_check
from billing_sync.run.audit import RunAttempts, set_ended
from billing_sync.run.live_run import LiveRun, Reporter
from billing_sync.run.records import run_alive, run_closed, run_opened
from billing_sync.run.report import RunObserver, RunReport, WaitKind
from billing_sync.run.selection import (
    RUN_SELECTIONS,
    RunSelection,
    customers_syncable,
    requeue_q,
    sync_q,
)
from billing_sync.run.stops import RunInterrupted
from billing_sync.zoho.config import ZohoConfig, zoho_config

logger = logging.getLogger(__name__)


class RunOptions(TypedDict, total=False):
    """What every run over a selection of customers takes (keyword arguments)."""

    trigger: Required[SyncTrigger]
    dry_run: bool  # list and check, send nothing
    limit: int | None  # at most this many customers, oldest first
    max_wait: float | None  # seconds the run may wait in all (default ZOHO_MAX_WAIT_SECONDS)
    observer: RunObserver | None  # hears about the run's progress


def customers_backfill(**options: Unpack[RunOptions]) -> RunReport:
    """Sync every customer that belongs in Zoho and has no Zoho id yet."""
    return _run_over(SyncRunKind.BACKFILL, **options)


def customers_retry_failed(**options: Unpack[RunOptions]) -> RunReport:
    """Sync again every customer whose last sync failed (or whose run died)."""
    return _run_over(SyncRunKind.RETRY_FAILED, **options)


def customers_sync(**options: Unpack[RunOptions]) -> RunReport:
    """Keep Zoho in step: create the customers it lacks (as a backfill does) and send it the
    local edits of those it holds; an unchanged table costs no request."""
    return _run_over(SyncRunKind.SYNC, **options)


def _run_over(kind: SyncRunKind, **options: Unpack[RunOptions]) -> RunReport:
    """A run over the customers this kind of run takes (selection.py `RUN_SELECTIONS`)."""
    config = zoho_config()
    return _run(kind, RUN_SELECTIONS[kind](config.stale_claim_seconds), config, **options)


def customer_sync(*, customer_id: int, **options: Unpack[RunOptions]) -> RunReport:
    """Sync one customer, if it still needs it: create it, or send Zoho its edits."""
    return _sync_these(SyncRunKind.SINGLE, Q(pk=customer_id), **options)


def customers_sync_selected(*, customer_ids: list[int], **options: Unpack[RunOptions]) -> RunReport:
    """Sync these customers in one run (a person's re-queue of a selection): create those Zoho
    lacks, send the edits of those it holds."""
    return _sync_these(SyncRunKind.SELECTED, Q(pk__in=customer_ids), **options)


def _sync_these(kind: SyncRunKind, these: Q, **options: Unpack[RunOptions]) -> RunReport:
    """A run over those of `these` customers that need syncing (selection.py `sync_q`)."""
    config = zoho_config()
    return _run(kind, these & sync_q(config.stale_claim_seconds), config, **options)


def customers_preview(
    *, customer_ids: list[int], trigger: SyncTrigger, observer: RunObserver | None = None
) -> RunReport:
    """What re-queueing these customers would do: checks their data, sends nothing."""
    config = zoho_config()
    wanted = Q(pk__in=customer_ids) & requeue_q(config.stale_claim_seconds)
    return _run(
        SyncRunKind.SELECTED, wanted, config, trigger=trigger, dry_run=True, observer=observer
    )


def _run(
    kind: SyncRunKind,
    wanted: Q,
    config: ZohoConfig,
    *,
    trigger: SyncTrigger,
    dry_run: bool = False,
    limit: int | None = None,
    max_wait: float | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Record a SyncRun over the customers `wanted` describes, sync (or preview) them, report.

    `wanted` is asked again when each group is claimed: a customer another run took meanwhile
    is no longer wanted. Every statement is a step of the run's `steps`: a lost database is
    waited for (within max_wait) from the first. A Ctrl-C closes the run `stopped`, then goes on.
    """
    observer = observer or RunObserver()
    max_wait = config.max_wait_seconds if max_wait is None else max_wait
    steps = DatabaseSteps(
        WaitAllowance(settings.ZOHO_DB_OUTAGE_WAIT_SECONDS, max_wait),
        on_wait=partial(observer.waiting, WaitKind.DATABASE, None),
    )
    selected = steps.take(lambda: RunSelection.take(customers_syncable().filter(wanted), limit))
    run = run_opened(
        kind=kind,
        trigger=trigger,
        dry_run=dry_run,
        selected_count=selected.count,
        stale_seconds=config.stale_claim_seconds,
        steps=steps,
    )
    try:
        observer.run_started(run, selected.customers(steps))
        if dry_run:
            _preview(run, selected, observer, steps)
        elif selected.count:
            LiveRun(run, selected, wanted, config, steps=steps, observer=observer).sync()
    except KeyboardInterrupt:
        with ctrl_c_held():
            run.stop_reason = run.stop_reason or str(RunInterrupted())
            steps.take(partial(run_closed, run))
        raise
    with ctrl_c_held():
        report = steps.take(partial(run_closed, run))
    if not dry_run:
        steps.take(alerts_check)  # tells monitoring when something started or stopped going wrong
        steps.take(partial(writeback_after_run, run))  # the Zoho ids, back into the company's
    return report


def _preview(
    run: SyncRun, selected: RunSelection, observer: RunObserver, steps: DatabaseSteps
) -> None:
    """Walk the selection as a run would, checking the data; send nothing, change nothing."""
    reporter = Reporter(observer, selected.count)
    attempts = RunAttempts(run, steps, on_final=reporter.finished)
    for chunk in selected.chunks(steps):
        checked = []
        for customer in chunk:
            reporter.reach(customer)
            run.reached_count = reporter.reached
            error = "; ".join(customer_validation_errors(customer))
            attempt = attempts.begin(customer)
            checked.append(set_ended(attempt, AttemptOutcome.DRY_RUN, final=True, message=error))
        attempts.write(checked, also=partial(run_alive, run))
