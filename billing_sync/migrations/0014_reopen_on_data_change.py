# Editing a field we send Zoho puts a customer that needs attention back in the queue, whoever
# edits (a save, update(), an import, an operator's SQL): the rule lives beside the trigger that
# moves updated_at, not in Customer.save(). A write that sets another status keeps what it set.

from django.db import migrations

DATA_COLUMNS = ("email", "account_number", "first_name", "last_name", "company_name", "phone")
CHANGED = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in DATA_COLUMNS)

SQLITE_TRIGGER = f"""
CREATE TRIGGER customers_reopen_on_data_change
AFTER UPDATE OF {", ".join(DATA_COLUMNS)} ON customers
FOR EACH ROW
WHEN ({CHANGED})
    AND OLD.zoho_sync_status = 'needs_attention' AND NEW.zoho_sync_status = 'needs_attention'
BEGIN
    UPDATE customers SET zoho_sync_status = 'pending' WHERE id = NEW.id;
END;
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS customers_reopen_on_data_change;"

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION customers_touch_on_data_change() RETURNS trigger AS $$
BEGIN
    IF ({new}) IS DISTINCT FROM ({old}) THEN
        IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
            NEW.updated_at := clock_timestamp();
        END IF;
        IF OLD.zoho_sync_status = 'needs_attention'
           AND NEW.zoho_sync_status = 'needs_attention' THEN
            NEW.zoho_sync_status := 'pending';
        END IF;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
"""
# 0007's function, for going back.
POSTGRES_PREVIOUS = """
CREATE OR REPLACE FUNCTION customers_touch_on_data_change() RETURNS trigger AS $$
BEGIN
    IF ({new}) IS DISTINCT FROM ({old})
       AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
"""


def _columns(template: str) -> str:
    return template.format(
        new=", ".join(f"NEW.{c}" for c in DATA_COLUMNS),
        old=", ".join(f"OLD.{c}" for c in DATA_COLUMNS),
    )


def reopen_on_data_change(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER)
    elif vendor == "postgresql":
        schema_editor.execute(_columns(POSTGRES_FUNCTION))
    else:
        raise RuntimeError(f"No trigger for the {vendor} database: add one to this migration")


def back_to_touch_only(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP)
    else:
        schema_editor.execute(_columns(POSTGRES_PREVIOUS))


class Migration(migrations.Migration):
    dependencies = [
        ("billing_sync", "0013_customer_imports"),
    ]

    operations = [migrations.RunPython(reopen_on_data_change, back_to_touch_only)]
