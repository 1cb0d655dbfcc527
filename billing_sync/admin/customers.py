"""The customer admin: the list of customers and where each stands in Zoho, the change page with
its recent attempts, and the actions that re-queue or preview their sync."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from billing_sync.admin.display import (
    BLUE,
    CSS,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    RED,
    badge,
    clipped,
    time_ago,
)
from billing_sync.admin.import_and_export import CustomerImportExport
from billing_sync.models import (
    BILLING_ADDRESS_FIELDS,
    AccountStatus,
    AccountType,
    Customer,
    SyncAttempt,
    SyncStatus,
    SyncTrigger,
)
from billing_sync.operations.queueing import RequeueResult, customers_requeue
from billing_sync.run.report import ResultCollector
from billing_sync.run.runs import customers_preview
from billing_sync.zoho.config import zoho_web_customer_url
from billing_sync.zoho.errors import ZohoConfigError

RECENT_ATTEMPTS = 20
STATUS_COLOURS = {
    SyncStatus.PENDING: GREY,
    SyncStatus.SYNCING: BLUE,
    SyncStatus.SYNCED: GREEN,
    SyncStatus.FAILED: RED,
    SyncStatus.NEEDS_ATTENTION: ORANGE,
}
# Badges are short; the whole label is in their tooltip (and in the filters).
SHORT_STATUS_LABELS = {SyncStatus.FAILED: "Failed", SyncStatus.NEEDS_ATTENTION: "Needs attention"}
NEVER_SENT = "Never sent (internal test)"
NOT_SENT = "Not sent (internal test)"  # in Zoho from before it became one
INTERNAL_TEST_TITLE = "internal_test accounts are never sent to Zoho"


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
