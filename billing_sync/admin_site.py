"""The admin site: its index opens on an overview of the Zoho sync."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from billing_sync.selectors import sync_overview


class BillingSyncAdminSite(admin.AdminSite):
    """Django's admin with the sync overview at the top of the index page."""

    site_header = "CircleTel billing sync"
    site_title = "CircleTel billing sync"
    index_title = "Zoho Billing sync"
    index_template = "admin/billing_sync_index.html"

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {"sync_overview": sync_overview(), **(extra_context or {})}
        return super().index(request, extra_context=context)
