"""The django-q schedules, kept by name: the sync that keeps Zoho in step on its own, and, when
the company's database is a source, the import that brings its new and edited customers."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from billing_sync.imports.source import source_configured

# The django-q schedules `zoho_schedule` keeps, by name (the import only with a source database).
SYNC_SCHEDULE = "zoho-sync"
IMPORT_SCHEDULE = "customers-import"
SCHEDULE_NAMES = (SYNC_SCHEDULE, IMPORT_SCHEDULE)
# Schedules of earlier versions, replaced by the sync: `zoho_schedule` removes them.
RETIRED_SCHEDULES = ("zoho-retry-failed", "zoho-backfill")


@dataclass(frozen=True)
class ScheduleSpec:
    """What one named schedule should be."""

    name: str
    func: str
    minutes: int


def schedule_specs() -> list[ScheduleSpec]:
    """The schedules we keep, with intervals from settings."""
    every = settings.ZOHO_SYNC_EVERY_MINUTES
    specs = [ScheduleSpec(SYNC_SCHEDULE, "billing_sync.tasks.sync_task", every)]
    if source_configured():
        specs.append(ScheduleSpec(IMPORT_SCHEDULE, "billing_sync.tasks.import_task", every))
    return specs


@transaction.atomic
def schedules_ensure() -> list[Schedule]:
    """Create or update each schedule by name; running it twice leaves the same set.

    Schedule.name is not unique in django-q, so extra rows with one of our names are removed,
    and so are the schedules of earlier versions that the sync replaces, and the import's when
    no source database is set any more.
    """
    specs = schedule_specs()
    unused = set(SCHEDULE_NAMES) - {spec.name for spec in specs}
    Schedule.objects.filter(name__in=[*RETIRED_SCHEDULES, *unused]).delete()
    kept = []
    for spec in specs:
        rows = Schedule.objects.select_for_update().filter(name=spec.name).order_by("pk")
        schedule = rows.first() or Schedule(name=spec.name, next_run=timezone.now())
        schedule.func = spec.func
        schedule.schedule_type = Schedule.MINUTES
        schedule.minutes = spec.minutes
        schedule.repeats = -1
        schedule.save()
        rows.exclude(pk=schedule.pk).delete()
        kept.append(schedule)
    return kept


def schedules_list() -> list[Schedule]:
    """Our schedules as they stand, soonest first."""
    return list(Schedule.objects.filter(name__in=SCHEDULE_NAMES).order_by("next_run", "name"))
