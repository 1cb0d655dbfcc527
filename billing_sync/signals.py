"""Saving a customer queues its sync, so that an edit reaches Zoho within seconds.

Any save through the ORM (the admin, the shell, code) and any update() of the fields we send
queues its sync once the transaction commits, together with the other edits of that
transaction: one task for one customer, one per batch for many (operations/queueing.py); the
schedule stays the safety net for edits made outside the ORM (a database trigger marks those for
it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing_sync.models import ZOHO_DATA_FIELDS, AccountType, Customer, customers_edited
from billing_sync.operations.queueing import customers_queue_sync


@receiver(post_save, sender=Customer)
def customer_saved(sender: type[Customer], instance: Customer, **kwargs: Any) -> None:
    """Queue the sync of a saved customer that belongs in Zoho."""
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not set(update_fields) & set(ZOHO_DATA_FIELDS):
        return
    if settings.ZOHO_SYNC_ON_SAVE and instance.account_type != AccountType.INTERNAL_TEST:
        customers_queue_sync(customer_ids=[instance.pk])


@receiver(customers_edited, sender=Customer)
def customers_updated(sender: type[Customer], customer_ids: list[int], **kwargs: Any) -> None:
    """Queue the sync of customers whose fields we send were changed by update()."""
    if settings.ZOHO_SYNC_ON_SAVE:  # internal test accounts are left out as they are queued
        customers_queue_sync(customer_ids=customer_ids)
