"""Handing customers to the django-q workers: a person's re-queue from the admin, and every
saved edit, so that it reaches Zoho within seconds when a worker runs (the schedule is the
safety net)."""

from __future__ import annotations

import logging
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from billing_sync.models import AccountType, Customer, SyncStatus, SyncTrigger
from billing_sync.run.selection import with_requeue_refusal

logger = logging.getLogger(__name__)

SYNC_CUSTOMER_TASK = "billing_sync.tasks.sync_customer_task"
SYNC_SELECTED_TASK = "billing_sync.tasks.sync_selected_task"


@dataclass
class RequeueResult:
    """Which customers were queued, and why the others were not."""

    queued: list[Customer] = field(default_factory=list)
    skipped: dict[str, list[Customer]] = field(default_factory=lambda: defaultdict(list))

    @property
    def skipped_count(self) -> int:
        return sum(len(customers) for customers in self.skipped.values())


@transaction.atomic
def customers_requeue(*, customer_ids: list[int]) -> RequeueResult:
    """Queue one sync task for the customers of this selection that still need Zoho, once this
    transaction commits: the worker syncs them in one run, however many there are.

    A person's re-queue puts `failed` and `needs_attention` customers back to `pending`.
    """
    result = RequeueResult()
    customers = with_requeue_refusal(
        Customer.objects.filter(pk__in=customer_ids).order_by("pk"),
        settings.ZOHO_STALE_CLAIM_SECONDS,
    )
    for customer in customers:
        if customer.requeue_refusal:
            result.skipped[customer.requeue_refusal].append(customer)
        else:
            result.queued.append(customer)
    queued_ids = [customer.pk for customer in result.queued]
    Customer.objects.filter(
        pk__in=queued_ids,
        zoho_sync_status__in=[SyncStatus.FAILED, SyncStatus.NEEDS_ATTENTION],
    ).update(zoho_sync_status=SyncStatus.PENDING)
    if queued_ids:
        transaction.on_commit(lambda: _enqueue_selection(queued_ids))
    return result


def _enqueue_selection(customer_ids: list[int]) -> None:
    async_task(
        SYNC_SELECTED_TASK, customer_ids, task_name=f"zoho-sync-{len(customer_ids)}-selected"
    )


# A queued task that never started (a worker died with it: the Redis broker keeps no receipt)
# stops holding back new ones after this long.
QUEUED_MARK_SECONDS = 600


def customers_queue_sync(*, customer_ids: list[int]) -> None:
    """Once the current transaction commits, queue the sync of these customers together with
    every other edited in it: one task for a lone customer, one selection run per
    ZOHO_SCHEDULE_BATCH_SIZE customers for many (an update(), a transaction of edits). A
    customer whose task is queued and not started is left to it: many saves cost one task.

    The transaction's edits gather in one `EditedTogether`, our own marker, registered with
    `on_commit` at each call: Django holds it while the transaction stands and runs it at its
    commit (the first run queues all, the others find nothing left); a rollback drops it. The
    connection keeps only a weak reference, so a marker Django no longer holds is gone, and the
    next transaction starts its own (outside a transaction, on_commit runs it at once).
    """
    connection = transaction.get_connection()
    marker = getattr(connection, "billing_sync_edited", None)
    together = marker() if marker is not None else None
    if together is None:
        together = EditedTogether()
        connection.billing_sync_edited = weakref.ref(together)
    together.ids.update(customer_ids)
    transaction.on_commit(together)


class EditedTogether:
    """The customers edited in one transaction: queued in batches once it commits."""

    def __init__(self) -> None:
        self.ids: set[int] = set()

    def __call__(self) -> None:
        customer_ids, self.ids = sorted(self.ids), set()
        if not customer_ids:
            return  # queued by an earlier run of this marker in the same commit
        size = settings.ZOHO_SCHEDULE_BATCH_SIZE
        # One transaction for every batch's mark and task (the database broker's too): one
        # commit, one connection, where autocommit had django-q reconnect for each task.
        with transaction.atomic():
            for start in range(0, len(customer_ids), size):
                _queue_batch(customer_ids[start : start + size])


def _queue_batch(customer_ids: list[int]) -> None:
    """Mark the batch's customers queued in one statement (those that belong in Zoho, with no
    task waiting for them), then queue one task for those marked."""
    now = timezone.now()
    free = Q(zoho_sync_queued_at__isnull=True) | Q(
        zoho_sync_queued_at__lt=now - timedelta(seconds=QUEUED_MARK_SECONDS)
    )
    batch = Customer.objects.filter(pk__in=customer_ids)
    if (
        not batch.filter(free)
        .exclude(account_type=AccountType.INTERNAL_TEST)
        .update(zoho_sync_queued_at=now)
    ):
        return
    marked = list(batch.filter(zoho_sync_queued_at=now).values_list("pk", flat=True))
    try:
        if len(marked) == 1:
            async_task(
                SYNC_CUSTOMER_TASK,
                marked[0],
                SyncTrigger.EDIT,
                task_name=f"zoho-sync-customer-{marked[0]}",
            )
        else:
            async_task(
                SYNC_SELECTED_TASK,
                marked,
                SyncTrigger.EDIT,
                task_name=f"zoho-sync-{len(marked)}-edited",
            )
    except Exception as error:  # noqa: BLE001 - whatever the broker raises, the edit stands
        # The edit is saved; only its quick way to Zoho is lost: the schedule sends it. Unmarked,
        # so the next save tries to queue again.
        batch.filter(zoho_sync_queued_at=now).update(zoho_sync_queued_at=None)
        logger.warning(
            "could not queue the sync of %d edited customer(s) (%s: %s); the schedule sends "
            "their edits",
            len(marked),
            type(error).__name__,
            error,
        )


def customers_task_started(customer_ids: list[int]) -> None:
    """Their queued task runs: saves from now on queue another, which sends what they change."""
    Customer.objects.filter(pk__in=customer_ids).update(zoho_sync_queued_at=None)
