# The whole record a bill needs (issue 20): the billing address, the VAT number and the account
# status, and what Zoho holds of them. The triggers of 0007 (touch updated_at) and 0014 (reopen a
# customer that needs attention) fire on the fields we send Zoho: their column lists grow with
# the new fields. On SQLite, adding (or, going back, removing) these columns remakes the table,
# which drops its triggers: both are created again after the columns change.

from django.db import migrations, models

PREVIOUS_COLUMNS = ("email", "account_number", "first_name", "last_name", "company_name", "phone")
DATA_COLUMNS = (
    *PREVIOUS_COLUMNS,
    "billing_attention",
    "billing_street",
    "billing_street2",
    "billing_city",
    "billing_state",
    "billing_zip",
    "billing_country",
    "vat_number",
    "account_status",
)

SQLITE_TOUCH = """
CREATE TRIGGER customers_touch_on_data_change
AFTER UPDATE OF {columns} ON customers
FOR EACH ROW
WHEN ({changed}) AND NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE customers SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;
"""
SQLITE_REOPEN = """
CREATE TRIGGER customers_reopen_on_data_change
AFTER UPDATE OF {columns} ON customers
FOR EACH ROW
WHEN ({changed})
    AND OLD.zoho_sync_status = 'needs_attention' AND NEW.zoho_sync_status = 'needs_attention'
BEGIN
    UPDATE customers SET zoho_sync_status = 'pending' WHERE id = NEW.id;
END;
"""
SQLITE_DROPS = (
    "DROP TRIGGER IF EXISTS customers_touch_on_data_change;",
    "DROP TRIGGER IF EXISTS customers_reopen_on_data_change;",
)
# 0014's function, over the columns given.
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


def _triggers(columns, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for drop in SQLITE_DROPS:
            schema_editor.execute(drop)
        for template in (SQLITE_TOUCH, SQLITE_REOPEN):
            schema_editor.execute(
                template.format(
                    columns=", ".join(columns),
                    changed=" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns),
                )
            )
    elif vendor == "postgresql":
        schema_editor.execute(
            POSTGRES_FUNCTION.format(
                new=", ".join(f"NEW.{c}" for c in columns),
                old=", ".join(f"OLD.{c}" for c in columns),
            )
        )
    else:
        raise RuntimeError(f"No trigger for the {vendor} database: add one to this migration")


def triggers_on_the_billing_record(apps, schema_editor):
    _triggers(DATA_COLUMNS, schema_editor)


def triggers_as_before(apps, schema_editor):
    _triggers(PREVIOUS_COLUMNS, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('billing_sync', '0015_run_outcomes_recorded'),
    ]

    operations = [
        # Going back, last: the columns are gone, the triggers are made again without them.
        migrations.RunPython(migrations.RunPython.noop, triggers_as_before),
        migrations.AddField(
            model_name='customer',
            name='account_status',
            field=models.CharField(choices=[('active', 'Active'), ('closed', 'Closed (inactive in Zoho)')], db_index=True, default='active', help_text='Closed: marked inactive in Zoho (never deleted); closed before it reached Zoho: not created.', max_length=10),
        ),
        migrations.AddField(
            model_name='customer',
            name='billing_attention',
            field=models.CharField(blank=True, max_length=100, verbose_name='attention'),
        ),
        migrations.AddField(
            model_name='customer',
            name='billing_city',
            field=models.CharField(blank=True, max_length=100, verbose_name='city'),
        ),
        migrations.AddField(
            model_name='customer',
            name='billing_country',
            field=models.CharField(blank=True, max_length=100, verbose_name='country'),
        ),
        migrations.AddField(
            model_name='customer',
            name='billing_state',
            field=models.CharField(blank=True, max_length=100, verbose_name='state or province'),
        ),
        migrations.AddField(
            model_name='customer',
            name='billing_street',
            field=models.CharField(blank=True, max_length=255, verbose_name='street'),
        ),
        migrations.AddField(
            model_name='customer',
            name='billing_street2',
            field=models.CharField(blank=True, help_text="Sent in Zoho's street, below.", max_length=255, verbose_name='street (line 2)'),
        ),
        migrations.AddField(
            model_name='customer',
            name='billing_zip',
            field=models.CharField(blank=True, max_length=32, verbose_name='postal code'),
        ),
        migrations.AddField(
            model_name='customer',
            name='vat_number',
            field=models.CharField(blank=True, help_text='VAT registration number (Zoho takes 2 to 12 characters); blank is not sent.', max_length=32, verbose_name='VAT number'),
        ),
        migrations.AddField(
            model_name='customer',
            name='zoho_inactive',
            field=models.BooleanField(default=False, help_text='Zoho holds this customer as inactive: we marked it so, or found it so.'),
        ),
        migrations.AddField(
            model_name='customer',
            name='zoho_vat_number_missing',
            field=models.BooleanField(default=False, help_text="Zoho's answer did not carry our VAT number back (an edition without VAT?): the next sync sends it again."),
        ),
        migrations.AlterField(
            model_name='syncattempt',
            name='outcome',
            field=models.CharField(choices=[('sending', 'Sending (outcome not known yet)'), ('interrupted', 'Interrupted (its run died)'), ('created', 'Created in Zoho'), ('adopted', 'Adopted existing Zoho customer'), ('updated', 'Updated in Zoho'), ('deactivated', 'Marked inactive in Zoho (closed)'), ('reactivated', 'Marked active in Zoho (reopened)'), ('failed', 'Failed'), ('invalid', 'Invalid data'), ('rate_limited', 'Rate limited'), ('skipped', 'Skipped'), ('waiting', 'Left for a later run (an earlier create may still be settling)'), ('dry_run', 'Dry run')], db_index=True, max_length=20),
        ),
        migrations.RunPython(triggers_on_the_billing_record, triggers_as_before),
    ]
