"""The admin app, with a site whose index opens on the Zoho sync overview.

Here, in the project, as Django's documentation places a custom admin site's config: Django
imports this module while it reads INSTALLED_APPS, before any model can be imported.
"""

from django.contrib.admin.apps import AdminConfig


class BillingSyncAdminConfig(AdminConfig):
    """django.contrib.admin, using BillingSyncAdminSite (circletel/admin.py) as the default site."""

    default_site = "circletel.admin.BillingSyncAdminSite"
