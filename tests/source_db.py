"""The company's own database, for tests: a real second database (a SQLite file, or a PostgreSQL
database made for the test) holding the runbook's `customers` table, read and checked with the
database's own driver, as the company would; and the `source` alias pointing at it."""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
import psycopg
import pytest
from django.db import connections
from django.db.utils import load_backend

from billing_sync.imports.demo import DEMO_FILE

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# The runbook's table, as the company keeps it: our field names, and the two columns we write.
RUNBOOK_TABLE = """
CREATE TABLE customers (
    id {id_type},
    email VARCHAR(254) NOT NULL,
    account_number VARCHAR(32) NOT NULL UNIQUE,
    first_name VARCHAR(150) NOT NULL DEFAULT '',
    last_name VARCHAR(150) NOT NULL DEFAULT '',
    company_name VARCHAR(255) NOT NULL DEFAULT '',
    phone VARCHAR(64) NOT NULL DEFAULT '',
    account_type VARCHAR(20) NOT NULL DEFAULT 'residential',
    created_at TIMESTAMP {tz} NOT NULL,
    zoho_billing_customer_id VARCHAR(64),
    zoho_sync_status VARCHAR(20) NOT NULL DEFAULT 'pending'
)
"""
# The runbook's status summary, unchanged.
STATUS_SUMMARY = """SELECT zoho_sync_status, COUNT(*) as count FROM customers
WHERE account_type != 'internal_test' GROUP BY zoho_sync_status;"""
# What the query of a real set-up selects: our field names.
QUERY = (
    "SELECT account_number, email, first_name, last_name, company_name, phone, account_type, "
    "created_at FROM customers ORDER BY created_at"
)
_numbers = itertools.count(1)


@dataclass
class SourceDatabase:
    """A source database the test owns."""

    vendor: str
    url: str

    def connect(self) -> Any:
        if self.vendor == "sqlite":
            return sqlite3.connect(self.url.removeprefix("sqlite:///"))
        return psycopg.connect(self.url)

    def execute(self, sql: str, params: tuple | list = ()) -> None:
        with contextlib.closing(self.connect()) as connection:
            connection.execute(_marks(sql, self.vendor), params)
            connection.commit()

    def rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with contextlib.closing(self.connect()) as connection:
            return list(connection.execute(_marks(sql, self.vendor), params).fetchall())

    def add_customer(self, **fields: Any) -> None:
        names = ", ".join(fields)
        marks = ", ".join(["%s"] * len(fields))
        self.execute(
            f"INSERT INTO customers ({names}) VALUES ({marks})",  # noqa: S608 - the test's own names
            list(fields.values()),
        )

    def add_demo_customers(self) -> None:
        """The runbook's 13 customers and 2 internal test accounts, not synced yet."""
        with DEMO_FILE.open(newline="") as demo:
            for row in csv.DictReader(demo):
                self.add_customer(**row)

    def status_summary(self) -> dict[str, int]:
        return dict(self.rows(STATUS_SUMMARY))

    def zoho_ids(self) -> dict[str, str | None]:
        return dict(self.rows("SELECT account_number, zoho_billing_customer_id FROM customers"))


def _marks(sql: str, vendor: str) -> str:
    return sql.replace("%s", "?") if vendor == "sqlite" else sql


@contextlib.contextmanager
def source_database(vendor: str, folder: Path) -> Iterator[SourceDatabase]:
    """A new database holding the runbook's empty `customers` table; dropped afterwards."""
    if vendor == "sqlite":
        source = SourceDatabase("sqlite", f"sqlite:///{folder / 'company.sqlite3'}")
        source.execute(RUNBOOK_TABLE.format(id_type="INTEGER PRIMARY KEY", tz=""))
        yield source
        return
    name = f"billing_sync_company_{os.getpid()}_{next(_numbers)}"
    admin = _postgres_admin()
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        source = SourceDatabase("postgresql", f"postgres://postgres@127.0.0.1:5432/{name}")
        source.execute(RUNBOOK_TABLE.format(id_type="SERIAL PRIMARY KEY", tz="WITH TIME ZONE"))
        yield source
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _postgres_admin() -> psycopg.Connection:
    """The machine's PostgreSQL; outside CI a test skips without it, in CI it must be there."""
    try:
        return psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({error})")
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432; CI runs these tests")


@contextlib.contextmanager
def source_alias(url: str) -> Iterator[None]:
    """Point the `source` connection of this thread at `url`, as CUSTOMER_SOURCE_URL does at
    start-up (settings.py; tests/test_customer_source.py runs that too), and take it away after.

    Made here, not in DATABASES: the test database set-up would make a test copy of it, and
    Django's test case refuses connections to an alias it was not told of ahead.
    """
    config = environ.Env.db_url_config(url)
    settings = connections.configure_settings({**connections.settings, "source": config})
    wrapper = load_backend(config["ENGINE"]).DatabaseWrapper(settings["source"], "source")
    connections["source"] = wrapper
    try:
        yield
    finally:
        wrapper.close()
        del connections["source"]
