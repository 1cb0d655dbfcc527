"""The admin app, with a site whose index opens on the Zoho sync overview."""

from django.contrib.admin.apps import AdminConfig


class BillingSyncAdminConfig(AdminConfig):
    """django.contrib.admin, using BillingSyncAdminSite as the default site."""

    default_site = "billing_sync.admin_site.BillingSyncAdminSite"
