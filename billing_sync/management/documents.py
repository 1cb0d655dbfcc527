"""The `--json` documents: each command's keys declared here, in order, and how they are written.

Every document has `command` (first), its command's keys (always all of them, valued as below
when the command never got to them), `exit_code` and `problems` (last). docs/json-output.md
lists the same keys (tests/test_docs.py holds the two together). A document's one long list (a
run's `customers`, an import's `rows`) is written item by item, each by the encoder, into a
temporary file past 1 MB (management/base.py `ZohoCommand.end`), so a run over 100,000 customers
holds none of them in memory for its output; the document reaches stdout once it is whole, so
a failure while it is read never leaves half a document there. Times are ISO 8601 with their
offset; ASCII only, so any terminal encoding carries it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from billing_sync.models import CustomerImport, SyncRun
from billing_sync.run.report import CustomerResult, RunReport, run_finished_customers

Write = Callable[[str], None]

# A run's counts, in this order: RunReport's `<name>_count`.
RUN_COUNTS = (
    "selected",
    "attempted",
    "synced",
    "failed",
    "skipped",
    "waiting",
    "finished",
    "unreached",
    "updated",
)
RUN_DOCUMENT: dict[str, Any] = {
    "run_id": None,
    "dry_run": False,
    "customers": [],
    "counts": dict.fromkeys(RUN_COUNTS, 0),
    "stopped": None,
    "duration_seconds": 0.0,
    "requests": 0,
    "writeback": None,
}
# An import's counts, in this order, and the record's field for each.
IMPORT_COUNTS = {
    "rows": "row_count",
    "created": "created_count",
    "updated": "updated_count",
    "unchanged": "unchanged_count",
    "refused": "refused_count",
}
DOCUMENTS: dict[str, dict[str, Any]] = {
    "zoho_sync_customers": RUN_DOCUMENT,
    "zoho_backfill_customers": RUN_DOCUMENT,
    "zoho_retry_failed": RUN_DOCUMENT,
    "zoho_verify": {
        "deep": False,
        "status_counts": [],
        "without_zoho_id": [],
        "zoho": None,
        "unknown_ids": [],
        "duplicates": [],
        "missing_accounts": None,
        "drift": [],
        "relinkable": None,
        "fix": None,
    },
    "zoho_check_credentials": {"checks": []},
    "zoho_schedule": {"ensured": False, "schedules": []},
    "zoho_plan": {"kind": None, "customers": [], "counts": {}, "requests": 0, "estimate": None},
    "zoho_load_demo": {"customers": 0, "created": 0, "already_present": 0},
    "import_customers": {
        "import_id": None,
        "dry_run": False,
        "source": None,
        "columns": {},
        "ignored_columns": [],
        "written_by_sync": [],
        "rows": [],
        "counts": dict.fromkeys(IMPORT_COUNTS, 0),
        "sync_queued": False,
        "writeback": None,
    },
}


def empty_document(command: str, **known: Any) -> dict[str, Any]:
    """`command`'s keys valued as when it never got to them, with the values `known`."""
    return {"command": command, **copy.deepcopy(DOCUMENTS[command]), **known}


def json_text(value: Any) -> str:
    """`value` as JSON: ASCII only, datetimes in ISO 8601."""
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_document(
    write: Write,
    document: dict[str, Any],
    *,
    exit_code: int,
    problems: list[str],
    listed: str = "",
    items: Iterable[str] = (),
) -> None:
    """Write `document`, then `exit_code` and `problems`, member by member, each value by the
    encoder; its member `listed` is written from `items` (each already JSON text, a line each),
    read as they are written."""
    members = document | {"exit_code": exit_code, "problems": problems}
    for number, (name, value) in enumerate(members.items()):
        write(("{" if not number else ", ") + json_text(name) + ": ")
        if name == listed:
            _write_list(write, items)
        else:
            write(json_text(value))
    write("}\n")


def _write_list(write: Write, items: Iterable[str]) -> None:
    write("[")
    count = 0
    for count, item in enumerate(items, 1):
        write(("," if count > 1 else "") + "\n" + item)
    write("\n]" if count else "]")


# --- a run's document, read from its record ------------------------------------------------------


def customer_object(result: CustomerResult, status: str | None) -> dict[str, Any]:
    """One finished customer of a run, as its final attempt records it, and `status`: the
    customer's status once the run is over (None: the customer was deleted since)."""
    return {
        "customer_id": result.customer_id,
        "email": result.email,
        "account_number": result.account_number,
        "outcome": str(result.outcome),
        "status": status,
        "zoho_customer_id": result.zoho_customer_id or None,
        "error": result.error or None,
        "waiting_until": result.waiting_until,
    }


def run_customers(run: SyncRun) -> Iterable[str]:
    """Each customer the run finished, as JSON text (`run_finished_customers`)."""
    for result, status in run_finished_customers(run):
        yield json_text(customer_object(result, status))


def run_document(command: str, report: RunReport) -> dict[str, Any]:
    """A run's document as its record says (its customers are streamed: `run_customers`)."""
    run = report.run
    stopped = None
    if run.stop_reason:
        stopped = {"reason": run.stop_reason, "needs_setup": run.stop_needs_setup}
    return empty_document(command) | {
        "run_id": run.pk,
        "dry_run": run.dry_run,
        "counts": {name: getattr(report, f"{name}_count") for name in RUN_COUNTS},
        "stopped": stopped,
        "duration_seconds": round(report.duration_seconds, 3),
        "requests": run.request_count,
        "writeback": writeback_object(run),
    }


def writeback_object(record: SyncRun | CustomerImport) -> dict[str, Any] | None:
    """What the write-back into the company's database did, as recorded; None when none ran."""
    if record.writeback_count is None and not record.writeback_error:
        return None
    return {"rows": record.writeback_count, "error": record.writeback_error or None}
