"""The organization's custom fields: which labels exist, and merging a body's entries into a record.

A label is defined when it is in `custom_field_labels` or `number_custom_fields`, or was defined
on the fly earlier; `unknown_custom_field` says what an entry with any other label does.
"""

from __future__ import annotations

from typing import Any

from zoho_emulator.config import EmulatorConfig
from zoho_emulator.errors import invalid_value, unknown_custom_field
from zoho_emulator.records import text_value

FIRST_CUSTOM_FIELD_ID = 6179546000000090001
DIGITS = "0123456789"

CustomField = dict[str, Any]


class CustomFieldRegistry:
    """Org-wide custom field definitions: a label keeps one `customfield_id` across customers."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._labels: dict[str, str] = {}

    def id_for(self, label: str) -> str:
        """Return the id of the field with this label (case-insensitive), defining it if new."""
        key = label.casefold()
        if key not in self._ids:
            field_id = str(FIRST_CUSTOM_FIELD_ID + len(self._ids))
            self._ids[key] = field_id
            self._labels[field_id] = label
        return self._ids[key]

    def label_for(self, field_id: str) -> str | None:
        """Return the label of a known field id, else None."""
        return self._labels.get(field_id)

    def defined_label(self, label: str) -> str | None:
        """Return the label as first defined (matched case-insensitively), else None."""
        field_id = self._ids.get(label.casefold())
        return None if field_id is None else self._labels[field_id]


def merged_custom_fields(
    current: list[CustomField],
    entries: object,
    registry: CustomFieldRegistry,
    config: EmulatorConfig,
) -> list[CustomField]:
    """Return `current` with the body's `custom_fields` entries applied; raise ApiError.

    An entry updates the record's field it names (by customfield_id, index or label), else adds
    a field if its label is defined (or `unknown_custom_field` is "create"); "drop" skips an
    unknown label, "refuse" raises 400 code 120129.
    """
    if not isinstance(entries, list):
        raise invalid_value("custom_fields")
    merged = [dict(field) for field in current]
    for entry in entries:
        if not isinstance(entry, dict):
            raise invalid_value("custom_fields")
        existing = _find_custom_field(merged, entry)
        if existing is not None:
            _set_value(existing, entry.get("value"), config)
            continue
        label = _known_label(_entry_label(entry, registry), registry, config)
        if label is None:
            continue
        field = {
            "index": len(merged) + 1,
            "label": label,
            "value": "",
            "data_type": "text",
            "customfield_id": registry.id_for(label),
        }
        _set_value(field, entry.get("value"), config)
        merged.append(field)
    return merged


def _find_custom_field(fields: list[CustomField], entry: dict[str, Any]) -> CustomField | None:
    # Match the way callers identify a field, most specific first: id, then index, then label.
    field_id, index, label = entry.get("customfield_id"), entry.get("index"), entry.get("label")
    matchers = [
        lambda field: field_id is not None and str(field_id) == field["customfield_id"],
        lambda field: type(index) is int and index == field["index"],
        lambda field: (
            isinstance(label, str) and label.strip().casefold() == field["label"].casefold()
        ),
    ]
    for matches in matchers:
        found = next((field for field in fields if matches(field)), None)
        if found is not None:
            return found
    return None


def _entry_label(entry: dict[str, Any], registry: CustomFieldRegistry) -> str:
    label = entry.get("label")
    if isinstance(label, str) and label.strip():
        return label.strip()
    known = registry.label_for(str(entry.get("customfield_id", "")))
    if known is None:
        raise invalid_value("custom_fields.label")
    return known


def _known_label(label: str, registry: CustomFieldRegistry, config: EmulatorConfig) -> str | None:
    """The label as the organization defined it; for an undefined one, what the mode says."""
    key = label.casefold()
    for defined in (*config.number_custom_fields, *config.custom_field_labels):
        if defined.strip().casefold() == key:
            return defined.strip()
    known = registry.defined_label(label)
    if known is not None or config.unknown_custom_field == "create":
        return known or label
    if config.unknown_custom_field == "refuse":
        raise unknown_custom_field(label)
    return None


def _set_value(field: CustomField, raw: object, config: EmulatorConfig) -> None:
    text = text_value("custom_fields.value", raw)
    numbers = {label.strip().casefold() for label in config.number_custom_fields}
    if field["label"].casefold() not in numbers:
        field["value"] = text
        return
    # A number field keeps only the digits, the way a typed field changes what it is given.
    digits = "".join(char for char in text if char in DIGITS)
    if not digits:
        raise invalid_value(field["label"])
    field["value"] = digits.lstrip("0") or "0"
    field["data_type"] = "number"
