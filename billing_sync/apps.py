"""App configuration for billing_sync."""

from django.apps import AppConfig


class BillingSyncConfig(AppConfig):
    """Keeps CircleTel customers in step with Zoho Billing."""

    name = "billing_sync"
    verbose_name = "Zoho Billing sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing_sync import signals  # noqa: F401 - connects the receivers
