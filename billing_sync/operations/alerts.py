"""Alerts: tell operations when a condition starts or ends, never on every failure.

`alerts_check` runs after every live run and every import. It reads these conditions from the
database:
- customers need a person: some customer that belongs in Zoho is `needs_attention`. It starts
  when that count leaves 0 and ends when it is back at 0; growth in between is not news (the
  alert's link shows the current list), or every refused customer would alert again.
- Zoho blocks us long: a block is known to last longer than ZOHO_ALERT_BLOCK_SECONDS. We know a
  block's end, not its start, so it counts from the first check that saw it (`block_seen_at`)
  to its end: never longer than the block really is, so a short block never alerts. It ends
  when a check finds no block.
- the daily budget runs low: the requests the gate counts in the last 24 hours reach
  ZOHO_ALERT_DAILY_BUDGET_PERCENT of ZOHO_DAILY_LIMIT - ZOHO_DAILY_RESERVE; it ends below that.
  Never with the daily limit 0 or the percentage 0.
- source rows refused: the last import from the company's database refused rows (they are
  `needs_attention` there); told with their count and up to 10 account numbers with the
  reasons; it ends when an import refuses none.
- the import from the company's database failed (it cannot connect, or the query is refused),
  naming the error (never a secret); it ends when one goes through.
- completion: the backlog (customers that belong in Zoho and still need a request) was above 0
  at a check and is now 0: every customer that belongs in Zoho is in Zoho and in step. Told
  once, as a success, with the counts and how long it took. When a backlog appears that the next
  scheduled run will not finish (estimate.py), an info notice says when it will be done.

Another is told by the write-back itself (`alerts_writeback`), as it happens: writing our answer
back into the company's database failed; it ends when a write-back succeeds.

What was last reported lives in one AlertState row. A check locks it, reads the conditions,
writes what it will report and commits before anything is sent: two checks at once never both
send an alert, the second waits for the first and finds nothing new.

Delivery (notify.py): the "billing_sync.alerts" logger (WARNING when a condition starts, INFO
when it ends), mail_admins when ZOHO_ALERT_MAIL_ADMINS is on, and the Apprise URLs of
ZOHO_ALERT_URLS. Alerts carry counts, times and links to the admin, never a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing_sync.imports.selectors import (
    latest_source_import,
    latest_source_import_tried,
    source_refusals,
)
from billing_sync.models import AlertState, CustomerImport, ImportStatus, SyncStatus
from billing_sync.operations.notify import Notice, deliver
from billing_sync.run.estimate import (
    backlog_requests,
    estimate_finish,
    finish_text,
    in_words,
)
from billing_sync.run.selection import customers_backlog, customers_syncable
from billing_sync.times import in_utc
from billing_sync.zoho.pacing import daily_requests_counted
from billing_sync.zoho.state import active_block, current_api_state

logger = logging.getLogger("billing_sync.alerts")


class AlertCondition(StrEnum):
    NEEDS_ATTENTION = "needs_attention"
    ZOHO_BLOCK = "zoho_block"
    DAILY_BUDGET = "daily_budget"
    WRITEBACK = "writeback"
    SOURCE_REFUSED = "source_refused"
    SOURCE_IMPORT = "source_import"
    COMPLETION = "completion"


# Conditions whose start is a failure of ours (the others: a warning).
FAILURES = {AlertCondition.WRITEBACK, AlertCondition.SOURCE_IMPORT}
# Refused rows named in a notice; the link lists them all.
REFUSALS_NAMED = 10


@dataclass(frozen=True)
class Alert:
    """One condition that started (a problem) or ended (a recovery)."""

    condition: AlertCondition
    recovered: bool
    subject: str
    message: str
    link: str
    kind: str = ""  # apprise's notify type where it is neither a problem nor a recovery

    @property
    def notice(self) -> Notice:
        """The alert as services are told it (its notify type: what kind of news it is)."""
        kind = self.kind or ("success" if self.recovered else "warning")
        if not self.recovered and self.condition in FAILURES:
            kind = "failure"
        return Notice(self.subject, self.message, self.link, kind)


@dataclass(frozen=True)
class _Conditions:
    """The conditions as the database shows them now."""

    needs_attention: int
    blocked_until: datetime | None
    block_reason: str
    daily_used: int
    daily_share: int  # 0 when the day is not counted
    refused: dict[str, str]  # source rows the last import refused: why, by account number
    refused_in: CustomerImport | None  # that import
    source_import: CustomerImport | None  # the last import of the source that ended
    backlog: int


def alerts_check(*, now: datetime | None = None) -> list[Alert]:
    """Report every condition that started or ended since the last check; return them.

    Delivered once the new state is committed (at once when called outside a transaction).
    """
    now = now or timezone.now()
    with transaction.atomic():
        state, _created = AlertState.objects.select_for_update().get_or_create(singleton=1)
        conditions = _conditions(now)
        changes = (
            _needs_attention_change(state, conditions),
            _block_change(state, conditions, now),
            _daily_budget_change(state, conditions),
            _source_refused_change(state, conditions),
            _source_import_change(state, conditions),
            _completion_change(state, conditions, now),
        )
        alerts = [alert for alert in changes if alert is not None]
        state.checked_at = now
        state.save()
        transaction.on_commit(lambda: deliver([alert.notice for alert in alerts]))
    return alerts


def _conditions(now: datetime) -> _Conditions:
    """Two queries: the customers needing attention, and the shared Zoho API row."""
    needing = customers_syncable().filter(zoho_sync_status=SyncStatus.NEEDS_ATTENTION).count()
    api = current_api_state()
    limit = settings.ZOHO_DAILY_LIMIT
    share = max(limit - settings.ZOHO_DAILY_RESERVE, 0) if limit else 0
    used = 0
    if share and api is not None:
        used = daily_requests_counted(
            api.day_counts, now=now.timestamp(), request_timeout=settings.ZOHO_TIMEOUT_SECONDS
        )
    return _Conditions(
        needs_attention=needing,
        blocked_until=active_block(api, now.timestamp()),
        block_reason=api.block_reason if api is not None else "",
        daily_used=used,
        daily_share=share,
        refused=source_refusals(),
        refused_in=latest_source_import(),
        source_import=latest_source_import_tried(),
        backlog=customers_backlog().count(),
    )


def _counted(count: int, alerted: int) -> bool | None:
    """A counted condition: True when it starts (the count leaves 0), False when it ends (back
    at 0), None otherwise: its growth in between is not news (the alert's link shows the list)."""
    if count and not alerted:
        return True
    if alerted and not count:
        return False
    return None


def _needs_attention_change(state: AlertState, now: _Conditions) -> Alert | None:
    count, alerted = now.needs_attention, state.needs_attention_count
    starts = _counted(count, alerted)
    if starts is None:
        return None
    state.needs_attention_count = count
    link = _admin_link(
        "admin:billing_sync_customer_changelist",
        f"?zoho_sync_status__exact={SyncStatus.NEEDS_ATTENTION}",
    )
    if starts:
        subject = f"{_customers(count)} {_need(count)} attention"
        message = (
            f"{_customers(count)} that belong in Zoho now {_need(count)} a person: Zoho or our "
            "checks refused the data. Runs leave them alone until someone fixes and saves "
            "each one (or re-queues it in the admin)."
        )
    else:
        subject = "No customer needs attention any more"
        message = f"No customer needs attention now ({_customers(alerted)} did when we alerted)."
    return Alert(AlertCondition.NEEDS_ATTENTION, not starts, subject, message, link)


def _block_change(state: AlertState, now: _Conditions, checked_at: datetime) -> Alert | None:
    until = now.blocked_until
    link = _admin_link("admin:index")
    if until is None:
        last_until, alerted = state.block_until, state.block_alerted
        state.block_until = state.block_seen_at = None
        state.block_alerted = False
        if not alerted:
            return None
        ran_until = in_utc(last_until, with_date=True) if last_until else "-"
        return Alert(
            condition=AlertCondition.ZOHO_BLOCK,
            recovered=True,
            subject="Zoho's block has ended",
            message=(
                f"Zoho no longer blocks our requests (the block we alerted about ran until "
                f"{ran_until}). Customers a run left failed are retried by the next run."
            ),
            link=link,
        )
    seen = state.block_until is not None and state.block_seen_at is not None
    if not seen or state.block_until <= checked_at:
        state.block_seen_at = checked_at  # a block no check has seen before
    state.block_until = until
    known = (until - state.block_seen_at).total_seconds()
    if state.block_alerted or known <= settings.ZOHO_ALERT_BLOCK_SECONDS:
        return None
    state.block_alerted = True
    remaining = max(round((until - checked_at).total_seconds() / 60), 1)
    blocked_until = in_utc(until, with_date=True)
    return Alert(
        condition=AlertCondition.ZOHO_BLOCK,
        recovered=False,
        subject=f"Zoho blocks every request until {blocked_until}",
        message=(
            f"Zoho refuses every request from the organization until {blocked_until} (about "
            f"{remaining} min from now; alerting on blocks over "
            f"{settings.ZOHO_ALERT_BLOCK_SECONDS:g} s). Zoho said: {now.block_reason or '-'}. "
            "Runs wait for it or stop; customers they leave failed are retried afterwards."
        ),
        link=link,
    )


def _daily_budget_change(state: AlertState, now: _Conditions) -> Alert | None:
    percent = settings.ZOHO_ALERT_DAILY_BUDGET_PERCENT
    used, share = now.daily_used, now.daily_share
    low = bool(share and percent) and used * 100 >= share * percent
    if low == state.daily_budget_alerted:
        return None
    state.daily_budget_alerted = low
    link = _admin_link("admin:billing_sync_syncrun_changelist")
    counted = (
        f"{used} of the {share} requests a day allows us (ZOHO_DAILY_LIMIT "
        f"{settings.ZOHO_DAILY_LIMIT} less ZOHO_DAILY_RESERVE {settings.ZOHO_DAILY_RESERVE}) "
        f"were sent in the last 24 hours: {used * 100 // share}%"
        if share
        else "The daily count is off (ZOHO_DAILY_LIMIT is 0)"
    )
    if low:
        return Alert(
            condition=AlertCondition.DAILY_BUDGET,
            recovered=False,
            subject=f"{used * 100 // share}% of the daily request budget used",
            message=(
                f"{counted}; alerting at {percent:g}%. Once it is all used, runs stop until "
                "requests leave the 24-hour span."
            ),
            link=link,
        )
    return Alert(
        condition=AlertCondition.DAILY_BUDGET,
        recovered=True,
        subject=f"Daily request budget below {percent:g}% again",
        message=f"{counted}.",
        link=link,
    )


def _source_refused_change(state: AlertState, now: _Conditions) -> Alert | None:
    count, alerted = len(now.refused), state.source_refused_count
    starts = _counted(count, alerted)
    if starts is None:
        return None
    state.source_refused_count = count
    if starts:
        named = "; ".join(
            f"{account}: {reason.removeprefix('the import refused the row: ')}"
            for account, reason in list(now.refused.items())[:REFUSALS_NAMED]
        )
        more = f" (and {count - REFUSALS_NAMED} more)" if count > REFUSALS_NAMED else ""
        subject = f"{_rows(count)} of the company's database refused"
        message = (
            f"The import from the company's database refused {_rows(count)}: they are not in "
            f"Zoho, and read needs_attention there. {named}{more}. Fix them where they are "
            "kept; the next import takes them."
        )
    else:
        subject = "No row of the company's database is refused any more"
        message = f"The last import refused no row ({_rows(alerted)} were when we alerted)."
    link = _import_link(now.refused_in)
    return Alert(AlertCondition.SOURCE_REFUSED, not starts, subject, message, link)


def _source_import_change(state: AlertState, now: _Conditions) -> Alert | None:
    last = now.source_import
    failing = last is not None and last.status in (ImportStatus.REFUSED, ImportStatus.FAILED)
    if failing == state.source_import_failed:
        return None
    state.source_import_failed = failing
    link = _import_link(last)
    if failing:
        return Alert(
            condition=AlertCondition.SOURCE_IMPORT,
            recovered=False,
            subject="The import from the company's database failed",
            message=(
                f"Import #{last.pk} could not read the company's database: {last.problem}. New "
                "and changed customers there do not reach Zoho until an import goes through; "
                "the schedule tries again."
            ),
            link=link,
        )
    return Alert(
        condition=AlertCondition.SOURCE_IMPORT,
        recovered=True,
        subject="The import from the company's database works again",
        message="An import from the company's database went through.",
        link=link,
    )


def _completion_change(state: AlertState, now: _Conditions, checked_at: datetime) -> Alert | None:
    if now.backlog:
        started = state.backlog_since is None
        state.backlog_since = state.backlog_since or checked_at
        state.backlog_peak = max(state.backlog_peak, now.backlog)
        return _backlog_started(now.backlog, checked_at) if started else None
    if state.backlog_since is None:
        return None
    since, peak = state.backlog_since, state.backlog_peak
    state.backlog_since, state.backlog_peak = None, 0
    waiting = (
        f" {_customers(now.needs_attention)} {_need(now.needs_attention)} a person (told apart)."
        if now.needs_attention
        else ""
    )
    return Alert(
        condition=AlertCondition.COMPLETION,
        recovered=True,
        subject="Every customer that belongs in Zoho is in Zoho and in step",
        message=(
            f"The backlog is done: {_customers(peak)} waited for a run at most (first seen "
            f"{in_utc(since, with_date=True)}), and it took {_duration(checked_at - since)}."
            f"{waiting}"
        ),
        link=_admin_link("admin:index"),
    )


def _backlog_started(backlog: int, checked_at: datetime) -> Alert | None:
    """A backlog the next scheduled run will not finish: when it will be done (info)."""
    estimate = estimate_finish(backlog_requests(backlog), now=checked_at)
    if estimate.seconds <= settings.ZOHO_SYNC_EVERY_MINUTES * 60:
        return None
    return Alert(
        condition=AlertCondition.COMPLETION,
        recovered=False,
        kind="info",
        subject=f"{_customers(backlog)} to send to Zoho: done around {finish_text(estimate)}",
        message=(
            f"{_customers(backlog)} wait for a run (about {estimate.requests} requests): at the "
            f"current limits the work is done around {finish_text(estimate)}, "
            f"{in_words(estimate)}"
            + (" (bound by the daily share)" if estimate.limited_by == "daily" else "")
            + ". A notice says when it is."
        ),
        link=_admin_link("admin:index"),
    )


def alerts_writeback(*, error: str) -> Alert | None:
    """After a write-back: alert when it starts failing (`error`), and when it works again."""
    failing = bool(error)
    with transaction.atomic():
        state, _created = AlertState.objects.select_for_update().get_or_create(singleton=1)
        if state.writeback_failed == failing:
            return None
        state.writeback_failed = failing
        state.save(update_fields=["writeback_failed"])
        table = settings.CUSTOMER_SOURCE_WRITEBACK_TABLE
        alert = Alert(
            condition=AlertCondition.WRITEBACK,
            recovered=not failing,
            subject=(
                f"Zoho ids are not reaching the company's {table} table"
                if failing
                else f"Zoho ids reach the company's {table} table again"
            ),
            message=(
                f"{error}. Syncing goes on; the next write-back compares every customer and "
                "catches up."
                if failing
                else "A write-back succeeded: the rows it had missed are caught up."
            ),
            link=_admin_link("admin:billing_sync_syncrun_changelist"),
        )
        transaction.on_commit(lambda: deliver([alert.notice]))
    return alert


def writeback_catch_up_due() -> bool:
    """Whether the last write-back failed, so the next one must compare every customer."""
    return AlertState.objects.filter(singleton=1, writeback_failed=True).exists()


def _admin_link(name: str, query: str = "", args: list | None = None) -> str:
    """A link into the admin: absolute under ZOHO_ALERT_ADMIN_URL, else relative."""
    return settings.ZOHO_ALERT_ADMIN_URL.rstrip("/") + reverse(name, args=args) + query


def _import_link(record: CustomerImport | None) -> str:
    if record is None:
        return _admin_link("admin:billing_sync_customerimport_changelist")
    return _admin_link("admin:billing_sync_customerimport_change", args=[record.pk])


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _duration(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _customers(count: int) -> str:
    return f"{count} customer" if count == 1 else f"{count} customers"


def _need(count: int) -> str:
    return "needs" if count == 1 else "need"
