# Truth under every fault (issue 27): one final attempt per customer per run, held by the
# database; no attempt left "sending" in a run that has ended; a run's and an import's heartbeat,
# so the next one closes the record of one that died; an import stopped by Ctrl-C. Records
# written before are brought in line first: a second final attempt of a customer in one run
# (the older ones) is no longer final, an attempt left "sending" by an ended run is closed, and
# an ended run took up the customers it has final attempts for.

from django.db import migrations, models
from django.db.models import Count, Max

CUT_OFF = "interrupted: its outcome was never written (its run was cut off mid-attempt)"


def bring_records_in_line(apps, schema_editor):
    SyncAttempt = apps.get_model("billing_sync", "SyncAttempt")
    SyncRun = apps.get_model("billing_sync", "SyncRun")
    doubled = (
        SyncAttempt.objects.filter(final=True, customer__isnull=False)
        .values("run", "customer")
        .annotate(n=Count("pk"), last=Max("pk"))
        .filter(n__gt=1)
    )
    for pair in doubled:
        SyncAttempt.objects.filter(
            run=pair["run"], customer=pair["customer"], final=True, pk__lt=pair["last"]
        ).update(final=False)
    SyncAttempt.objects.filter(outcome="sending").exclude(run__status="running").update(
        outcome="interrupted", error_message=CUT_OFF
    )
    finals = SyncAttempt.objects.filter(final=True).values("run").annotate(n=Count("pk"))
    for row in finals:
        SyncRun.objects.filter(pk=row["run"]).update(reached_count=row["n"])


class Migration(migrations.Migration):
    dependencies = [
        ("billing_sync", "0016_billing_record"),
    ]

    operations = [
        migrations.AddField(
            model_name="zohoapistate",
            name="account_numbers_checked_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When a run last wrote our account number into the customers Zoho holds without it: runs that are not a person's try again once per ZOHO_SYNC_EVERY_MINUTES.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="customerimport",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the running import last wrote a batch: one silent for longer than ZOHO_STALE_CLAIM_SECONDS died, and the next import closes its record.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the running run last showed it was alive: a run silent for longer than ZOHO_STALE_CLAIM_SECONDS died, and the next run closes its record.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="syncrun",
            name="reached_count",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Customers of its selection the run took up, each to end with a final attempt (one another process synced meanwhile drops out of the selection).",
            ),
        ),
        migrations.AlterField(
            model_name="customerimport",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "Running"),
                    ("completed", "Completed"),
                    ("refused", "Refused (unreadable, or an unknown column): nothing imported"),
                    ("failed", "Failed part way"),
                    ("stopped", "Stopped part way (Ctrl-C)"),
                ],
                db_index=True,
                default="running",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="syncrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "Running"),
                    ("completed", "Completed"),
                    ("stopped", "Stopped early"),
                    ("interrupted", "Interrupted (process died)"),
                ],
                db_index=True,
                default="running",
                max_length=20,
            ),
        ),
        migrations.RunPython(bring_records_in_line, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="syncattempt",
            constraint=models.UniqueConstraint(
                condition=models.Q(("final", True)),
                fields=("run", "customer"),
                name="one_final_attempt_per_customer_per_run",
            ),
        ),
    ]
