"""Every model lives in the default database; the `source` entry (the company's own customer
database) is read and written with SQL of our own only, and never migrated."""

from __future__ import annotations

from typing import Any

from django.db.models import Model


class DefaultDatabaseOnly:
    """Routes every model, and every migration, to `default`."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        return "default"

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return "default"

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "default"
