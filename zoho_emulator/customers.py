"""The organization's customers: create, read, list with filters and pages, update, (de)activate."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zoho_emulator.config import EmulatorConfig
from zoho_emulator.custom_fields import CustomFieldRegistry, merged_custom_fields
from zoho_emulator.errors import (
    active_subscriptions,
    customer_not_found,
    duplicate_name,
    invalid_value,
)
from zoho_emulator.records import (
    Record,
    blank_record,
    list_item,
    merged_record,
    shown_record,
    timestamp,
)

FIRST_CUSTOMER_ID = 6179546000000100001
MAX_PER_PAGE = 200
STATUSES = ("active", "inactive")
STATUS_FILTERS: dict[str, Callable[[Record, EmulatorConfig], bool]] = {
    "Status.All": lambda record, config: True,
    "Status.Active": lambda record, config: record["status"] == "active",
    "Status.Inactive": lambda record, config: record["status"] == "inactive",
    "Status.Gapps": lambda record, config: record["is_gapps_customer"],
    "Status.Crm": lambda record, config: record["is_linked_with_zohocrm"],
    "Status.NonSubscribers": lambda record, config: not has_active_subscription(record, config),
    "Status.PortalEnabled": lambda record, config: record["is_portal_enabled"],
    "Status.PortalDisabled": lambda record, config: not record["is_portal_enabled"],
}
DEFAULT_SORT_COLUMN = "created_time"
DEFAULT_SORT_ORDER = "A"
SORT_COLUMNS = ("created_time", "customer_id", "email", "display_name")
SORT_ORDERS = ("A", "D")


class CustomerStore:
    """Customer records in creation order; every method raises ApiError for a bad request."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        # created_time has one-second resolution; lists sort and lag by the precise time.
        self._created_at: dict[str, float] = {}
        self._seeded: set[str] = set()
        self._issued_ids = 0
        self._fields = CustomFieldRegistry()

    def all(self, config: EmulatorConfig) -> list[Record]:
        """Return copies of every full record, in creation order."""
        return [_shown(record, config) for record in self._records.values()]

    def create(self, body: dict[str, Any], config: EmulatorConfig, now: float) -> Record:
        """Validate and store a new customer; return a copy of its full record."""
        customer_id = str(FIRST_CUSTOMER_ID + self._issued_ids)
        record = self._merged(blank_record(customer_id, now), body, config, creating=True)
        self._check_unique_name(record, config)
        self._issued_ids += 1
        self._records[customer_id] = record
        self._created_at[customer_id] = now
        return _shown(record, config)

    def seed(self, body: dict[str, Any], config: EmulatorConfig, now: float) -> Record:
        """Store a customer as pre-existing data; like create, but `status` may also be given.

        Seeded customers are listed at once, whatever `list_lag_seconds` says.
        """
        status = body.get("status", "active")
        if status not in STATUSES:
            raise invalid_value("status")
        record = self.create(body, config, now)
        self._seeded.add(record["customer_id"])
        self._records[record["customer_id"]]["status"] = status
        record["status"] = status
        return record

    def get(self, customer_id: str, config: EmulatorConfig) -> Record:
        """Return a copy of one full record."""
        return _shown(self._existing(customer_id, config), config)

    def update(
        self, customer_id: str, body: dict[str, Any], config: EmulatorConfig, now: float
    ) -> Record:
        """Apply a partial update; fields absent from the body keep their values."""
        current = self._existing(customer_id, config)
        record = self._merged(current, body, config, creating=False)
        self._check_unique_name(record, config)
        record["updated_time"] = timestamp(now)
        self._records[customer_id] = record
        return _shown(record, config)

    def mark(self, customer_id: str, status: str, config: EmulatorConfig, now: float) -> None:
        """Set a customer's status ("active" or "inactive"); marking it as it is succeeds too.

        A customer with an active subscription cannot be marked inactive.
        """
        record = self._existing(customer_id, config)
        if status == "inactive" and has_active_subscription(record, config):
            raise active_subscriptions()
        record["status"] = status
        record["updated_time"] = timestamp(now)

    def page(
        self, params: Mapping[str, str], config: EmulatorConfig, now: float
    ) -> tuple[list[Record], dict[str, Any]]:
        """Return one page of list items matching the filters, sorted, and its page_context.

        Customers created less than `list_lag_seconds` ago are left out, as by a lagging index.
        """
        page = _positive_int(params, "page", 1)
        per_page = min(_positive_int(params, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
        applied_filter = params.get("filter_by") or "Status.All"
        status_filter = STATUS_FILTERS.get(applied_filter)
        if status_filter is None:
            raise invalid_value("filter_by")
        sort_column, sort_order = _sorting(params, config)
        matches = [
            record
            for record in self._records.values()
            if self._listed(record["customer_id"], config, now)
            and status_filter(record, config)
            and _matches_search(record, params, email_filter=not config.email_filter_ignored)
        ]
        matches.sort(key=self._sort_key(sort_column), reverse=sort_order == "D")
        start = (page - 1) * per_page
        context = {
            "page": page,
            "per_page": per_page,
            "has_more_page": len(matches) > start + per_page,
            "report_name": "Customers",
            "applied_filter": applied_filter,
            "sort_column": sort_column,
            "sort_order": sort_order,
        }
        return [list_item(record) for record in matches[start : start + per_page]], context

    def _merged(
        self, record: Record, body: dict[str, Any], config: EmulatorConfig, *, creating: bool
    ) -> Record:
        merged = merged_record(record, body, creating=creating, vat=not config.vat_reg_no_dropped)
        if "custom_fields" in body:
            merged["custom_fields"] = merged_custom_fields(
                merged["custom_fields"], body["custom_fields"], self._fields, config
            )
        return merged

    def _listed(self, customer_id: str, config: EmulatorConfig, now: float) -> bool:
        if customer_id in self._seeded:
            return True
        return now - self._created_at[customer_id] >= config.list_lag_seconds

    def _sort_key(self, column: str) -> Callable[[Record], tuple[Any, ...]]:
        # Ties go by customer_id, which grows with every create.
        if column == "created_time":
            return lambda record: (
                self._created_at[record["customer_id"]],
                int(record["customer_id"]),
            )
        if column == "customer_id":
            return lambda record: (int(record["customer_id"]),)
        return lambda record: (record[column].casefold(), int(record["customer_id"]))

    def _existing(self, customer_id: str, config: EmulatorConfig) -> Record:
        record = self._records.get(customer_id)
        if record is None:
            raise customer_not_found(config.not_found_style)
        return record

    def _check_unique_name(self, record: Record, config: EmulatorConfig) -> None:
        if not config.display_name_unique:
            return
        name = record["display_name"].casefold()
        for other in self._records.values():
            if (
                other["customer_id"] != record["customer_id"]
                and other["display_name"].casefold() == name
            ):
                raise duplicate_name(record["display_name"])


def has_active_subscription(record: Record, config: EmulatorConfig) -> bool:
    """True if the customer's email is one of `active_subscription_emails` (any case)."""
    emails = {email.strip().casefold() for email in config.active_subscription_emails}
    return record["email"].casefold() in emails


def _shown(record: Record, config: EmulatorConfig) -> Record:
    return shown_record(record, vat=not config.vat_reg_no_dropped)


def _positive_int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_value(name) from None
    if value < 1:
        raise invalid_value(name)
    return value


def _sorting(params: Mapping[str, str], config: EmulatorConfig) -> tuple[str, str]:
    """The (sort_column, sort_order) the list applies: the request's, or the default."""
    if config.sort_ignored:
        return DEFAULT_SORT_COLUMN, DEFAULT_SORT_ORDER
    column = params.get("sort_column") or DEFAULT_SORT_COLUMN
    if column not in SORT_COLUMNS:
        raise invalid_value("sort_column")
    order = params.get("sort_order") or DEFAULT_SORT_ORDER
    if order not in SORT_ORDERS:
        raise invalid_value("sort_order")
    return column, order


def _matches_search(record: Record, params: Mapping[str, str], *, email_filter: bool) -> bool:
    email = params.get("email") if email_filter else None
    if email and record["email"].casefold() != email.strip().casefold():
        return False
    name = params.get("display_name")
    if name and record["display_name"] != name:
        return False
    contains = params.get("display_name_contains")
    if contains and contains.casefold() not in record["display_name"].casefold():
        return False
    text = params.get("search_text")
    if text:
        haystack = (record["display_name"], record["email"], record["company_name"])
        return any(text.casefold() in value.casefold() for value in haystack)
    return True
