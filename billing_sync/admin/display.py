"""How the admin's lists show a value: coloured badges, times to the minute or "ago", how long a
run took, long text clipped to its column (the whole of it in the tooltip); the stylesheet."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.timesince import timesince

# How much of a long text (an error, an email) a list's cell holds; its tooltip and the change
# page hold all of it.
LIST_TEXT_CHARS = 120
GREY, BLUE, GREEN, RED, ORANGE, PURPLE = (
    "#6c757d",
    "#0d6efd",
    "#198754",
    "#dc3545",
    "#b35c00",
    "#6f42c1",
)
CSS = {"all": ("billing_sync/admin.css",)}


def badge(css_class: str, colour: str, label: str, title: str = "") -> SafeString:
    return format_html(
        '<span class="sync-badge {}" title="{}" style="background:{};color:#fff;padding:2px 8px;'
        'border-radius:10px;white-space:nowrap">{}</span>',
        css_class,
        title or label,
        colour,
        label,
    )


def short_time(value: datetime | None) -> SafeString | str:
    """To the minute; the seconds and the zone in the tooltip."""
    if value is None:
        return "—"
    return _time(value, date_format(timezone.localtime(value), "Y-m-d H:i"))


def time_ago(value: datetime | None) -> SafeString | str:
    """How long ago ("3 hours ago"); the time itself in the tooltip."""
    if value is None:
        return "—"
    if timezone.now() - value < timedelta(minutes=1):
        return _time(value, "just now")
    return _time(value, f"{timesince(value, depth=1)} ago")


def _time(value: datetime, text: str) -> SafeString:
    return format_html(
        '<time datetime="{}" title="{}" class="nowrap">{}</time>',
        value.isoformat(),
        date_format(timezone.localtime(value), "Y-m-d H:i:s T"),
        text,
    )


def took(duration: timedelta) -> str:
    """E.g. "12 s", "4 min 5 s", "2 h 13 min"."""
    minutes, seconds = divmod(round(duration.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def clipped(text: str, *, lines: int = 1) -> SafeString | str:
    """Long text cut to fit its column: the whole of it in the tooltip.

    Cut here to keep the page small, and by the stylesheet to the column's width and `lines`.
    """
    if not text:
        return "—"
    return format_html(
        '<span class="clip clip-{}" title="{}">{}</span>',
        lines,
        text,
        Truncator(text).chars(LIST_TEXT_CHARS),
    )


def count_column(field: str, heading: str) -> Callable[[Any, Any], int]:
    """A list column showing a record's count `field` under a short heading, sorted by it."""

    @admin.display(description=heading, ordering=field)
    def column(_admin: Any, record: Any) -> int:
        return getattr(record, field)

    return column


def number_column(heading: str) -> Callable[[Any, Any], str]:
    """A list column showing a record's number ("#12") under `heading`, sorted by it."""

    @admin.display(description=heading, ordering="id")
    def column(_admin: Any, record: Any) -> str:
        return f"#{record.pk}"

    return column
