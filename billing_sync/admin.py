"""Django admin: a window on customers' sync state and the audit trail."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from billing_sync.models import Customer, SyncAttempt, SyncRun


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = (
        "account_number",
        "email",
        "account_type",
        "zoho_sync_status",
        "zoho_billing_customer_id",
        "zoho_last_synced_at",
        "zoho_last_error",
    )
    list_filter = ("zoho_sync_status", "account_type")
    search_fields = ("email", "account_number", "zoho_billing_customer_id")
    list_select_related = ()
    readonly_fields = (
        "zoho_billing_customer_id",
        "zoho_sync_status",
        "zoho_last_error",
        "zoho_last_synced_at",
        "zoho_claimed_at",
        "zoho_claimed_by",
        "zoho_create_sent_at",
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """The audit trail is written by the sync service only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "trigger",
        "dry_run",
        "status",
        "started_at",
        "finished_at",
        "selected_count",
        "synced_count",
        "failed_count",
    )
    list_filter = ("kind", "trigger", "status", "dry_run", "started_at")
    search_fields = ("stop_reason",)
    list_select_related = ()


@admin.register(SyncAttempt)
class SyncAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "account_number",
        "customer_email",
        "outcome",
        "http_status",
        "zoho_code",
        "zoho_customer_id",
        "error_message",
    )
    list_filter = ("outcome", "run__trigger", "started_at")
    search_fields = ("account_number", "customer_email", "zoho_customer_id")
    list_select_related = ("run",)
