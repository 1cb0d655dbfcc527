"""The audit trail's admins, read-only: the runs (SyncRun), each attempt to sync a customer
(SyncAttempt), and each import with the rows it refused (CustomerImport, ImportRefusal)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from billing_sync.admin.display import (
    BLUE,
    CSS,
    GREEN,
    GREY,
    ORANGE,
    RED,
    badge,
    clipped,
    count_column,
    number_column,
    short_time,
    took,
)
from billing_sync.models import (
    CustomerImport,
    ImportRefusal,
    ImportStatus,
    SyncAttempt,
    SyncRun,
    SyncRunStatus,
)

IMPORT_STATUS_COLOURS = {
    ImportStatus.RUNNING: BLUE,
    ImportStatus.COMPLETED: GREEN,
    ImportStatus.REFUSED: RED,
    ImportStatus.FAILED: RED,
}
RUN_STATUS_COLOURS = {
    SyncRunStatus.RUNNING: BLUE,
    SyncRunStatus.COMPLETED: GREEN,
    SyncRunStatus.STOPPED: ORANGE,
    SyncRunStatus.INTERRUPTED: RED,
}
# Badges are short; the whole label is in their tooltip (and in the filters).
SHORT_RUN_STATUS_LABELS = {SyncRunStatus.INTERRUPTED: "Interrupted"}


def run_status_badge(run: SyncRun) -> SafeString:
    label = run.get_status_display()
    return badge(
        f"run-{run.status}",
        RUN_STATUS_COLOURS.get(run.status, GREY),
        SHORT_RUN_STATUS_LABELS.get(run.status, label),
        title=label,
    )


class ReadOnly:
    """The audit trail is written by the sync service only: nobody adds, changes or deletes a
    row of it by hand (a list, a change page or an inline)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnly, admin.ModelAdmin):
    """An audit model's admin: its list and change page, read-only."""

    class Media:
        css = CSS


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "run",
        "kind_and_trigger",
        "run_status",
        "started",
        "duration",
        "selected",
        "synced",
        "failed",
        "skipped",
        "requests",
        "stop",
    )
    list_display_links = ("run",)
    list_filter = ("kind", "trigger", "status", "dry_run", "started_at")
    search_fields = ("stop_reason",)
    list_select_related = ()
    date_hierarchy = "started_at"

    run = number_column("Run")

    @admin.display(description="Kind, trigger", ordering="kind")
    def kind_and_trigger(self, run: SyncRun) -> SafeString:
        return format_html(
            '{}<br><small class="quiet">by {}</small>',
            run.get_kind_display(),
            run.get_trigger_display().lower(),
        )

    @admin.display(description="Status", ordering="status")
    def run_status(self, run: SyncRun) -> SafeString:
        status = run_status_badge(run)
        if run.dry_run:
            return format_html('{}<br><small class="quiet">dry run</small>', status)
        return status

    @admin.display(description="Started", ordering="started_at")
    def started(self, run: SyncRun) -> SafeString | str:
        return short_time(run.started_at)

    @admin.display(description="Took")
    def duration(self, run: SyncRun) -> SafeString | str:
        if run.finished_at is None:
            return "—"
        return format_html('<span class="nowrap">{}</span>', took(run.finished_at - run.started_at))

    selected = count_column("selected_count", "Selected")
    synced = count_column("synced_count", "Synced")
    failed = count_column("failed_count", "Failed")
    skipped = count_column("skipped_count", "Skipped")
    requests = count_column("request_count", "Requests")

    @admin.display(description="Stopped because")
    def stop(self, run: SyncRun) -> SafeString | str:
        return clipped(run.stop_reason, lines=2)


@admin.register(SyncAttempt)
class SyncAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "started",
        "account_and_email",
        "outcome",
        "run_link",
        "answer",
        "zoho_id",
        "error",
    )
    list_display_links = ("started",)
    list_filter = ("outcome", "final", "run__trigger", "started_at")
    search_fields = ("account_number", "customer_email", "zoho_customer_id")
    list_select_related = ("run",)
    date_hierarchy = "started_at"

    @admin.display(description="Started", ordering="started_at")
    def started(self, attempt: SyncAttempt) -> SafeString | str:
        return short_time(attempt.started_at)

    @admin.display(description="Customer", ordering="account_number")
    def account_and_email(self, attempt: SyncAttempt) -> SafeString:
        return format_html(
            '<span class="nowrap">{}</span><small class="quiet">{}</small>',
            attempt.account_number,
            clipped(attempt.customer_email, lines=2),
        )

    @admin.display(description="Run", ordering="run")
    def run_link(self, attempt: SyncAttempt) -> SafeString:
        return format_html(
            '<a href="{}">#{}</a><br><small class="quiet">{}</small>',
            reverse("admin:billing_sync_syncrun_change", args=[attempt.run_id]),
            attempt.run_id,
            attempt.run.get_trigger_display(),
        )

    @admin.display(description="HTTP / code", ordering="http_status")
    def answer(self, attempt: SyncAttempt) -> str:
        parts = (attempt.http_status, attempt.zoho_code)
        if parts == (None, None):
            return "—"
        return " / ".join("—" if part is None else str(part) for part in parts)

    @admin.display(description="Zoho id", ordering="zoho_customer_id")
    def zoho_id(self, attempt: SyncAttempt) -> str:
        return attempt.zoho_customer_id or "—"

    @admin.display(description="Error", ordering="error_message")
    def error(self, attempt: SyncAttempt) -> SafeString | str:
        return clipped(attempt.error_message, lines=2)


class ImportRefusalInline(ReadOnly, admin.TabularInline):
    model = ImportRefusal
    fields = ("line", "account_number", "column", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Refused rows (not imported)"


@admin.register(CustomerImport)
class CustomerImportAdmin(ReadOnlyAdmin):
    """Every import: where from, what it did, and each row it refused (line, column, reason)."""

    list_display = (
        "import_id",
        "source_and_trigger",
        "import_status",
        "started",
        "rows",
        "created",
        "updated",
        "unchanged",
        "refused",
        "problem_text",
    )
    list_display_links = ("import_id",)
    list_filter = ("source", "trigger", "status", "dry_run", "started_at")
    search_fields = ("name", "problem")
    list_select_related = ()
    date_hierarchy = "started_at"
    inlines = (ImportRefusalInline,)

    import_id = number_column("Import")

    @admin.display(description="From, trigger", ordering="name")
    def source_and_trigger(self, record: CustomerImport) -> SafeString:
        return format_html(
            '{}<br><small class="quiet">{} by {}</small>',
            clipped(record.name),
            record.get_source_display(),
            record.get_trigger_display().lower(),
        )

    @admin.display(description="Status", ordering="status")
    def import_status(self, record: CustomerImport) -> SafeString:
        label = record.get_status_display()
        status = badge(
            f"import-{record.status}",
            IMPORT_STATUS_COLOURS.get(record.status, GREY),
            label.split(" (")[0],
            title=label,
        )
        if record.dry_run:
            return format_html('{}<br><small class="quiet">dry run</small>', status)
        return status

    @admin.display(description="Started", ordering="started_at")
    def started(self, record: CustomerImport) -> SafeString | str:
        return short_time(record.started_at)

    rows = count_column("row_count", "Rows")
    created = count_column("created_count", "Created")
    updated = count_column("updated_count", "Updated")
    unchanged = count_column("unchanged_count", "Unchanged")
    refused = count_column("refused_count", "Refused")

    @admin.display(description="Problem")
    def problem_text(self, record: CustomerImport) -> SafeString | str:
        return clipped(record.problem or record.writeback_error, lines=2)
