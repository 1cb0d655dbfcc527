"""Django admin: a window on customers' sync state and the audit trail, plus re-queueing."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.timesince import timesince

from billing_sync.import_admin import CustomerImportExport
from billing_sync.models import (
    BILLING_ADDRESS_FIELDS,
    AccountStatus,
    AccountType,
    Customer,
    CustomerImport,
    ImportRefusal,
    ImportStatus,
    SyncAttempt,
    SyncRun,
    SyncRunStatus,
    SyncStatus,
    SyncTrigger,
)
from billing_sync.operations.queueing import RequeueResult, customers_requeue
from billing_sync.run.report import ResultCollector
from billing_sync.run.runs import customers_preview
from billing_sync.zoho.config import zoho_web_customer_url
from billing_sync.zoho.errors import ZohoConfigError

RECENT_ATTEMPTS = 20
# How much of a long text (an error, an email) a list's cell holds; its tooltip and the change
# page hold all of it.
LIST_TEXT_CHARS = 120
GREY, BLUE, GREEN, RED, ORANGE, PURPLE = (
    "#6c757d",
    "#0d6efd",
    "#198754",
    "#dc3545",
    "#b35c00",
    "#6f42c1",
)
STATUS_COLOURS = {
    SyncStatus.PENDING: GREY,
    SyncStatus.SYNCING: BLUE,
    SyncStatus.SYNCED: GREEN,
    SyncStatus.FAILED: RED,
    SyncStatus.NEEDS_ATTENTION: ORANGE,
}
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
SHORT_STATUS_LABELS = {SyncStatus.FAILED: "Failed", SyncStatus.NEEDS_ATTENTION: "Needs attention"}
SHORT_RUN_STATUS_LABELS = {SyncRunStatus.INTERRUPTED: "Interrupted"}
NEVER_SENT = "Never sent (internal test)"
NOT_SENT = "Not sent (internal test)"  # in Zoho from before it became one
INTERNAL_TEST_TITLE = "internal_test accounts are never sent to Zoho"
CSS = {"all": ("billing_sync/admin.css",)}


def badge(css_class: str, colour: str, label: str, title: str = "") -> SafeString:
    return format_html(
        '<span class="sync-badge {}" title="{}" style="background:{};color:#fff;padding:2px 8px;'
        'border-radius:10px;white-space:nowrap">{}</span>',
        css_class,
        title or label,
        colour,
        label,
    )


def status_badge(status: str) -> SafeString:
    """A coloured badge for a sync status: short, with the whole label in its tooltip."""
    label = SyncStatus(status).label if status in SyncStatus.values else status
    return badge(
        f"sync-{status}",
        STATUS_COLOURS.get(status, GREY),
        SHORT_STATUS_LABELS.get(status, label),
        title=label,
    )


def customer_badge(customer: Customer) -> SafeString:
    """The customer's sync status; an internal test account is never sent, whatever its status
    column holds (it stays `pending` for ever)."""
    if customer.account_type == AccountType.INTERNAL_TEST:
        label = NOT_SENT if customer.zoho_billing_customer_id else NEVER_SENT
        return badge("sync-internal-test", PURPLE, label, title=INTERNAL_TEST_TITLE)
    return status_badge(customer.zoho_sync_status)


def closed_title(customer: Customer) -> str:
    """Where a closed account stands in Zoho, for the tooltip of its "closed" marker."""
    if not customer.zoho_billing_customer_id:
        return "Closed before it reached Zoho: not created there"
    if customer.zoho_inactive:
        return "Closed: inactive in Zoho"
    return "Closed: not marked inactive in Zoho yet"


def run_status_badge(run: SyncRun) -> SafeString:
    label = run.get_status_display()
    return badge(
        f"run-{run.status}",
        RUN_STATUS_COLOURS.get(run.status, GREY),
        SHORT_RUN_STATUS_LABELS.get(run.status, label),
        title=label,
    )


def short_time(value: datetime | None) -> SafeString | str:
    """To the minute; the seconds and the zone in the tooltip."""
    if value is None:
        return "—"
    return _time(value, date_format(timezone.localtime(value), "Y-m-d H:i"))


def time_ago(value: datetime | None) -> SafeString | str:
    """How long ago ("3 hours ago"); the time itself in the tooltip."""
    if value is None:
        return "—"
    if timezone.now() - value < timedelta(minutes=1):
        return _time(value, "just now")
    return _time(value, f"{timesince(value, depth=1)} ago")


def _time(value: datetime, text: str) -> SafeString:
    return format_html(
        '<time datetime="{}" title="{}" class="nowrap">{}</time>',
        value.isoformat(),
        date_format(timezone.localtime(value), "Y-m-d H:i:s T"),
        text,
    )


def took(duration: timedelta) -> str:
    """E.g. "12 s", "4 min 5 s", "2 h 13 min"."""
    minutes, seconds = divmod(round(duration.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def clipped(text: str, *, lines: int = 1) -> SafeString | str:
    """Long text cut to fit its column: the whole of it in the tooltip.

    Cut here to keep the page small, and by the stylesheet to the column's width and `lines`.
    """
    if not text:
        return "—"
    return format_html(
        '<span class="clip clip-{}" title="{}">{}</span>',
        lines,
        text,
        Truncator(text).chars(LIST_TEXT_CHARS),
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
class CustomerAdmin(CustomerImportExport, admin.ModelAdmin):
    # Narrow enough for a 1366 px laptop: name and email share a column, the account type shows
    # in the badge when it matters (internal test), a closed account is marked below its badge,
    # long text is cut (the change page has it).
    list_display = (
        "account",
        "customer",
        "sync_status",
        "zoho_id_link",
        "last_synced",
        "last_error",
    )
    list_display_links = ("account",)
    list_filter = ("zoho_sync_status", "account_status", "account_type")
    search_fields = ("email", "account_number", "vat_number", "zoho_billing_customer_id")
    list_select_related = ()
    ordering = ("created_at", "id")
    actions = ("requeue_zoho_sync", "preview_zoho_sync")
    inlines = (SyncAttemptInline,)
    # The form holds what a person owns, and a save writes only what it changed (Customer.save):
    # the sync's columns are shown, never edited, and a form opened before a run never undoes
    # what the run wrote.
    readonly_fields = (
        "sync_status",
        "zoho_id_link",
        "zoho_last_error",
        "zoho_last_synced_at",
        "zoho_claimed_at",
        "zoho_claimed_by",
        "zoho_create_sent_at",
        "zoho_inactive",
        "zoho_vat_number_missing",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "account_number",
                    "account_type",
                    "account_status",
                    "email",
                    ("first_name", "last_name"),
                    "company_name",
                    "phone",
                    "vat_number",
                )
            },
        ),
        ("Billing address", {"fields": BILLING_ADDRESS_FIELDS}),
        ("Zoho Billing", {"fields": readonly_fields}),
    )

    class Media:
        css = CSS

    @admin.display(description="Account", ordering="account_number")
    def account(self, customer: Customer) -> SafeString:
        return format_html('<span class="nowrap">{}</span>', customer.account_number)

    @admin.display(description="Customer", ordering="email")
    def customer(self, customer: Customer) -> SafeString:
        return format_html(
            '{}<small class="quiet">{}</small>',
            clipped(customer.display_name),
            clipped(customer.email, lines=2),
        )

    @admin.display(description="Sync status", ordering="zoho_sync_status")
    def sync_status(self, customer: Customer) -> SafeString:
        status = customer_badge(customer)
        if customer.account_status != AccountStatus.CLOSED:
            return status
        return format_html(
            '{}<br><small class="quiet account-closed" title="{}">closed</small>',
            status,
            closed_title(customer),
        )

    @admin.display(description="Last sync", ordering="zoho_last_synced_at")
    def last_synced(self, customer: Customer) -> SafeString | str:
        return time_ago(customer.zoho_last_synced_at)

    @admin.display(description="Last error", ordering="zoho_last_error")
    def last_error(self, customer: Customer) -> SafeString | str:
        return clipped(customer.zoho_last_error, lines=2)

    @admin.display(description="Zoho id", ordering="zoho_billing_customer_id")
    def zoho_id_link(self, customer: Customer) -> str:
        zoho_id = customer.zoho_billing_customer_id
        if not zoho_id:
            return "—"
        url = zoho_web_customer_url(zoho_id)
        if not url:
            return zoho_id
        return format_html(
            '<a href="{}" target="_blank" rel="noopener" class="nowrap">{}</a>', url, zoho_id
        )

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing_sync.requeue_sync")

    @admin.action(description="Re-queue Zoho sync", permissions=["requeue"])
    def requeue_zoho_sync(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        result = customers_requeue(customer_ids=list(queryset.values_list("pk", flat=True)))
        level = messages.SUCCESS if result.queued else messages.WARNING
        self.message_user(request, requeue_message(result), level)

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

    class Media:
        css = CSS

    @admin.display(description="Run", ordering="id")
    def run(self, run: SyncRun) -> str:
        return f"#{run.pk}"

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

    @admin.display(description="Selected", ordering="selected_count")
    def selected(self, run: SyncRun) -> int:
        return run.selected_count

    @admin.display(description="Synced", ordering="synced_count")
    def synced(self, run: SyncRun) -> int:
        return run.synced_count

    @admin.display(description="Failed", ordering="failed_count")
    def failed(self, run: SyncRun) -> int:
        return run.failed_count

    @admin.display(description="Skipped", ordering="skipped_count")
    def skipped(self, run: SyncRun) -> int:
        return run.skipped_count

    @admin.display(description="Requests", ordering="request_count")
    def requests(self, run: SyncRun) -> int:
        return run.request_count

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

    class Media:
        css = CSS

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


class ImportRefusalInline(admin.TabularInline):
    model = ImportRefusal
    fields = ("line", "account_number", "column", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Refused rows (not imported)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


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

    class Media:
        css = CSS

    @admin.display(description="Import", ordering="id")
    def import_id(self, record: CustomerImport) -> str:
        return f"#{record.pk}"

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

    @admin.display(description="Rows", ordering="row_count")
    def rows(self, record: CustomerImport) -> int:
        return record.row_count

    @admin.display(description="Created", ordering="created_count")
    def created(self, record: CustomerImport) -> int:
        return record.created_count

    @admin.display(description="Updated", ordering="updated_count")
    def updated(self, record: CustomerImport) -> int:
        return record.updated_count

    @admin.display(description="Unchanged", ordering="unchanged_count")
    def unchanged(self, record: CustomerImport) -> int:
        return record.unchanged_count

    @admin.display(description="Refused", ordering="refused_count")
    def refused(self, record: CustomerImport) -> int:
        return record.refused_count

    @admin.display(description="Problem")
    def problem_text(self, record: CustomerImport) -> SafeString | str:
        return clipped(record.problem or record.writeback_error, lines=2)
