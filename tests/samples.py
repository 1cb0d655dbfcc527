"""Prometheus text read back as samples, for the tests that scrape /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def samples_of(text: str) -> Samples:
    """Every sample in a scrape's text, by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, None when the scrape did not have it."""
    return samples.get((name, frozenset(labels.items())))


def family(samples: Samples, name: str) -> dict[Labels, float]:
    """Every sample of `name`, by its labels."""
    return {labels: v for (sample, labels), v in samples.items() if sample == name}
