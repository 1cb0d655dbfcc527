"""Show what a run would do with each customer, reading Zoho once and writing nothing."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.core.management.base import CommandParser

from billing_sync.management.base import (
    Ending,
    ZohoCommand,
    add_max_wait_argument,
    positive_int,
)
from billing_sync.management.printing import Printer
from billing_sync.models import SyncRunKind
from billing_sync.run.customer.decisions import Action
from billing_sync.run.estimate import Estimate, finish_text, in_words
from billing_sync.run.plan import Plan, PlannedCustomer, customers_plan

KINDS = {
    "sync": SyncRunKind.SYNC,
    "backfill": SyncRunKind.BACKFILL,
    "retry": SyncRunKind.RETRY_FAILED,
}


class Command(ZohoCommand):
    help = (
        "Plan a run: per customer, what it would do (create; adopt, with the Zoho id and why; "
        "update, with the fields Zoho shows otherwise; skip, why; invalid, the field; wait, "
        "until when; gone, a linked customer Zoho's list no longer holds), decided by the same "
        "code a run uses, and when the run would be done at the current limits. Reads Zoho "
        "once, within the budget, and writes nothing (no run, no attempt, no customer, nothing "
        "in Zoho)."
    )

    echoed_options = ("kind",)

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--kind",
            choices=sorted(KINDS),
            default="sync",
            help="Which run to plan: sync (zoho_sync_customers, the default), backfill or retry.",
        )
        parser.add_argument(
            "--limit", type=positive_int, default=None, metavar="N", help="At most N customers."
        )
        add_max_wait_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        plan = customers_plan(
            kind=KINDS[options["kind"]], limit=options["limit"], max_wait=options["max_wait"]
        )
        if not self.as_json:
            self._print(Printer(self.stdout, self.style), plan, options["kind"])
        self.end(
            Ending(
                values={
                    "customers": [_planned_object(planned) for planned in plan.customers],
                    "counts": {str(action): count for action, count in plan.counts.items()},
                    "requests": plan.requests,
                    "estimate": _estimate_object(plan.estimate),
                }
            )
        )

    def _print(self, p: Printer, plan: Plan, kind: str) -> None:
        p.banner("dry", f"ZOHO Billing Plan ({kind}): what a run would do; nothing is written")
        for planned in plan.customers:
            p.line(_planned_line(planned))
        p.rule()
        totals = ", ".join(f"{action} {count}" for action, count in plan.counts.items())
        p.line(f"Plan: {totals} (Zoho read in {plan.requests} request(s))")
        for line in estimate_lines(plan):
            p.line(line)


def estimate_lines(plan: Plan) -> list[str]:
    """When the run would be done, and where the daily share binds, what a higher limit gives."""
    estimate = plan.estimate
    if estimate is None:
        return []
    bound = "the daily share" if estimate.limited_by == "daily" else "the per-minute budget"
    lines = [
        f"The run needs about {estimate.requests} request(s); at the current limits this "
        f"finishes around {finish_text(estimate)}, {in_words(estimate)} (bound by {bound})."
    ]
    if plan.higher is not None:
        limit, sooner = plan.higher
        lines.append(
            f"With ZOHO_DAILY_LIMIT {limit} (a higher plan, or Zoho support raising it) it would "
            f"finish around {finish_text(sooner)}, {in_words(sooner)}."
        )
    return lines


def _estimate_object(estimate: Estimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {
        "requests": estimate.requests,
        "seconds": round(estimate.seconds, 3),
        "finishes_at": estimate.finishes_at,
        "limited_by": estimate.limited_by,
    }


def _planned_line(planned: PlannedCustomer) -> str:
    detail = planned.reason
    if planned.action == Action.ADOPT:
        detail = f"Zoho customer {planned.zoho_customer_id}: {planned.reason}"
    elif planned.action == Action.UPDATE:
        shown = ", ".join(planned.fields) or "no field differs in Zoho's list (the account number?)"
        detail = f"Zoho customer {planned.zoho_customer_id}: {shown}"
    return f"  {planned.account_number:<16} {planned.action:<8} {planned.email}: {detail}"


def _planned_object(planned: PlannedCustomer) -> dict[str, Any]:
    shown = asdict(planned)
    del shown["requests"]  # counted in the estimate
    return shown | {
        "action": str(planned.action),
        "zoho_customer_id": planned.zoho_customer_id or None,
        "fields": list(planned.fields),
    }
