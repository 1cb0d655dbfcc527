"""Import and export on the admin's customer list, with django-import-export's pages.

The library shows the upload form, the preview and the confirm step, and writes the export; the
rows themselves go through our import service (imports/customer_import.py), the command's own
path: the same columns, checks, refusals and counts, one sync task, a CustomerImport record. The
preview is that service's dry run; confirming runs it for real. Refused rows are shown with
their line, column and reason, and never stop the other rows from being imported.
"""

from __future__ import annotations

import io
from typing import Any

import tablib
from django.contrib import messages
from django.forms import Form
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV
from import_export.forms import ExportForm
from import_export.resources import ModelResource
from import_export.results import Error, Result, RowResult

from billing_sync.imports.customer_import import (
    ImportObserver,
    ImportOptions,
    RowAction,
    RowOutcome,
    customers_import_upload,
    import_refused,
    import_started,
    import_summary,
)
from billing_sync.imports.files import RowSource, SourceRow, UnreadableFile, text_rows
from billing_sync.imports.rows import IMPORT_FIELDS
from billing_sync.models import Customer, CustomerImport, ImportRefusal, ImportSource, SyncTrigger

# What an export holds: the key, every other field an import reads, then where the customer
# stands in Zoho (an import skips those two).
EXPORT_FIELDS = (
    "account_number",
    *(name for name in IMPORT_FIELDS if name != "account_number"),
    "zoho_billing_customer_id",
    "zoho_sync_status",
)
# The preview lists this many rows of each kind (the counts cover all of them).
PREVIEW_ROWS = 500
# The message after an import names this many refused rows (the import's page has them all).
MESSAGE_REFUSALS = 10


class CustomerCSV(CSV):
    """CSV read by our reader: a header row, `,` `;` or tab, the lines a spreadsheet shows."""

    def create_dataset(self, in_stream: str | bytes, **kwargs: Any) -> tablib.Dataset:
        if isinstance(in_stream, bytes):
            in_stream = in_stream.decode("utf-8-sig")
        rows = text_rows(io.StringIO(in_stream), name="upload", format="csv")
        dataset = tablib.Dataset(headers=rows.header)
        dataset.source_rows = list(rows.rows)
        for row in dataset.source_rows:
            dataset.append([row.cells.get(column, "") for column in rows.header])
        return dataset


class PreviewRows(ImportObserver):
    """Keeps the first rows of each kind an import wrote, for the preview page."""

    def __init__(self) -> None:
        self.changes: list[RowOutcome] = []
        self.refused: list[RowOutcome] = []

    def rows_written(self, outcomes: list[RowOutcome]) -> None:
        for outcome in outcomes:
            kept = self.refused if outcome.action == RowAction.REFUSED else self.changes
            if len(kept) < PREVIEW_ROWS:
                kept.append(outcome)


class UploadResult(Result):
    """What the library's pages read of an import: our record, counts and the rows kept."""

    def __init__(self, record: CustomerImport, rows: PreviewRows) -> None:
        super().__init__()
        self.customer_import = record
        self.changes = rows.changes
        self.refused = rows.refused
        self.truncated = record.row_count > len(self.changes) + len(self.refused)
        self.totals[RowResult.IMPORT_TYPE_NEW] = record.created_count
        self.totals[RowResult.IMPORT_TYPE_UPDATE] = record.updated_count
        self.totals[RowResult.IMPORT_TYPE_SKIP] = record.unchanged_count
        if record.problem:
            self.append_base_error(Error(UnreadableFile(record.problem)))


class CustomerResource(ModelResource):
    """The customer list's columns, for export; an import hands its rows to our service."""

    class Meta:
        model = Customer
        fields = EXPORT_FIELDS
        export_order = EXPORT_FIELDS

    def import_data(
        self, dataset: tablib.Dataset, dry_run: bool = False, *args: Any, **kwargs: Any
    ) -> UploadResult:
        """Import (or with `dry_run`, preview) the upload through the import service."""
        rows = getattr(dataset, "source_rows", None)
        if rows is None:  # a dataset some other way: the header is line 1
            rows = [
                SourceRow(number, dict(zip(dataset.headers, values, strict=True)))
                for number, values in enumerate(dataset, 2)
            ]
        source = RowSource(
            ImportSource.UPLOAD,
            kwargs.get("file_name") or "upload",
            "csv",
            list(dataset.headers or []),
            rows,
            len(rows),
        )
        kept = PreviewRows()
        record = customers_import_upload(
            rows=source,
            options=ImportOptions(trigger=SyncTrigger.ADMIN, dry_run=dry_run),
            observer=kept,
        )
        return UploadResult(record, kept)


class CustomerImportExport(ImportExportMixin):
    """Import and Export buttons on the customer list (CSV), through our import service."""

    resource_classes = [CustomerResource]
    import_formats = [CustomerCSV]
    export_formats = [CSV]
    export_form_class = ExportForm
    import_template_name = "admin/billing_sync/customer/import.html"
    # The CustomerImport record (and its refusals) is the audit of an import.
    skip_admin_log = True

    def has_import_permission(self, request: HttpRequest) -> bool:
        """An import creates customers and changes them: it needs the right to do both."""
        return self.has_add_permission(request) and self.has_change_permission(request)

    def add_success_message(self, result: UploadResult, request: HttpRequest) -> None:
        record = result.customer_import
        link = reverse("admin:billing_sync_customerimport_change", args=[record.pk])
        messages.success(
            request,
            format_html(
                '{} (<a href="{}">the import</a>)', import_summary(record).capitalize(), link
            ),
        )
        refusals = ImportRefusal.objects.filter(customer_import=record)
        if refusals.exists():
            named = "; ".join(str(refusal) for refusal in refusals[:MESSAGE_REFUSALS])
            more = (
                f" and {record.refused_count - MESSAGE_REFUSALS} more"
                if (record.refused_count > MESSAGE_REFUSALS)
                else ""
            )
            messages.warning(request, f"Refused, not imported: {named}{more}.")

    def add_data_read_fail_error_to_form(self, form: Form, e: Exception) -> None:
        """A file we cannot read is named as such, and recorded like the command's."""
        if isinstance(e, UnicodeDecodeError):
            e = UnreadableFile(
                f'not UTF-8 text (byte 0x{e.object[e.start]:02x}): save it as "CSV UTF-8"'
            )
        if not isinstance(e, UnreadableFile):
            super().add_data_read_fail_error_to_form(form, e)
            return
        upload = form.cleaned_data.get("import_file")
        name = getattr(upload, "name", None) or "upload"
        options = ImportOptions(trigger=SyncTrigger.ADMIN, dry_run=True)
        import_refused(import_started(ImportSource.UPLOAD, name, "csv", options), str(e))
        form.add_error("import_file", f"Nothing imported: {e}")
