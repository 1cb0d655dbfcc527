"""The database cache where django-q2 clusters record their heartbeat (settings.CACHES).

`migrate` creates it, so every set-up that migrates (the demo, `make run`, `make worker`, a
deployment) has it; `createcachetable` alone would be one more step to remember.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    # Idempotent: a table that exists already is left as it is.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [
        ("billing_sync", "0010_sync_on_save"),
    ]

    operations = [
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop),
    ]
