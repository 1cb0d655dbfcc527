"""How fast, and in how much memory, `import_customers` brings a spreadsheet export in.

    python bench/imports.py [--rows 100000] [--memory-rows 10000] [--database-url URL]

On a fresh database (a SQLite file under var/, or --database-url, e.g.
postgres://postgres@127.0.0.1:5432/billing_sync_bench_import), with a CSV file written as Excel
writes one (a BOM, CRLF, every column we import):
1. `manage.py import_customers FILE` for --rows customers, as a user runs it (a process of its
   own): wall seconds, and its peak RSS (ru_maxrss of that process).
2. The same file again: every row unchanged, nothing written.
3. The import of --memory-rows customers on a fresh database: its peak RSS, against (1)'s.

With --source, the same 100,000 customers come from the company's database instead (a SQLite
file holding the runbook's `customers` table; CUSTOMER_SOURCE_URL, CUSTOMER_SOURCE_QUERY,
CUSTOMER_SOURCE_WRITEBACK_TABLE): `import_customers --source` on a fresh database (the import,
then a write-back that compares every customer), again unchanged, and once every customer is
synced (a write-back that changes every row there).

With --library, django-import-export's own import of the same file (a ModelResource keyed by
account_number, with the options its docs give for large files: use_bulk, skip_unchanged,
report_skipped=False) on a fresh database, for comparison: why the command does not use it.

Targets (issue "Bring the customers in"): 100,000 rows in at most 60 s, the re-import in at
most 30 s, and peak memory at 100,000 rows within 20% of that at 10,000. Prints met / NOT MET
for each and exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from benchlib import ensure_database  # noqa: E402 - needs the project on sys.path

VAR = PROJECT / "var"
FIRST_IMPORT_SECONDS = 60.0
REIMPORT_SECONDS = 30.0
MEMORY_RATIO = 1.20
HEADER = [
    "account_number",
    "email",
    "first_name",
    "last_name",
    "company_name",
    "phone",
    "account_type",
    "created_at",
]
FIRST_CREATED = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_kib: int
    output: str


def write_csv(path: Path, rows: int) -> None:
    """A spreadsheet's export of `rows` customers: UTF-8 with a BOM, CRLF line ends."""
    with path.open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file, lineterminator="\r\n")
        writer.writerow(HEADER)
        for n in range(rows):
            business = n % 5 == 0
            writer.writerow(
                [
                    f"CT-2025-{n:07d}",
                    f"customer.{n}@example.co.za",
                    "Thandeka",
                    f"Nkosi-{n}",
                    f"Karoo Farms {n} (Pty) Ltd" if business else "",
                    f"+27 82 {n % 1000:03d} {n % 10000:04d}",
                    "business" if business else "residential",
                    (FIRST_CREATED + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M"),
                ]
            )


def manage(*args: str, env: dict[str, str]) -> Measured:
    """Run `manage.py ARGS` as its own process; its wall time and peak RSS."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.stdout.read() if process.stdout else ""
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed ({process.returncode}):\n{output}")
    return Measured(seconds, usage.ru_maxrss, output)


def fresh_database(database_url: str | None, label: str) -> dict[str, str]:
    """The environment of a process on a new, migrated, empty database."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "Q_BROKER_URL")}
    if database_url:
        ensure_database(database_url)
        env["DATABASE_URL"] = database_url
        manage("migrate", "-v", "0", env=env)
        manage("flush", "--no-input", "-v", "0", env=env)
    else:
        path = VAR / f"bench-import-{label}.sqlite3"
        for leftover in VAR.glob(f"{path.name}*"):
            leftover.unlink()
        env["DATABASE_URL"] = f"sqlite:///{path}"
        manage("migrate", "-v", "0", env=env)
    return env


VERDICTS: list[bool] = []


def judge(target: str, figure: str, met: bool) -> None:
    VERDICTS.append(met)
    print(f"  {'met' if met else 'NOT MET'}: {target}: {figure}")


SOURCE_QUERY = (
    "SELECT account_number, email, first_name, last_name, company_name, phone, account_type, "
    "created_at FROM customers"
)


def source_database(rows_csv: Path, rows: int) -> str:
    """A SQLite file holding the runbook's table with the CSV's customers; its URL."""
    path = VAR / "bench-company.sqlite3"
    path.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(path)) as company,
        rows_csv.open(encoding="utf-8-sig", newline="") as file,
    ):
        company.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, account_number TEXT "
            "UNIQUE, first_name TEXT, last_name TEXT, company_name TEXT, phone TEXT, "
            "account_type TEXT, created_at TIMESTAMP, zoho_billing_customer_id TEXT, "
            "zoho_sync_status TEXT NOT NULL DEFAULT 'pending')"
        )
        reader = csv.DictReader(file)
        company.executemany(
            f"INSERT INTO customers ({', '.join(HEADER)}) VALUES ({', '.join('?' * 8)})",  # noqa: S608
            ([row[name] for name in HEADER] for row in reader),
        )
        company.commit()
        assert company.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == rows
    return f"sqlite:///{path}"


def source_runs(args: argparse.Namespace, large: Path) -> None:
    """import_customers --source: new, unchanged, and with every Zoho id to write back."""
    env = fresh_database(args.database_url, "source")
    env["CUSTOMER_SOURCE_URL"] = source_database(large, args.rows)
    env["CUSTOMER_SOURCE_QUERY"] = SOURCE_QUERY
    env["CUSTOMER_SOURCE_WRITEBACK_TABLE"] = "customers"
    first = manage("import_customers", "--source", env=env)
    again = manage("import_customers", "--source", env=env)
    synced = (
        "from django.db.models import F; from django.db.models.functions import Concat; "
        "from django.db.models import Value; from billing_sync.models import Customer; "
        "Customer._base_manager.update(zoho_sync_status='synced', "
        "zoho_billing_customer_id=Concat(Value('61795460'), F('id')))"
    )
    manage("shell", "-c", synced, env=env)
    written = manage("import_customers", "--source", env=env)
    for name, measured in (("new", first), ("unchanged", again), ("write-back", written)):
        tail = [
            line for line in measured.output.splitlines() if "Created" in line or "back" in line
        ]
        print(f"  --source, {name}: {measured.seconds:.1f} s; {tail}")
    judge(
        f"{args.rows} rows from the company's database in <= {FIRST_IMPORT_SECONDS:g} s",
        f"{first.seconds:.1f} s",
        first.seconds <= FIRST_IMPORT_SECONDS,
    )


LIBRARY_IMPORT = """
import tablib
from import_export.resources import ModelResource
from billing_sync.models import Customer

class Plain(ModelResource):
    class Meta:
        model = Customer
        import_id_fields = ("account_number",)
        fields = {fields!r}
        use_bulk = True
        skip_unchanged = True
        report_skipped = False
        batch_size = 1000

with open({path!r}, encoding="utf-8-sig") as file:
    dataset = tablib.Dataset().load(file.read(), format="csv")
result = Plain().import_data(dataset, dry_run=False)
print("library:", dict(result.totals), result.has_errors(), result.has_validation_errors())
"""


def library_runs(args: argparse.Namespace, large: Path, small: Path) -> None:
    """django-import-export's import of the same files, for comparison (no target)."""
    measured = []
    for label, path in (("library-large", large), ("library-small", small)):
        env = fresh_database(args.database_url, label)
        code = LIBRARY_IMPORT.format(fields=tuple(HEADER), path=str(path))
        measured.append(manage("shell", "-c", code, env=env))
    big, little = measured
    ratio = big.peak_rss_kib / little.peak_rss_kib
    print(
        f"  django-import-export, {args.rows} rows: {big.seconds:.1f} s, peak RSS "
        f"{big.peak_rss_kib} KiB ({ratio:.2f}x of {args.memory_rows} rows: "
        f"{little.seconds:.1f} s); {big.output.strip().splitlines()[-1:]}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory-rows", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--source", action="store_true", help="Also import from a company database (SQLite)."
    )
    parser.add_argument(
        "--library", action="store_true", help="Also time django-import-export's own import."
    )
    args = parser.parse_args()
    VAR.mkdir(exist_ok=True)
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"import_customers on {database}, {args.rows} and {args.memory_rows} rows")

    large, small = VAR / f"bench-{args.rows}.csv", VAR / f"bench-{args.memory_rows}.csv"
    write_csv(large, args.rows)
    write_csv(small, args.memory_rows)

    env = fresh_database(args.database_url, "large")
    first = manage("import_customers", str(large), env=env)
    again = manage("import_customers", str(large), env=env)
    env = fresh_database(args.database_url, "small")
    smaller = manage("import_customers", str(small), env=env)

    for name, measured in (("first", first), ("again", again), ("smaller", smaller)):
        tail = [line for line in measured.output.splitlines() if ":" in line][-5:]
        print(f"  {name}: {measured.seconds:.1f} s, peak RSS {measured.peak_rss_kib} KiB; {tail}")
    rate = args.rows / first.seconds
    judge(
        f"{args.rows} rows in <= {FIRST_IMPORT_SECONDS:g} s",
        f"{first.seconds:.1f} s ({rate:.0f} rows/s)",
        first.seconds <= FIRST_IMPORT_SECONDS,
    )
    judge(
        f"the same file again (unchanged) in <= {REIMPORT_SECONDS:g} s",
        f"{again.seconds:.1f} s",
        again.seconds <= REIMPORT_SECONDS,
    )
    ratio = first.peak_rss_kib / smaller.peak_rss_kib
    judge(
        f"peak RSS at {args.rows} rows within {MEMORY_RATIO:.2f}x of {args.memory_rows}",
        f"{first.peak_rss_kib} / {smaller.peak_rss_kib} KiB = {ratio:.2f}",
        ratio <= MEMORY_RATIO,
    )
    if args.source:
        source_runs(args, large)
    if args.library:
        library_runs(args, large, small)
    return 0 if all(VERDICTS) else 1


if __name__ == "__main__":
    sys.exit(main())
