"""The django-q schedule that keeps Zoho in step on its own (the sync service), kept by name."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from billing_sync.selectors import RETIRED_SCHEDULES, SCHEDULE_NAMES, SYNC_SCHEDULE


@dataclass(frozen=True)
class ScheduleSpec:
    """What one named schedule should be."""

    name: str
    func: str
    minutes: int


def schedule_specs() -> list[ScheduleSpec]:
    """The schedules we keep, with intervals from settings."""
    return [
        ScheduleSpec(
            SYNC_SCHEDULE, "billing_sync.tasks.sync_task", settings.ZOHO_SYNC_EVERY_MINUTES
        )
    ]


@transaction.atomic
def schedules_ensure() -> list[Schedule]:
    """Create or update each schedule by name; running it twice leaves the same set.

    Schedule.name is not unique in django-q, so extra rows with one of our names are removed,
    and so are the schedules of earlier versions that the sync replaces.
    """
    Schedule.objects.filter(name__in=RETIRED_SCHEDULES).delete()
    kept = []
    for spec in schedule_specs():
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
