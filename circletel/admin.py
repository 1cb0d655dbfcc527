"""The admin site: its index opens on an overview of the Zoho sync.

Here, in the project, as Django's documentation places a custom site (and circletel/apps.py its
config): Django imports this module to make `admin.site`, and a module inside billing_sync/admin/
would import that package, whose admins would then register on a site about to be replaced.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from billing_sync.operations.health import health_report
from billing_sync.operations.overview import sync_overview
from billing_sync.run.estimate import backlog_estimate, finish_text, in_words


class BillingSyncAdminSite(admin.AdminSite):
    """Django's admin with the sync overview and the service's health at the top of the index
    page. Without the navigation sidebar, whose 300 px a laptop's lists need (the index and the
    breadcrumbs lead everywhere it does)."""

    site_header = "CircleTel billing sync"
    site_title = "CircleTel billing sync"
    index_title = "Zoho Billing sync"
    index_template = "admin/billing_sync_index.html"
    enable_nav_sidebar = False

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        backlog, estimate = backlog_estimate()
        context = {
            "sync_overview": sync_overview(),
            "health": health_report(),
            "backlog": {
                "customers": backlog,
                "requests": estimate.requests,
                "finishes": finish_text(estimate),
                "in_words": in_words(estimate),
                "daily": estimate.limited_by == "daily",
            },
            **(extra_context or {}),
        }
        return super().index(request, extra_context=context)
