"""Which customers a run works on, read in a fixed order a chunk at a time.

The order is (created_at, pk): oldest first, as the runbook did. The selection's last key is
fixed when the run starts, so customers added later wait for the next run; the selection is
asked again for every chunk, so customers another process took meanwhile drop out. Memory stays
flat however many customers a run has.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.db.models import Q, QuerySet

from billing_sync.models import Customer
from billing_sync.services.database import DatabaseSteps

# Customers read from the database at a time.
CHUNK_SIZE = 200


@dataclass(frozen=True)
class RunSelection:
    """A run's customers, read a chunk at a time in (created_at, pk) order up to a last key.

    The last key is fixed when the run starts, so customers added later wait for the next run;
    the selection is asked again for every chunk, so customers another process took meanwhile
    drop out.
    """

    queryset: QuerySet[Customer]
    count: int
    last_key: tuple[datetime, int] | None

    @classmethod
    def take(cls, queryset: QuerySet[Customer], limit: int | None) -> RunSelection:
        """The selection as it stands now, limited to its first `limit` customers."""
        count = queryset.count()
        if limit is not None:
            count = min(count, limit)
        keys = queryset.values_list("created_at", "pk")
        last = None
        if count and count == limit:
            last = keys.order_by("created_at", "pk")[limit - 1 : limit].first()
        if count and last is None:  # no limit, or another process took some since the count
            last = keys.order_by("-created_at", "-pk").first()
        return cls(queryset=queryset, count=count, last_key=last)

    def chunks(self, steps: DatabaseSteps | None = None) -> Iterator[list[Customer]]:
        """The customers in order, CHUNK_SIZE at a time (never the whole selection in memory);
        each chunk read as one of `steps` (a lost database waited for) when given."""
        after: Customer | None = None
        while True:
            read = partial(self.chunk_after, after)
            chunk = read() if steps is None else steps.take(read)
            if not chunk:
                return
            yield chunk
            after = chunk[-1]

    def chunk_after(self, after: Customer | None) -> list[Customer]:
        """The next CHUNK_SIZE customers after `after` (None: from the first); empty at the end.
        One query, so a step that fails may be taken again."""
        if self.last_key is None:
            return []
        queryset = self.queryset.filter(_key_at_most(self.last_key)).order_by("created_at", "pk")
        if after is not None:
            queryset = queryset.filter(_key_after((after.created_at, after.pk)))
        return list(queryset[:CHUNK_SIZE])

    def customers(self, steps: DatabaseSteps | None = None) -> Iterator[Customer]:
        """The customers one by one, read lazily (through `steps` when given)."""
        for chunk in self.chunks(steps):
            yield from chunk

    def rest(self, after: Customer) -> QuerySet[Customer]:
        """The customers after `after`, up to the last key."""
        if self.last_key is None:
            return self.queryset.none()
        key = (after.created_at, after.pk)
        return self.queryset.filter(_key_after(key), _key_at_most(self.last_key))


def _key_after(key: tuple[datetime, int]) -> Q:
    created_at, pk = key
    return Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(pk__gt=pk))


def _key_at_most(key: tuple[datetime, int]) -> Q:
    created_at, pk = key
    return Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(pk__lte=pk))
