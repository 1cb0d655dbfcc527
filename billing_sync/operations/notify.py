"""Delivering alerts where people are: the "billing_sync.alerts" logger, mail_admins when
ZOHO_ALERT_MAIL_ADMINS is on, and every Apprise URL of ZOHO_ALERT_URLS (Slack, Microsoft Teams,
e-mail, Telegram, ntfy, a plain JSON webhook...).

Apprise's notify type says what a message is: `warning` or `failure` for a condition that
starts, `success` for one that ends and for a completion. A notification a service does not
take (it is down, it answers an error) never fails the caller: it is logged, naming the service
(`slack`, `msteams`, `json`...: the URL's scheme, never the URL, whose path or user part is a
token), and kept in the AlertState row (the service by a digest of its URL) to be tried again
at the next check. Apprise's own logger is kept quiet (settings.LOGGING) for the same reason.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import apprise
from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction

from billing_sync.models import AlertState

logger = logging.getLogger("billing_sync.alerts")


@dataclass(frozen=True)
class Notice:
    """What a service is told: a subject, a message, a link, and what kind of news it is."""

    subject: str
    message: str
    link: str
    notify_type: str  # apprise's: info, success, warning or failure

    @property
    def text(self) -> str:
        return f"{self.message}\n\nSee {self.link}"

    @property
    def level(self) -> int:
        return logging.WARNING if self.notify_type in ("warning", "failure") else logging.INFO


def deliver(notices: list[Notice]) -> None:
    """Log each notice, mail it (ZOHO_ALERT_MAIL_ADMINS), send it to every service, and try
    again what a service did not take before."""
    for notice in notices:
        logger.log(notice.level, "%s. %s See %s", notice.subject, notice.message, notice.link)
        if settings.ZOHO_ALERT_MAIL_ADMINS:
            try:
                mail_admins(notice.subject, notice.text)
            except (smtplib.SMTPException, OSError):
                logger.exception("Could not mail the alert %r to ADMINS", notice.subject)
    if not _urls():
        return  # no service: nothing to send, nothing kept to try again
    pending = [(_digest(url), asdict(notice)) for url in _urls() for notice in notices]
    _send([*_taken_back(), *pending])


def service_name(url: str) -> str:
    """The service a URL names, for what we print: its scheme (`slack`, `msteams`, `json`)."""
    return urlsplit(url).scheme or "?"


def url_problems(urls: list[str]) -> list[str]:
    """What is wrong with these Apprise URLs, each named by its service (never the URL)."""
    problems = []
    for number, url in enumerate(urls, 1):
        if apprise.Apprise.instantiate(url) is None:
            problems.append(
                f"ZOHO_ALERT_URLS #{number} ({service_name(url)}) is not an Apprise URL it can use"
            )
    return problems


def _send(pending: list[tuple[str, dict]]) -> None:
    """Send each (service digest, notice); keep those a service did not take."""
    by_digest = {_digest(url): url for url in _urls()}
    kept = []
    for digest, fields in pending:
        url = by_digest.get(digest)
        if url is None:
            continue  # that service is no longer configured
        notice = Notice(**fields)
        if not _notify(url, notice):
            logger.warning(
                "Could not deliver the alert %r to %s; it is tried again at the next check",
                notice.subject,
                service_name(url),
            )
            kept.append([digest, fields])
    if kept:
        _keep(kept)


def _notify(url: str, notice: Notice) -> bool:
    service = apprise.Apprise()
    if not service.add(url):
        return False
    try:
        return bool(
            service.notify(title=notice.subject, body=notice.text, notify_type=notice.notify_type)
        )
    except Exception:  # noqa: BLE001 - whatever a plugin raises, the caller goes on
        return False


def _urls() -> list[str]:
    return list(settings.ZOHO_ALERT_URLS)


def _digest(url: str) -> str:
    """A service's name in the database: a digest of its URL, which is a secret."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _taken_back() -> list[tuple[str, dict]]:
    """The notices kept from earlier checks, no longer kept (they are tried now)."""
    with transaction.atomic():
        state = AlertState.objects.select_for_update().filter(singleton=1).first()
        if state is None or not state.undelivered:
            return []
        kept, state.undelivered = state.undelivered, []
        state.save(update_fields=["undelivered"])
    return [(digest, fields) for digest, fields in kept]


def _keep(kept: list[list]) -> None:
    with transaction.atomic():
        state, _created = AlertState.objects.select_for_update().get_or_create(singleton=1)
        state.undelivered = [*state.undelivered, *kept]
        state.save(update_fields=["undelivered"])
