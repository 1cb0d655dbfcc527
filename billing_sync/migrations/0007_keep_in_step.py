# Keeping Zoho in step with local edits: what Zoho last accepted, and a trigger that moves
# updated_at whenever a field we send changes, whoever changes it (the ORM's update(), raw SQL).

from django.db import migrations, models
from django.db.models import F

DATA_COLUMNS = ("email", "account_number", "first_name", "last_name", "company_name", "phone")

SQLITE_TRIGGER = """
CREATE TRIGGER customers_touch_on_data_change
AFTER UPDATE OF {columns} ON customers
FOR EACH ROW
WHEN ({changed}) AND NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE customers SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;
""".format(
    columns=", ".join(DATA_COLUMNS),
    changed=" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in DATA_COLUMNS),
)
SQLITE_DROP = "DROP TRIGGER IF EXISTS customers_touch_on_data_change;"

POSTGRES_TRIGGER = """
CREATE OR REPLACE FUNCTION customers_touch_on_data_change() RETURNS trigger AS $$
BEGIN
    IF ({new}) IS DISTINCT FROM ({old})
       AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER customers_touch_on_data_change BEFORE UPDATE ON customers
FOR EACH ROW EXECUTE FUNCTION customers_touch_on_data_change();
""".format(
    new=", ".join(f"NEW.{c}" for c in DATA_COLUMNS),
    old=", ".join(f"OLD.{c}" for c in DATA_COLUMNS),
)
POSTGRES_DROP = """
DROP TRIGGER IF EXISTS customers_touch_on_data_change ON customers;
DROP FUNCTION IF EXISTS customers_touch_on_data_change();
"""


def create_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER)
    elif vendor == "postgresql":
        schema_editor.execute(POSTGRES_TRIGGER)
    else:
        raise RuntimeError(f"No trigger for the {vendor} database: add one to this migration")


def drop_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    schema_editor.execute(SQLITE_DROP if vendor == "sqlite" else POSTGRES_DROP)


def synced_customers_are_in_step(apps, schema_editor):
    """Customers synced before this migration are taken to be in step with Zoho as they are."""
    Customer = apps.get_model("billing_sync", "Customer")
    Customer.objects.filter(zoho_billing_customer_id__isnull=False).update(
        zoho_synced_data_at=F("updated_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("billing_sync", "0006_account_number_missing"),
    ]

    operations = [
        migrations.AddField(
            model_name="customer",
            name="zoho_synced_data_at",
            field=models.DateTimeField(
                blank=True,
                help_text="The updated_at of the row whose data Zoho last accepted: a later "
                "updated_at means local changes to push (a database trigger moves updated_at on "
                "any change of the fields we send, whoever makes it).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="customer",
            name="zoho_synced_hash",
            field=models.CharField(
                blank=True,
                help_text="Hash of the fields we own, as Zoho last accepted them: a save that "
                "changes none of them costs no request.",
                max_length=64,
            ),
        ),
        migrations.RunPython(synced_customers_are_in_step, migrations.RunPython.noop),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
