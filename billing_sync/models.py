"""Data and invariants: customers, sync runs and attempts, and the shared Zoho API state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from billing_sync.times import in_utc


class TimestampedModel(models.Model):
    """Adds creation and update times."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class AccountType(models.TextChoices):
    RESIDENTIAL = "residential", "Residential"
    BUSINESS = "business", "Business"
    INTERNAL_TEST = "internal_test", "Internal test (never sent to Zoho)"


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed (inactive in Zoho)"


class SyncStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SYNCING = "syncing", "Syncing"
    SYNCED = "synced", "Synced"
    FAILED = "failed", "Failed (will be retried)"
    NEEDS_ATTENTION = "needs_attention", "Needs attention (fix the data)"


# The columns the sync owns (an import skips them: our export carries some).
SYNC_COLUMNS = frozenset(
    {
        "zoho_billing_customer_id",
        "zoho_sync_status",
        "zoho_last_error",
        "zoho_last_synced_at",
        "zoho_claimed_at",
        "zoho_claimed_by",
        "zoho_create_sent_at",
        "zoho_synced_data_at",
        "zoho_synced_hash",
        "zoho_sync_queued_at",
        "zoho_account_number_missing",
        "zoho_inactive",
        "zoho_vat_number_missing",
    }
)
# The billing address, as Zoho's `billing_address` takes it (street2 joins its street).
BILLING_ADDRESS_FIELDS = (
    "billing_attention",
    "billing_street",
    "billing_street2",
    "billing_city",
    "billing_state",
    "billing_zip",
    "billing_country",
)
# The fields we send Zoho (account_status as its status): editing any of them moves
# updated_at and may fix what Zoho refused (the triggers of migrations 0007, 0014 and 0016).
ZOHO_DATA_FIELDS = (
    "email",
    "account_number",
    "first_name",
    "last_name",
    "company_name",
    "phone",
    *BILLING_ADDRESS_FIELDS,
    "vat_number",
    "account_status",
)


class CustomerQuerySet(models.QuerySet):
    """Customers; an update() of the fields we send Zoho is heard like a save (see signals)."""

    def update(self, **kwargs: Any) -> int:
        edits = [name for name in kwargs if name in ZOHO_DATA_FIELDS]
        edited_ids = list(self.values_list("pk", flat=True)) if edits else []
        count = super().update(**kwargs)
        if edited_ids:
            customers_edited.send(sender=Customer, customer_ids=edited_ids)
        return count


# Sent when update() changes fields we send Zoho, with the ids of the customers it changed.
customers_edited = Signal()


class Customer(TimestampedModel):
    """A CircleTel customer and the state of its copy in Zoho Billing."""

    email = models.EmailField(max_length=254)
    account_number = models.CharField(max_length=32, unique=True)
    # Longer than Zoho accepts: the sync, not the database, tells a person which field to fix.
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    company_name = models.CharField(max_length=255, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    account_type = models.CharField(
        max_length=20, choices=AccountType.choices, default=AccountType.RESIDENTIAL
    )
    billing_attention = models.CharField("attention", max_length=100, blank=True)
    billing_street = models.CharField("street", max_length=255, blank=True)
    billing_street2 = models.CharField(
        "street (line 2)", max_length=255, blank=True, help_text="Sent in Zoho's street, below."
    )
    billing_city = models.CharField("city", max_length=100, blank=True)
    billing_state = models.CharField("state or province", max_length=100, blank=True)
    billing_zip = models.CharField("postal code", max_length=32, blank=True)
    billing_country = models.CharField("country", max_length=100, blank=True)
    vat_number = models.CharField(
        "VAT number",
        max_length=32,
        blank=True,
        help_text="VAT registration number (Zoho takes 2 to 12 characters); blank is not sent.",
    )
    account_status = models.CharField(
        max_length=10,
        choices=AccountStatus.choices,
        default=AccountStatus.ACTIVE,
        db_index=True,
        help_text="Closed: marked inactive in Zoho (never deleted); closed before it reached "
        "Zoho: not created.",
    )
    zoho_billing_customer_id = models.CharField(
        max_length=64, null=True, blank=True, unique=True, help_text="Null until synced."
    )
    zoho_sync_status = models.CharField(
        max_length=20, choices=SyncStatus.choices, default=SyncStatus.PENDING, db_index=True
    )
    zoho_last_error = models.TextField(blank=True)
    zoho_last_synced_at = models.DateTimeField(null=True, blank=True)
    zoho_claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a run took this customer (status syncing)."
    )
    zoho_claimed_by = models.ForeignKey(
        "SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    zoho_create_sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set before a create is sent, cleared once its outcome is known. "
        "While set, Zoho may hold this customer already: look before creating again.",
    )
    zoho_synced_data_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The updated_at of the row whose data Zoho last accepted: a later updated_at "
        "means local changes to push (a database trigger moves updated_at on any change of the "
        "fields we send, whoever makes it).",
    )
    zoho_synced_hash = models.CharField(
        max_length=64,
        blank=True,
        help_text="Hash of the fields we own, as Zoho last accepted them: a save that changes "
        "none of them costs no request.",
    )
    zoho_sync_queued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A sync task for this customer was queued then and has not started: saves "
        "meanwhile queue no other.",
    )
    zoho_account_number_missing = models.BooleanField(
        default=False,
        db_index=True,
        help_text="Zoho holds this customer without our account number (its custom field was "
        "missing or changed the value): no run creates more customers until it is written.",
    )

    zoho_inactive = models.BooleanField(
        default=False,
        help_text="Zoho holds this customer as inactive: we marked it so, or found it so.",
    )
    zoho_vat_number_missing = models.BooleanField(
        default=False,
        help_text="Zoho's answer did not carry our VAT number back (an edition without VAT?): "
        "the next sync sends it again.",
    )

    objects = CustomerQuerySet.as_manager()

    class Meta:
        db_table = "customers"
        ordering = ["created_at", "id"]
        permissions = [("requeue_sync", "Can re-queue a customer's Zoho sync")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(zoho_sync_status="synced") | Q(zoho_billing_customer_id__isnull=False),
                name="customer_synced_has_zoho_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_number} <{self.email}>"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save what the caller changed since the row was read (all of it for a new row, or
        with `update_fields`): a save never writes back, stale, what a run or a task wrote
        meanwhile. Editing a field we send Zoho also moves `updated_at` and puts a customer
        that needs attention back in the queue: database triggers do it, whoever edits."""
        loaded = self._loaded()
        if loaded is not None and not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key
                and self.__dict__.get(field.attname) != loaded.get(field.attname)
            ] + ["updated_at"]
        super().save(*args, **kwargs)
        self._read = (self._attnames(), tuple(map(self.__dict__.get, self._attnames())))

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Customer:
        instance = super().from_db(db, field_names, values)
        instance._read = (field_names, values)  # kept as read: compared only when saved
        return instance

    def refresh_from_db(
        self, using: str | None = None, fields: Any = None, from_queryset: Any = None
    ) -> None:
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        names = self._attnames()
        if fields is not None:  # the others keep what the caller changed
            names = [self._meta.get_field(name).attname for name in fields]
        reread = dict(zip(names, map(self.__dict__.get, names), strict=True))
        merged = {**(self._loaded() or {}), **reread}
        self._read = (list(merged), tuple(merged.values()))

    def _loaded(self) -> dict[str, Any] | None:
        """The row's values as last read or written (None: never read)."""
        read = self.__dict__.get("_read")
        return None if read is None else dict(zip(*read, strict=True))

    @classmethod
    def _attnames(cls) -> list[str]:
        return [field.attname for field in cls._meta.concrete_fields]

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def display_name(self) -> str:
        """The name Zoho shows: the company for business accounts, else the person."""
        return (self.company_name or self.full_name).strip()


class SyncTrigger(models.TextChoices):
    COMMAND = "command", "Command"
    SCHEDULE = "schedule", "Schedule"
    ADMIN = "admin", "Admin"
    EDIT = "edit", "A saved edit"


class SyncRunKind(models.TextChoices):
    BACKFILL = "backfill", "Backfill"
    RETRY_FAILED = "retry_failed", "Retry failed"
    SYNC = "sync", "Sync (create and push edits)"
    SINGLE = "single", "Single customer"
    SELECTED = "selected", "Selected customers"


class SyncRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    STOPPED = "stopped", "Stopped early"
    INTERRUPTED = "interrupted", "Interrupted (process died)"


class SyncRun(models.Model):
    """One run (a backfill, a retry or a sync), whoever started it."""

    kind = models.CharField(max_length=20, choices=SyncRunKind.choices)
    trigger = models.CharField(max_length=20, choices=SyncTrigger.choices)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(
        max_length=20, choices=SyncRunStatus.choices, default=SyncRunStatus.RUNNING, db_index=True
    )
    stop_reason = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the running run last showed it was alive: a run silent for longer "
        "than ZOHO_STALE_CLAIM_SECONDS died, and the next run closes its record.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    selected_count = models.PositiveIntegerField(default=0)
    reached_count = models.PositiveIntegerField(
        default=0,
        help_text="Customers of its selection the run took up, each to end with a final "
        "attempt (one another process synced meanwhile drops out of the selection).",
    )
    synced_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    unreached_count = models.PositiveIntegerField(
        default=0,
        help_text="Customers a stopped run left failed before it could make an attempt at them.",
    )
    stop_needs_setup = models.BooleanField(
        default=False,
        help_text="The stop needs a person to change a setting or the organization (exit 2).",
    )
    request_count = models.PositiveIntegerField(default=0, help_text="Requests sent to Zoho.")
    writeback_count = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Rows of the company's database given this run's Zoho ids and statuses; "
        "empty when no write-back is set up.",
    )
    writeback_error = models.TextField(
        blank=True, help_text="Why the write-back failed (the next one catches up)."
    )

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        mode = " (dry run)" if self.dry_run else ""
        return f"{self.get_kind_display()} #{self.pk} by {self.trigger}{mode}"


class AttemptOutcome(models.TextChoices):
    SENDING = "sending", "Sending (outcome not known yet)"
    INTERRUPTED = "interrupted", "Interrupted (its run died)"
    CREATED = "created", "Created in Zoho"
    ADOPTED = "adopted", "Adopted existing Zoho customer"
    UPDATED = "updated", "Updated in Zoho"
    DEACTIVATED = "deactivated", "Marked inactive in Zoho (closed)"
    REACTIVATED = "reactivated", "Marked active in Zoho (reopened)"
    FAILED = "failed", "Failed"
    INVALID = "invalid", "Invalid data"
    RATE_LIMITED = "rate_limited", "Rate limited"
    SKIPPED = "skipped", "Skipped"
    WAITING = "waiting", "Left for a later run (an earlier create may still be settling)"
    DRY_RUN = "dry_run", "Dry run"


class SyncAttempt(models.Model):
    """One attempt at one customer against Zoho: the audit trail."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="attempts")
    customer = models.ForeignKey(
        Customer, null=True, on_delete=models.SET_NULL, related_name="sync_attempts"
    )
    customer_email = models.CharField(max_length=254, help_text="Copied: the audit outlives it.")
    account_number = models.CharField(max_length=32)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=AttemptOutcome.choices, db_index=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    zoho_code = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    zoho_customer_id = models.CharField(max_length=64, blank=True)
    waiting_until = models.DateTimeField(
        null=True, blank=True, help_text="Waiting: when Zoho may be searched for the create."
    )
    final = models.BooleanField(
        "how its customer ended the run",
        default=False,
        help_text="How its customer ended in the run: a run's output and counts are read "
        "from these rows, one per customer it finished.",
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "customer"],
                condition=Q(final=True),
                name="one_final_attempt_per_customer_per_run",
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_number}: {self.outcome}"


class ImportSource(models.TextChoices):
    FILE = "file", "File"
    DATABASE = "database", "The company's database"
    UPLOAD = "upload", "Admin upload"


class ImportStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    REFUSED = "refused", "Refused (unreadable, or an unknown column): nothing imported"
    FAILED = "failed", "Failed part way"
    STOPPED = "stopped", "Stopped part way (Ctrl-C)"


class CustomerImport(models.Model):
    """One import of customers: a file, the company's database, or an upload in the admin."""

    source = models.CharField(max_length=20, choices=ImportSource.choices)
    name = models.CharField(
        max_length=255, help_text="The file's name, or the setting the query came from."
    )
    format = models.CharField(max_length=10, help_text="csv, jsonl or query.")
    trigger = models.CharField(max_length=20, choices=SyncTrigger.choices)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(
        max_length=20, choices=ImportStatus.choices, default=ImportStatus.RUNNING, db_index=True
    )
    problem = models.TextField(blank=True, help_text="Why the import was refused or failed.")
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the running import last wrote a batch: one silent for longer than "
        "ZOHO_STALE_CLAIM_SECONDS died, and the next import closes its record.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    refused_count = models.PositiveIntegerField(default=0)
    sync_queued = models.BooleanField(
        default=False, help_text="One sync task was queued for the customers it changed."
    )
    writeback_count = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Rows of the company's database given our Zoho ids and statuses; empty when "
        "no write-back ran.",
    )
    writeback_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        mode = " (dry run)" if self.dry_run else ""
        return f"Import #{self.pk} of {self.name}{mode}"


class ImportRefusal(models.Model):
    """A row an import refused, and why: its line, the column, the reason."""

    customer_import = models.ForeignKey(
        CustomerImport, on_delete=models.CASCADE, related_name="refusals"
    )
    line = models.PositiveIntegerField(
        help_text="The file's line (the header is line 1), or the query's row (from 1)."
    )
    account_number = models.CharField(max_length=64, blank=True, db_index=True)
    column = models.CharField(max_length=200, blank=True, help_text="As the source names it.")
    reason = models.TextField()

    class Meta:
        ordering = ["line", "id"]

    def __str__(self) -> str:
        return f"line {self.line}, {self.column or 'row'}: {self.reason}"


class ZohoApiState(models.Model):
    """The one row every process shares: access token, any block Zoho imposed, the day's count.

    Kept in the database so that a schedule starting a process every few minutes reuses the
    token (Zoho allows ~10 refreshes per 10 minutes) and a block seen by one process pauses all.
    """

    singleton = models.PositiveSmallIntegerField(primary_key=True, default=1)
    access_token = models.TextField(blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    api_domain = models.CharField(max_length=200, blank=True)
    token_refresh_id = models.CharField(
        max_length=32, blank=True, help_text="The token refresh in progress, or the last one."
    )
    token_refreshing_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A process is asking Zoho for a token until then; others wait for its answer.",
    )
    token_refresh_failure = models.JSONField(
        default=dict,
        blank=True,
        help_text="How that refresh failed (error kind and message, no secret); empty if not.",
    )
    blocked_until = models.DateTimeField(null=True, blank=True)
    block_reason = models.TextField(blank=True)
    block_started_at = models.DateTimeField(
        null=True, blank=True, help_text="When we learnt of that block (the last one)."
    )
    blocked_seconds = models.FloatField(
        default=0,
        help_text="Seconds of the blocks before the last one, each from when we learnt of it "
        "to its end: with the last one's, the metrics' seconds blocked.",
    )
    account_numbers_checked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a run last wrote our account number into the customers Zoho holds "
        "without it: runs that are not a person's try again once per ZOHO_SYNC_EVERY_MINUTES.",
    )
    day_counts = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "Requests sent in each minute of the last 24 hours (key: minutes since 1970 UTC), "
            "for the daily cap."
        ),
    )

    class Meta:
        verbose_name = "Zoho API state"

    def __str__(self) -> str:
        return "Zoho API state"


class ZohoRequestLog(models.Model):
    """One row per request sent to Zoho's API, for the shared per-window budget."""

    sent_at = models.DateTimeField(db_index=True)
    done_at = models.DateTimeField(null=True, blank=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=200)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.method} {self.path} at {in_utc(self.sent_at)}"


class ZohoAnswerCount(models.Model):
    """How many requests to Zoho's API got each answer (HTTP status and Zoho code), ever."""

    http_status = models.PositiveSmallIntegerField(
        help_text="0: no answer came back (a timeout, a dropped connection)."
    )
    zoho_code = models.CharField(
        max_length=16, blank=True, help_text="The answer's `code`; empty when it carried none."
    )
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["http_status", "zoho_code"], name="zoho_answer_count_unique"
            )
        ]

    def __str__(self) -> str:
        return f"HTTP {self.http_status} code {self.zoho_code or '-'}: {self.count}"


class AlertState(models.Model):
    """What the alerts last reported, one row: an alert goes out only when this changes."""

    singleton = models.PositiveSmallIntegerField(primary_key=True, default=1)
    checked_at = models.DateTimeField(null=True, blank=True)
    needs_attention_count = models.PositiveIntegerField(
        default=0,
        help_text="Customers needing attention when that alert went out; 0 while none do.",
    )
    block_until = models.DateTimeField(
        null=True, blank=True, help_text="The end of Zoho's block the last check saw."
    )
    block_seen_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a check first saw that block: it lasts at least from then to its end.",
    )
    block_alerted = models.BooleanField(default=False)
    daily_budget_alerted = models.BooleanField(default=False)
    writeback_failed = models.BooleanField(
        default=False,
        help_text="The last write-back to the company's database failed: the next one compares "
        "every customer, not only its run's.",
    )
    source_refused_count = models.PositiveIntegerField(
        default=0,
        help_text="Rows of the company's database the last import refused, when that alert "
        "went out; 0 while none are.",
    )
    source_import_failed = models.BooleanField(
        default=False, help_text="The last import from the company's database failed."
    )
    backlog_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a check first saw customers waiting for a run (the backlog), since it "
        "was last empty; the completion notice says how long it took.",
    )
    backlog_peak = models.PositiveIntegerField(
        default=0, help_text="The largest backlog a check saw since then."
    )
    undelivered = models.JSONField(
        default=list,
        blank=True,
        help_text="Notifications a service did not take, tried again at the next check (the "
        "service by a digest of its URL, never the URL).",
    )

    class Meta:
        verbose_name = "alert state"

    def __str__(self) -> str:
        return "Alert state"


def silent_longer_than(stale_seconds: float) -> Q:
    """A run's or an import's record that showed no sign of life (its heartbeat, else its
    start) for longer than `stale_seconds`: its process died, or lost the database for good."""
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
