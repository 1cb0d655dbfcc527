"""Reads about the imports from the company's database: the last one, and the rows it refused."""

from __future__ import annotations

from collections import defaultdict

from billing_sync.models import (
    CustomerImport,
    ImportSource,
    ImportStatus,
)


def latest_source_import() -> CustomerImport | None:
    """The last import from the company's database that went through (not a dry run)."""
    return (
        CustomerImport.objects.filter(
            source=ImportSource.DATABASE, status=ImportStatus.COMPLETED, dry_run=False
        )
        .order_by("-started_at", "-pk")
        .first()
    )


def latest_source_import_tried() -> CustomerImport | None:
    """The last import from the company's database that ended, whatever its end."""
    return (
        CustomerImport.objects.filter(source=ImportSource.DATABASE, dry_run=False)
        .exclude(status=ImportStatus.RUNNING)
        .order_by("-started_at", "-pk")
        .first()
    )


def source_refusals() -> dict[str, str]:
    """The source rows the last completed import from the company's database refused, by
    account number: why, in one line ("the import refused the row: email: ...")."""
    last = latest_source_import()
    if last is None:
        return {}
    reasons: dict[str, list[str]] = defaultdict(list)
    refused = last.refusals.exclude(account_number="").order_by("line", "pk")
    for account, column, reason in refused.values_list("account_number", "column", "reason"):
        reasons[account].append(f"{column}: {reason}" if column else reason)
    return {
        account: "the import refused the row: " + "; ".join(said)
        for account, said in reasons.items()
    }
