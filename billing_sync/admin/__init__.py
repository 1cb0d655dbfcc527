"""The admin: a window on the customers, their sync and its audit trail, and the few things a
person starts from it.

Owns: the customer admin and its actions (`customers`), Import and Export on the customer list
(`import_and_export`), the read-only audit admins of runs, attempts and imports (`audit`), and how
their lists show a value (`display`). Django's autodiscovery imports this package: importing the
modules here registers every model admin. The site itself, whose index opens on the sync overview
and the health line, is circletel/admin.py (with its config, circletel/apps.py): Django imports it
to make `admin.site`, so it must not import this package.

May import: models, zoho, run, imports, operations.
"""

from billing_sync.admin import audit, customers

__all__ = ["audit", "customers"]
