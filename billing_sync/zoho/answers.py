"""The answers Zoho's API gave, counted by HTTP status and Zoho code, for every process.

The request gate writes a lease's answers together (pacing.py), and counts them here in the
same step: one UPDATE per kind of answer, so the count costs next to nothing per request.
The counts live in the database (`ZohoAnswerCount`), so `/metrics` serves the same totals from
whichever process answers the scrape, whichever process sent the requests.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.db.models import F

from billing_sync.models import ZohoAnswerCount

# An answer's kind: (HTTP status, 0 when none came back; Zoho's code, "" when it sent none).
AnswerKind = tuple[int, str]
CODE_MAX_CHARS = ZohoAnswerCount._meta.get_field("zoho_code").max_length


def answer_kind(http_status: int | None, zoho_code: object) -> AnswerKind:
    """The kind of one answer, as counted: a missing status or code is kept apart from any."""
    code = "" if zoho_code is None else str(zoho_code)[:CODE_MAX_CHARS]
    return (http_status or 0, code)


def is_refusal(kind: AnswerKind) -> bool:
    """Whether Zoho refused the request: an error status, or an error code with a 2xx."""
    http_status, code = kind
    return http_status >= 400 or (200 <= http_status < 300 and code not in ("", "0"))


def count_answers(counts: Mapping[AnswerKind, int]) -> None:
    """Add `counts` to the totals (each kind's row is made on its first answer)."""
    for (http_status, code), count in counts.items():
        if not count:
            continue
        row = ZohoAnswerCount.objects.filter(http_status=http_status, zoho_code=code)
        if row.update(count=F("count") + count):
            continue
        try:
            with transaction.atomic():
                ZohoAnswerCount.objects.create(http_status=http_status, zoho_code=code, count=count)
        except IntegrityError:  # another process made the row first
            row.update(count=F("count") + count)
