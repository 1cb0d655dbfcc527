"""Alerts: tell operations when a condition starts or ends, never on every failure.

`alerts_check` runs after every live run. It reads three conditions from the database:
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

A fourth is told by the write-back itself (`alerts_writeback`), as it happens: writing our answer
back into the company's database failed; it ends when a write-back succeeds.

What was last reported lives in one AlertState row. A check locks it, reads the conditions,
writes what it will report and commits before anything is sent: two checks at once never both
send an alert, the second waits for the first and finds nothing new.

Delivery: the "billing_sync.alerts" logger (WARNING when a condition starts, INFO when it ends),
and mail_admins when ZOHO_ALERT_MAIL_ADMINS is on. Alerts carry counts, times and links to the
admin, never a secret.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing_sync.models import AlertState, SyncStatus
from billing_sync.selectors import customers_syncable
from billing_sync.zoho.pacing import daily_requests_counted
from billing_sync.zoho.state import active_block, current_api_state

logger = logging.getLogger("billing_sync.alerts")


class AlertCondition(StrEnum):
    NEEDS_ATTENTION = "needs_attention"
    ZOHO_BLOCK = "zoho_block"
    DAILY_BUDGET = "daily_budget"
    WRITEBACK = "writeback"


@dataclass(frozen=True)
class Alert:
    """One condition that started (a problem) or ended (a recovery)."""

    condition: AlertCondition
    recovered: bool
    subject: str
    message: str
    link: str

    @property
    def level(self) -> int:
        return logging.INFO if self.recovered else logging.WARNING

    @property
    def text(self) -> str:
        return f"{self.message}\n\nSee {self.link}"


@dataclass(frozen=True)
class _Conditions:
    """The conditions as the database shows them now."""

    needs_attention: int
    blocked_until: datetime | None
    block_reason: str
    daily_used: int
    daily_share: int  # 0 when the day is not counted


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
        )
        alerts = [alert for alert in changes if alert is not None]
        state.checked_at = now
        state.save()
        transaction.on_commit(lambda: _deliver(alerts))
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
    )


def _needs_attention_change(state: AlertState, now: _Conditions) -> Alert | None:
    count, alerted = now.needs_attention, state.needs_attention_count
    link = _admin_link(
        "admin:billing_sync_customer_changelist",
        f"?zoho_sync_status__exact={SyncStatus.NEEDS_ATTENTION}",
    )
    if count and not alerted:
        state.needs_attention_count = count
        return Alert(
            condition=AlertCondition.NEEDS_ATTENTION,
            recovered=False,
            subject=f"{_customers(count)} {_need(count)} attention",
            message=(
                f"{_customers(count)} that belong in Zoho now {_need(count)} a person: Zoho or our "
                "checks refused the data. Runs leave them alone until someone fixes and saves "
                "each one (or re-queues it in the admin)."
            ),
            link=link,
        )
    if alerted and not count:
        state.needs_attention_count = 0
        return Alert(
            condition=AlertCondition.NEEDS_ATTENTION,
            recovered=True,
            subject="No customer needs attention any more",
            message=(
                f"No customer needs attention now ({_customers(alerted)} did when we alerted)."
            ),
            link=link,
        )
    return None


def _block_change(state: AlertState, now: _Conditions, checked_at: datetime) -> Alert | None:
    until = now.blocked_until
    link = _admin_link("admin:index")
    if until is None:
        last_until, alerted = state.block_until, state.block_alerted
        state.block_until = state.block_seen_at = None
        state.block_alerted = False
        if not alerted:
            return None
        return Alert(
            condition=AlertCondition.ZOHO_BLOCK,
            recovered=True,
            subject="Zoho's block has ended",
            message=(
                f"Zoho no longer blocks our requests (the block we alerted about ran until "
                f"{_utc(last_until)}). Customers a run left failed are retried by the next run."
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
    return Alert(
        condition=AlertCondition.ZOHO_BLOCK,
        recovered=False,
        subject=f"Zoho blocks every request until {_utc(until)}",
        message=(
            f"Zoho refuses every request from the organization until {_utc(until)} (about "
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
        transaction.on_commit(lambda: _deliver([alert]))
    return alert


def writeback_catch_up_due() -> bool:
    """Whether the last write-back failed, so the next one must compare every customer."""
    return AlertState.objects.filter(singleton=1, writeback_failed=True).exists()


def _deliver(alerts: list[Alert]) -> None:
    for alert in alerts:
        logger.log(alert.level, "%s. %s See %s", alert.subject, alert.message, alert.link)
        if not settings.ZOHO_ALERT_MAIL_ADMINS:
            continue
        try:
            mail_admins(alert.subject, alert.text)
        except (smtplib.SMTPException, OSError):
            logger.exception("Could not mail the alert %r to ADMINS", alert.subject)


def _admin_link(name: str, query: str = "") -> str:
    """A link into the admin: absolute under ZOHO_ALERT_ADMIN_URL, else relative."""
    return settings.ZOHO_ALERT_ADMIN_URL.rstrip("/") + reverse(name) + query


def _customers(count: int) -> str:
    return f"{count} customer" if count == 1 else f"{count} customers"


def _need(count: int) -> str:
    return "needs" if count == 1 else "need"


def _utc(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else "-"
