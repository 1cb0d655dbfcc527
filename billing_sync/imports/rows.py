"""The rules an imported row must pass: which columns an import takes, how a cell becomes a
field's value, and which problems refuse a row. Files, the company's database and the admin's
upload all go through these, and the data rules are the sync's own (customer_data.py)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from billing_sync.customer_data import MAX_LENGTHS, FieldProblem
from billing_sync.models import (
    SYNC_COLUMNS,
    ZOHO_DATA_FIELDS,
    AccountStatus,
    AccountType,
    Customer,
)

# The fields an import sets: those we send Zoho, the account type, and a new customer's
# creation time (runs take customers oldest first).
IMPORT_FIELDS = (*ZOHO_DATA_FIELDS, "account_type", "created_at")
# Digits a spreadsheet turned into a number in scientific notation (4.12E+09): lost for good.
SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
# Fields whose digits a spreadsheet mangles when it takes them for numbers.
DIGIT_FIELDS = ("account_number", "phone", "vat_number")
# How a reader names a column whose header cell is blank (unnamed_column).
UNNAMED = re.compile(r"\(column \d+, no header\)")
# Fields that take one of a few words (any case), and what each is called in a refusal.
CHOICE_FIELDS = {
    "account_type": (AccountType.values, "an account type"),
    "account_status": (AccountStatus.values, "an account status"),
}
# The display name is made of these: a problem with "name" is theirs.
NAME_FIELDS = ("first_name", "last_name", "company_name")


class ColumnError(Exception):
    """The columns cannot be imported as they are: nothing is."""


@dataclass(frozen=True)
class Columns:
    """How the source's columns map to our fields."""

    fields: dict[str, str]  # source column -> our field, in the source's order
    ignored: tuple[str, ...] = ()  # skipped on purpose (--ignore-column)
    written_by_sync: tuple[str, ...] = ()  # ours to write, never imported (an export has them)
    unnamed: tuple[str, ...] = ()  # columns with a blank header: their cells must be blank

    def column_of(self, field: str) -> str:
        """The source's name for `field` (the field's own name when the source lacks it)."""
        for column, name in self.fields.items():
            if name == field:
                return column
        return field


def unnamed_column(position: int) -> str:
    """The name a reader gives a column whose header cell is blank (a spreadsheet's stray
    column): its cells must be blank too."""
    return f"(column {position}, no header)"


def _key(name: str) -> str:
    return name.strip().casefold()


def columns_for(
    header: Sequence[str], *, renames: Mapping[str, str] | None = None, ignore: Iterable[str] = ()
) -> Columns:
    """Map the source's header to our fields: by name, regardless of case and surrounding
    spaces, after `renames` (source column -> field). Raises ColumnError naming every column
    it cannot place, before anything is imported."""
    renames = dict(renames or {})
    ignore = list(ignore)
    problems = _option_problems(header, renames, ignore)
    repeated = Counter(_key(name) for name in header if _key(name) and not UNNAMED.fullmatch(name))
    problems += [f"column {name!r} appears {n} times" for name, n in repeated.items() if n > 1]
    columns, unknown = _placed(header, renames, ignore)
    if unknown:
        problems.append(
            f"unknown column(s) {', '.join(map(repr, unknown))}: the columns are our field names "
            f'({", ".join(IMPORT_FIELDS)}); rename one with --map "COLUMN=field" or skip it '
            "with --ignore-column COLUMN"
        )
    taken: dict[str, str] = {}
    for column, field in columns.fields.items():
        if field in taken:
            problems.append(f"columns {taken[field]!r} and {column!r} are both {field}")
        taken.setdefault(field, column)
    if "account_number" not in taken and not problems:
        problems.append(
            "no account_number column: customers are matched by it (map yours with "
            '--map "Account No=account_number")'
        )
    if problems:
        raise ColumnError("; ".join(problems))
    return columns


def _option_problems(
    header: Sequence[str], renames: Mapping[str, str], ignore: Iterable[str]
) -> list[str]:
    """--map and --ignore-column options that name no column of the source, or no field."""
    known = {_key(name) for name in header}
    problems = [
        f"--map {source!r}: the source has no such column"
        for source in renames
        if _key(source) not in known
    ]
    problems += [
        f"--map {source!r} to {field!r}: not a field an import sets ({', '.join(IMPORT_FIELDS)})"
        for source, field in renames.items()
        if _key(field) not in IMPORT_FIELDS
    ]
    problems += [
        f"--ignore-column {name!r}: the source has no such column"
        for name in ignore
        if _key(name) not in known
    ]
    return problems


def _placed(
    header: Sequence[str], renames: Mapping[str, str], ignore: Iterable[str]
) -> tuple[Columns, list[str]]:
    """Each column placed: a field, skipped on purpose, the sync's own, unnamed; the unknown."""
    renamed = {_key(source): _key(field) for source, field in renames.items()}
    skipped = {_key(name) for name in ignore}
    fields: dict[str, str] = {}
    ignored, written_by_sync, unnamed, unknown = [], [], [], []
    for column in header:
        key = _key(column)
        field = renamed.get(key, key)
        if not key or UNNAMED.fullmatch(column):
            unnamed.append(column)
        elif key in skipped:
            ignored.append(column)
        elif field in IMPORT_FIELDS:
            fields[column] = field
        elif field in SYNC_COLUMNS:
            written_by_sync.append(column)
        else:
            unknown.append(column)
    columns = Columns(fields, tuple(ignored), tuple(written_by_sync), tuple(unnamed))
    return columns, unknown


@dataclass(frozen=True)
class ParsedRow:
    """A row's values by field (only the fields its source carries), or why it is refused."""

    values: dict[str, Any]
    problems: tuple[FieldProblem, ...] = ()

    @property
    def account_number(self) -> str:
        return self.values.get("account_number", "")


def parse_cells(cells: Mapping[str, Any], columns: Columns) -> ParsedRow:
    """The row's cells (by source column) as our fields' values, each checked on its own."""
    values: dict[str, Any] = {}
    problems = [
        FieldProblem(column, "has a value but no header: name the column or empty it")
        for column in columns.unnamed
        if _has_value(cells.get(column))
    ]
    for column, field in columns.fields.items():
        if column not in cells:
            continue  # JSON Lines: an absent key leaves the field as it is
        value, problem = _parse(field, cells[column])
        if problem:
            problems.append(FieldProblem(field, problem))
        else:
            values[field] = value
    return ParsedRow(values, tuple(problems))


def _has_value(raw: Any) -> bool:
    return raw is not None and str(raw).strip() != ""


def _parse(field: str, raw: Any) -> tuple[Any, str]:
    """(value, "") or (None, why it cannot be that field's value)."""
    if field == "created_at":
        return _moment(raw)
    text, problem = _text(raw)
    if problem:
        return None, problem
    if "\x00" in text:
        return None, "contains a NUL byte"
    if field in CHOICE_FIELDS:
        return _choice(text, *CHOICE_FIELDS[field])
    if field in DIGIT_FIELDS and SCIENTIFIC.fullmatch(text):
        return None, (
            f"{text!r} looks like a number a spreadsheet rewrote in scientific notation: its "
            "digits are lost; format the column as text and export it again"
        )
    limit = Customer._meta.get_field(field).max_length
    if field not in MAX_LENGTHS and limit and len(text) > limit:
        return None, f"{len(text)} characters, at most {limit} fit"
    return text, ""


def _text(raw: Any) -> tuple[str, str]:
    """A cell as text: blank and null are empty; whole numbers are their digits."""
    if raw is None:
        return "", ""
    if isinstance(raw, str):
        return raw.strip(), ""
    if isinstance(raw, bool):
        return "", f"is {str(raw).lower()}, not text"
    if isinstance(raw, int) or (isinstance(raw, Decimal) and raw == raw.to_integral_value()):
        return str(int(raw)), ""
    return "", f"{raw!r} is a {type(raw).__name__}, not text: give it as text"


def _choice(text: str, allowed: list[str], what: str) -> tuple[str | None, str]:
    value = text.lower()
    if value in allowed:
        return value, ""
    shown = "is blank" if not text else f"{text!r} is not {what}"
    return None, f"{shown}: use one of {', '.join(allowed)}"


def _moment(raw: Any) -> tuple[datetime | None, str]:
    """A creation time: blank is none (the customer is created now); a date is its midnight; a
    time without an offset is in the project's time zone."""
    value: Any = raw
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None, ""
        try:
            value = parse_datetime(text) or parse_date(text)
        except ValueError:
            value = None
    if raw is None:
        return None, ""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    if not isinstance(value, datetime):
        return None, (
            f"{raw!r} is not a date or time: use e.g. 2025-11-01, 2025-11-01 08:00 or "
            "2025-11-01T08:00:00+02:00"
        )
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value, ""


def problem_column(problem: FieldProblem, columns: Columns) -> str:
    """The source's column(s) a problem is about, as the source names them."""
    if problem.field == "name":
        named = [columns.column_of(f) for f in NAME_FIELDS if f in columns.fields.values()]
        return ", ".join(named or NAME_FIELDS)
    if problem.field in IMPORT_FIELDS:
        return columns.column_of(problem.field)
    return problem.field
