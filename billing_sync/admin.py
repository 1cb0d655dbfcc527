"""Django admin: a window on customers' sync state and the audit trail, plus re-queueing."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html

from billing_sync.models import Customer, SyncAttempt, SyncRun, SyncStatus, SyncTrigger
from billing_sync.services.queueing import RequeueResult, customers_requeue
from billing_sync.services.run_report import ResultCollector
from billing_sync.services.runs import customers_preview
from billing_sync.zoho.config import zoho_web_customer_url
from billing_sync.zoho.errors import ZohoConfigError

RECENT_ATTEMPTS = 20
STATUS_COLOURS = {
    SyncStatus.PENDING: "#6c757d",
    SyncStatus.SYNCING: "#0d6efd",
    SyncStatus.SYNCED: "#198754",
    SyncStatus.FAILED: "#dc3545",
    SyncStatus.NEEDS_ATTENTION: "#b35c00",
}


def status_badge(status: str) -> str:
    """A coloured badge for a sync status."""
    label = SyncStatus(status).label if status in SyncStatus.values else status
    return format_html(
        '<span class="sync-badge sync-{}" style="background:{};color:#fff;padding:2px 8px;'
        'border-radius:10px;white-space:nowrap">{}</span>',
        status,
        STATUS_COLOURS.get(status, "#6c757d"),
        label,
    )


class RecentAttemptsFormSet(BaseInlineFormSet):
    """Only the most recent attempts: a customer retried for months has many."""

    def get_queryset(self) -> QuerySet[SyncAttempt]:
        attempts = super().get_queryset().order_by("-started_at", "-id")
        recent = list(attempts.values_list("pk", flat=True)[:RECENT_ATTEMPTS])
        return attempts.filter(pk__in=recent)


class SyncAttemptInline(admin.TabularInline):
    model = SyncAttempt
    formset = RecentAttemptsFormSet
    fields = (
        "started_at",
        "run",
        "outcome",
        "http_status",
        "zoho_code",
        "zoho_customer_id",
        "error_message",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"Recent Zoho sync attempts (last {RECENT_ATTEMPTS})"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = (
        "account_number",
        "email",
        "display_name",
        "account_type",
        "sync_status",
        "zoho_id_link",
        "zoho_last_synced_at",
        "zoho_last_error",
    )
    list_filter = ("zoho_sync_status", "account_type")
    search_fields = ("email", "account_number", "zoho_billing_customer_id")
    list_select_related = ()
    ordering = ("created_at", "id")
    actions = ("requeue_zoho_sync", "preview_zoho_sync")
    inlines = (SyncAttemptInline,)
    readonly_fields = (
        "sync_status",
        "zoho_id_link",
        "zoho_last_error",
        "zoho_last_synced_at",
        "zoho_claimed_at",
        "zoho_claimed_by",
        "zoho_create_sent_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "account_number",
                    "account_type",
                    "email",
                    ("first_name", "last_name"),
                    "company_name",
                    "phone",
                )
            },
        ),
        ("Zoho Billing", {"fields": readonly_fields}),
    )

    @admin.display(description="Sync status", ordering="zoho_sync_status")
    def sync_status(self, customer: Customer) -> str:
        return status_badge(customer.zoho_sync_status)

    @admin.display(description="Zoho id", ordering="zoho_billing_customer_id")
    def zoho_id_link(self, customer: Customer) -> str:
        zoho_id = customer.zoho_billing_customer_id
        if not zoho_id:
            return "—"
        url = zoho_web_customer_url(zoho_id)
        if not url:
            return zoho_id
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, zoho_id)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing_sync.requeue_sync")

    @admin.action(description="Re-queue Zoho sync", permissions=["requeue"])
    def requeue_zoho_sync(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        result = customers_requeue(customer_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, requeue_message(result), messages.SUCCESS)

    @admin.action(description="Preview Zoho sync (dry run)", permissions=["requeue"])
    def preview_zoho_sync(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        collector = ResultCollector()
        try:
            customers_preview(customer_ids=ids, trigger=SyncTrigger.ADMIN, observer=collector)
        except ZohoConfigError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        problems = [r for r in collector.results if r.error]
        would = len(collector.results) - len(problems)
        skipped = len(ids) - len(collector.results)
        text = f"Dry run: {would} would be synced, {len(problems)} need attention"
        text += f", {skipped} would be skipped (internal_test, synced or being synced)."
        self.message_user(request, text, messages.INFO)
        for result in problems:
            self.message_user(request, f"{result.account_number}: {result.error}", messages.WARNING)


def requeue_message(result: RequeueResult) -> str:
    """E.g. "Queued 3 customer(s) for Zoho sync; skipped 2 (1 internal_test, 1 already synced)"."""
    text = f"Queued {len(result.queued)} customer(s) for Zoho sync"
    if result.skipped_count:
        reasons = ", ".join(f"{len(c)} {reason}" for reason, c in result.skipped.items())
        text += f"; skipped {result.skipped_count} ({reasons})"
    return text + "."


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
        "skipped_count",
        "request_count",
    )
    list_filter = ("kind", "trigger", "status", "dry_run", "started_at")
    search_fields = ("stop_reason",)
    list_select_related = ()
    date_hierarchy = "started_at"


@admin.register(SyncAttempt)
class SyncAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "account_number",
        "customer_email",
        "outcome",
        "trigger",
        "http_status",
        "zoho_code",
        "zoho_customer_id",
        "error_message",
    )
    list_filter = ("outcome", "run__trigger", "started_at")
    search_fields = ("account_number", "customer_email", "zoho_customer_id")
    list_select_related = ("run",)
    date_hierarchy = "started_at"

    @admin.display(description="Trigger", ordering="run__trigger")
    def trigger(self, attempt: SyncAttempt) -> str:
        return attempt.run.get_trigger_display()
