"""Reading customers from files, a row at a time: CSV as spreadsheets write it (a header row;
UTF-8 with or without a BOM; CRLF or LF; comma, semicolon or tab) and JSON Lines.

A file is read twice. First whole, to find what must stop an import before anything is written
(not UTF-8, not CSV, a column no row may bring) and to count its rows for the progress bar; then
row by row for the import itself, so a file of any size takes the same memory. Standard input is
spooled to a temporary file first, so that it can be read twice too.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from billing_sync.imports.rows import unnamed_column
from billing_sync.models import ImportSource

FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# What separates a CSV file's cells: the one its header uses most (Excel writes `;` where the
# decimal point is a comma).
DELIMITERS = ",;\t"
STDIN = "-"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class UnreadableFile(Exception):
    """The file cannot be imported at all: nothing is."""


@dataclass(frozen=True)
class SourceRow:
    """One row as the source holds it: its cells by column name, and its line (a file's line,
    the header being line 1; a JSON Lines file's line from 1; a query's row from 1)."""

    line: int
    cells: dict[str, Any]
    problem: str = ""  # its shape is wrong (cells missing, not a JSON object): refused whole


@dataclass
class RowSource:
    """Rows to import, their columns, and where they come from."""

    source: ImportSource
    name: str
    format: str
    header: list[str]
    rows: Iterable[SourceRow] = field(repr=False)
    total: int | None = None  # rows, when known before reading them


def file_format(path: str, given: str | None) -> str:
    """The format asked for, else the one the file's extension names (standard input: CSV)."""
    if given:
        return given
    if path == STDIN:
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise UnreadableFile(
            f"{path}: cannot tell its format from the extension {suffix or '(none)'!r}: give "
            "--format csv or --format jsonl"
        )
    return EXTENSIONS[suffix]


@contextlib.contextmanager
def open_file(path: str, *, format: str | None = None) -> Iterator[RowSource]:
    """The rows of the file at `path` (`-`: standard input). Raises UnreadableFile."""
    fmt = file_format(path, format)
    name = "standard input" if path == STDIN else path
    with _seekable(path) as binary:
        _check_utf8(binary, name)
        binary.seek(0)
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        yield text_rows(text, name=name, format=fmt)


def text_rows(text: IO[str], *, name: str, format: str) -> RowSource:
    """The rows of a text stream that can be read twice (it is rewound)."""
    if format == "csv":
        header, total, delimiter = _scan_csv(text, name)
        text.seek(0)
        rows: Iterable[SourceRow] = _csv_rows(text, len(header), delimiter)
    else:
        header, total = _scan_jsonl(text)
        text.seek(0)
        rows = _jsonl_rows(text)
    return RowSource(ImportSource.FILE, name, format, header, rows, total)


@contextlib.contextmanager
def _seekable(path: str) -> Iterator[IO[bytes]]:
    if path == STDIN:
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.seek(0)
            yield spool
        return
    try:
        binary = open(path, "rb")  # noqa: SIM115 - closed below, after the caller's reading
    except OSError as exc:
        raise UnreadableFile(f"{path}: {exc.strerror or exc}") from None
    with binary:
        yield binary


def _check_utf8(binary: IO[bytes], name: str) -> None:
    """Refuse a file that is not UTF-8, naming the first line that is not."""
    if binary.read(2) in UTF16_BOMS:
        raise UnreadableFile(
            f'{name} is UTF-16 text (Excel\'s "Unicode Text"): save it as "CSV UTF-8"'
        )
    binary.seek(0)
    for number, raw in enumerate(binary, 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableFile(
                f"{name}, line {number}: not UTF-8 text (byte 0x{raw[exc.start]:02x}): save it "
                'as "CSV UTF-8" (Excel) or with the UTF-8 encoding'
            ) from None


def _delimiter(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in DELIMITERS}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _scan_csv(text: IO[str], name: str) -> tuple[list[str], int, str]:
    """The header, the number of rows (blank ones left out) and the delimiter."""
    delimiter = _delimiter(text.readline())
    text.seek(0)
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise UnreadableFile(f"{name} is empty: it needs a header row of column names")
        header = _named(header)
        total = sum(1 for record in reader if _has_cells(record))
    except csv.Error as exc:
        raise UnreadableFile(f"{name}, line {reader.line_num}: not valid CSV ({exc})") from None
    return header, total, delimiter


def _named(header: list[str]) -> list[str]:
    """The header, a blank cell named by its position (a spreadsheet's stray column)."""
    return [
        name if name.strip() else unnamed_column(position)
        for position, name in enumerate(header, 1)
    ]


def _has_cells(record: list[str]) -> bool:
    """False for a blank line, or one of delimiters only (a spreadsheet's empty row)."""
    return any(cell.strip() for cell in record)


def _csv_rows(text: IO[str], width: int, delimiter: str) -> Iterator[SourceRow]:
    reader = csv.reader(text, delimiter=delimiter)
    header = _named(next(reader))
    next_line = reader.line_num + 1
    for record in reader:
        line, next_line = next_line, reader.line_num + 1
        if not _has_cells(record):
            continue
        if len(record) > width and not _has_cells(record[width:]):
            record = record[:width]  # blank cells past the last column
        if len(record) != width:
            yield SourceRow(line, {}, f"has {len(record)} cells, the header has {width} columns")
            continue
        yield SourceRow(line, dict(zip(header, record, strict=True)))


def _scan_jsonl(text: IO[str]) -> tuple[list[str], int]:
    """Every key any line has (the columns), in the order they first appear; the rows."""
    keys: dict[str, None] = {}
    total = 0
    for raw in text:
        if not raw.strip():
            continue
        total += 1
        with contextlib.suppress(ValueError):
            row = json.loads(raw)
            if isinstance(row, dict):
                keys.update(dict.fromkeys(row))
    return list(keys), total


def _jsonl_rows(text: IO[str]) -> Iterator[SourceRow]:
    for number, raw in enumerate(text, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            yield SourceRow(number, {}, f"not JSON ({exc})")
            continue
        if not isinstance(row, dict):
            yield SourceRow(number, {}, f"not a JSON object but {type(row).__name__}")
            continue
        yield SourceRow(number, row)
