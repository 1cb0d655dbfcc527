"""`import_customers`: real files in, customers upserted by account number, every refused row
named with its line and column and recorded, the rest imported; the sync sends only what changed."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django_q.models import OrmQ

from billing_sync.models import (
    AccountType,
    Customer,
    CustomerImport,
    ImportRefusal,
    ImportStatus,
    SyncStatus,
)
from billing_sync.run.runs import customers_sync
from tests.commands import run, run_json
from tests.helpers import run_queued_tasks, wait_for
from tests.processes import process_env, run_manage, start_manage

pytestmark = pytest.mark.django_db

HEADER = "account_number,email,first_name,last_name,company_name,phone,account_type"
ROWS = [
    "CT-2025-00012,thandi.nkosi@example.co.za,Thandi,Nkosi,,+27 82 555 0101,residential",
    "CT-2025-00014,accounts@karoo-farms.example,Anele,Dlamini,Karoo Farms,,business",
    "CT-2025-00016,lerato.m@example.co.za,Lerato,Mokoena,,021 555 0199,residential",
]


def csv_file(tmp_path: Path, *lines: str, name: str = "customers.csv", crlf=False, bom=False):
    ending = "\r\n" if crlf else "\n"
    text = ending.join(lines) + ending
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def import_json(path: Path | str, *options: str) -> tuple[dict, int]:
    return run_json("import_customers", str(path), *options)


def by_account() -> dict[str, Customer]:
    return {customer.account_number: customer for customer in Customer.objects.all()}


def refusals(document: dict) -> list[tuple[int, str | None, str]]:
    """(line, column, reason) of each refused row's problems, from the document."""
    return [
        (row["line"], problem["column"], problem["reason"])
        for row in document["rows"]
        for problem in row["problems"]
    ]


def test_a_spreadsheet_export_with_bom_and_crlf_comes_in(tmp_path):
    path = csv_file(tmp_path, HEADER, *ROWS, crlf=True, bom=True)

    document, code = import_json(path)

    assert code == 0
    assert document["counts"] == {
        "rows": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "refused": 0,
    }
    assert [row["action"] for row in document["rows"]] == ["create"] * 3
    assert [row["line"] for row in document["rows"]] == [2, 3, 4]
    customers = by_account()
    karoo = customers["CT-2025-00014"]
    assert (karoo.company_name, karoo.account_type, karoo.phone) == (
        "Karoo Farms",
        AccountType.BUSINESS,
        "",
    )
    assert customers["CT-2025-00016"].account_type == "residential"  # no "\r" left on it
    assert all(c.zoho_sync_status == SyncStatus.PENDING for c in customers.values())
    record = CustomerImport.objects.get(pk=document["import_id"])
    assert (record.status, record.created_count, record.name) == (
        ImportStatus.COMPLETED,
        3,
        str(path),
    )


def test_semicolons_and_headers_in_any_case_with_spaces(tmp_path):
    path = csv_file(
        tmp_path,
        " Account_Number ;EMAIL; First_Name ;last_name",
        "CT-1;a@example.co.za;Ann;Lee",
    )

    document, code = import_json(path)

    assert code == 0
    assert document["columns"] == {
        " Account_Number ": "account_number",
        "EMAIL": "email",
        " First_Name ": "first_name",
        "last_name": "last_name",
    }
    assert Customer.objects.get().first_name == "Ann"


def test_every_refused_row_is_named_with_its_line_and_column_and_the_rest_come_in(tmp_path):
    path = csv_file(
        tmp_path,
        HEADER + ",created_at",
        ROWS[0] + ",2025-11-01 08:00",  # line 2: fine
        "CT-2,not-an-email,Sipho,Khumalo,,,residential,",  # 3
        "CT-3,nomsa@example.co.za,,,,,residential,",  # 4: no name at all
        f"CT-4,kyle@example.co.za,{'K' * 101},Adams,,,residential,",  # 5: Zoho's 100
        "CT-5,zanele@example.co.za,Zanele,Mthembu,,4.12E+09,residential,",  # 6: Excel ate it
        "CT-6,priya@example.co.za,Priya,Naidoo,,,reseller,",  # 7: no such account type
        "CT-7,johan@example.co.za,Johan,van Wyk,,,business,yesterday",  # 8
        "CT-2025-00012,again@example.co.za,Thandi,Again,,,residential,",  # 9: given twice
        "CT-8,short@example.co.za,Short",  # 10: a row that lost its cells
        f"{'C' * 33},long@example.co.za,Long,Number,,,residential,",  # 11: over 32
        ",blank@example.co.za,Blank,Account,,,residential,",  # 12
        "CT-9,pieter@example.co.za,Pieter,Botha,,,business,2025-11-02",  # 13: fine
    )

    document, code = import_json(path)

    assert code == 1
    assert refusals(document) == [
        (3, "email", "'not-an-email' is not a valid email address"),
        (
            4,
            "first_name, last_name, company_name",
            ("first_name, last_name and company_name are all blank"),
        ),
        (5, "first_name", "101 characters, Zoho accepts at most 100"),
        (
            6,
            "phone",
            (
                "'4.12E+09' looks like a number a spreadsheet rewrote in scientific notation: its "
                "digits are lost; format the column as text and export it again"
            ),
        ),
        (
            7,
            "account_type",
            ("'reseller' is not an account type: use one of residential, business, internal_test"),
        ),
        (
            8,
            "created_at",
            (
                "'yesterday' is not a date or time: use e.g. 2025-11-01, 2025-11-01 08:00 or "
                "2025-11-01T08:00:00+02:00"
            ),
        ),
        (9, "account_number", "'CT-2025-00012' is given again (first on line 2)"),
        (10, None, "has 3 cells, the header has 8 columns"),
        (11, "account_number", "33 characters, at most 32 fit"),
        (12, "account_number", "is blank: customers are matched by it"),
    ]
    assert document["counts"]["refused"] == 10
    assert set(by_account()) == {"CT-2025-00012", "CT-9"}
    # The audit table holds the same: line, column and reason, under the import.
    recorded = ImportRefusal.objects.filter(customer_import_id=document["import_id"])
    assert [(r.line, r.column or None, r.reason) for r in recorded] == refusals(document)
    assert document["problems"] == ["10 row(s) refused"]


def test_a_nul_byte_is_refused_naming_the_field(tmp_path):
    path = csv_file(tmp_path, HEADER, "CT-1,a@example.co.za,An\x00n,Lee,,,residential")

    document, code = import_json(path)

    assert code == 1
    assert refusals(document) == [(2, "first_name", "contains a NUL byte")]
    assert not Customer.objects.exists()


def test_stray_columns_without_a_header_must_stay_blank(tmp_path):
    path = csv_file(
        tmp_path,
        "account_number,email,first_name,,",
        "CT-1,a@example.co.za,Ann,,",
        "CT-2,b@example.co.za,Ben,,VIP",
    )

    document, code = import_json(path)

    assert code == 1
    assert document["ignored_columns"] == ["(column 4, no header)", "(column 5, no header)"]
    assert refusals(document) == [
        (3, "(column 5, no header)", "has a value but no header: name the column or empty it")
    ]
    assert set(by_account()) == {"CT-1"}


def test_an_unknown_column_stops_the_import_before_anything_is_written(tmp_path):
    path = csv_file(tmp_path, HEADER + ",Notes,Region", ROWS[0] + ",VIP,Cape")

    document, code = import_json(path)

    assert code == 2
    assert not Customer.objects.exists()
    (problem,) = document["problems"]
    assert problem.startswith("unknown column(s) 'Notes', 'Region': the columns are our field")
    record = CustomerImport.objects.get(pk=document["import_id"])
    assert (record.status, record.problem) == (ImportStatus.REFUSED, problem)

    document, code = import_json(path, "--ignore-column", "notes", "--ignore-column", "Region")

    assert code == 0
    assert document["ignored_columns"] == ["Notes", "Region"]
    assert set(by_account()) == {"CT-2025-00012"}


@pytest.mark.parametrize(
    ("header", "options", "problem"),
    [
        ("email,first_name", (), "no account_number column: customers are matched by it"),
        ("account_number,email,Email", (), "column 'email' appears 2 times"),
        ("Account No,email", ("--map", "Account No=account_no"), "--map 'Account No' to"),
        ("account_number,email", ("--map", "Acct=account_number"), "--map 'Acct': the source"),
        ("account_number,email", ("--ignore-column", "Notes"), "--ignore-column 'Notes'"),
    ],
)
def test_columns_that_cannot_be_placed_stop_the_import(tmp_path, header, options, problem):
    path = csv_file(tmp_path, header, "CT-1,a@example.co.za,x")

    document, code = import_json(path, *options)

    assert code == 2
    assert problem in document["problems"][0]
    assert not Customer.objects.exists()


def test_map_renames_a_source_column(tmp_path):
    path = csv_file(tmp_path, "Account No,E-mail,first_name", "CT-1,a@example.co.za,Ann")

    document, code = import_json(
        path, "--map", "Account No=account_number", "--map", "e-mail=email"
    )

    assert code == 0
    assert document["columns"] == {
        "Account No": "account_number",
        "E-mail": "email",
        "first_name": "first_name",
    }
    assert Customer.objects.get().email == "a@example.co.za"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty: it needs a header row"),
        (
            "account_number,email,first_name\nCT-1,a@example.co.za,Ren\xe9\n".encode("cp1252"),
            "line 2: not UTF-8 text (byte 0xe9)",
        ),
        ("account_number,email\n".encode("utf-16"), "is UTF-16 text"),
    ],
)
def test_an_unreadable_file_imports_nothing(tmp_path, content, problem):
    path = tmp_path / "customers.csv"
    path.write_bytes(content)

    document, code = import_json(path)

    assert code == 2
    assert problem in document["problems"][0]
    assert not Customer.objects.exists()
    assert CustomerImport.objects.get().status == ImportStatus.REFUSED


def test_a_missing_file_and_an_unknown_extension(tmp_path):
    document, code = import_json(tmp_path / "nowhere.csv")
    assert (code, document["problems"]) == (
        2,
        [f"{tmp_path / 'nowhere.csv'}: No such file or directory"],
    )

    path = csv_file(tmp_path, HEADER, ROWS[0], name="customers.xlsx")
    document, code = import_json(path)
    assert code == 2
    assert "give --format csv or --format jsonl" in document["problems"][0]
    document, code = import_json(path, "--format", "csv")
    assert code == 0


def test_reimporting_the_same_file_changes_nothing_and_the_sync_sends_nothing(tmp_path, emulator):
    path = csv_file(tmp_path, HEADER, *ROWS)
    import_json(path)
    assert customers_sync(trigger="command").ok
    stamps = dict(Customer.objects.values_list("account_number", "updated_at"))
    requests = len(emulator.request_log)

    document, code = import_json(path)

    assert code == 0
    assert document["counts"]["unchanged"] == 3
    assert [row["action"] for row in document["rows"]] == ["unchanged"] * 3
    assert dict(Customer.objects.values_list("account_number", "updated_at")) == stamps
    report = customers_sync(trigger="command")
    assert (report.selected_count, len(emulator.request_log)) == (0, requests)


def test_one_changed_cell_is_one_update_then_one_put(tmp_path, emulator):
    path = csv_file(tmp_path, HEADER, *ROWS)
    import_json(path)
    assert customers_sync(trigger="command").ok
    requests = len(emulator.request_log)
    changed = ROWS[2].replace("021 555 0199", "021 555 0200")

    document, code = import_json(csv_file(tmp_path, HEADER, ROWS[0], ROWS[1], changed))

    assert code == 0
    assert [(row["action"], row["fields"]) for row in document["rows"]] == [
        ("unchanged", []),
        ("unchanged", []),
        ("update", ["phone"]),
    ]
    report = customers_sync(trigger="command")
    assert (report.selected_count, report.updated_count) == (1, 1)
    sent = emulator.request_log[requests:]
    assert [request.method for request in sent] == ["PUT"]
    lerato = Customer.objects.get(account_number="CT-2025-00016")
    (record,) = [
        r for r in emulator.customers() if r["customer_id"] == lerato.zoho_billing_customer_id
    ]
    assert record["phone"] == "021 555 0200"


def test_a_column_the_file_lacks_is_left_alone_and_an_empty_cell_empties(tmp_path):
    import_json(csv_file(tmp_path, HEADER, *ROWS))

    document, _ = import_json(
        csv_file(tmp_path, "account_number,phone", "CT-2025-00012,", "CT-2025-00014,+27 21 1")
    )

    assert [(row["action"], row["fields"]) for row in document["rows"]] == [
        ("update", ["phone"]),
        ("update", ["phone"]),
    ]
    thandi, karoo = (
        Customer.objects.get(account_number="CT-2025-00012"),
        Customer.objects.get(account_number="CT-2025-00014"),
    )
    assert (thandi.phone, thandi.email, thandi.first_name) == (
        "",
        "thandi.nkosi@example.co.za",
        "Thandi",
    )
    assert (karoo.phone, karoo.company_name) == ("+27 21 1", "Karoo Farms")


def test_an_edit_of_a_customer_needing_attention_puts_it_back_in_the_queue(tmp_path):
    import_json(csv_file(tmp_path, HEADER, *ROWS))
    Customer.objects.filter(account_number="CT-2025-00016").update(
        zoho_sync_status=SyncStatus.NEEDS_ATTENTION
    )

    import_json(csv_file(tmp_path, "account_number,email", "CT-2025-00016,lerato@example.com"))

    assert Customer.objects.get(account_number="CT-2025-00016").zoho_sync_status == "pending"


def test_the_dry_run_says_per_row_what_would_happen_and_writes_nothing(tmp_path):
    import_json(csv_file(tmp_path, HEADER, ROWS[0], ROWS[1]))
    before = list(Customer.objects.values())
    path = csv_file(
        tmp_path,
        HEADER,
        ROWS[0],
        ROWS[1].replace("Karoo Farms", "Karoo Farms (Pty) Ltd"),
        ROWS[2],
        "CT-7,bad,Johan,van Wyk,,,business",
    )

    output, code = run("import_customers", str(path), "--dry-run")

    assert code == 1
    assert "line 2: CT-2025-00012 unchanged" in output
    assert "line 3: CT-2025-00014 update: company_name" in output
    assert "line 4: CT-2025-00016 create" in output
    assert "line 5: CT-7 refused: email: 'bad' is not a valid email address" in output
    assert "Would create: 1" in output
    assert list(Customer.objects.values()) == before
    record = CustomerImport.objects.latest("started_at")
    assert record.dry_run
    assert (record.created_count, record.updated_count, record.refused_count) == (1, 1, 1)


def test_json_lines_absent_keys_stay_null_empties_numbers_are_digits(tmp_path):
    import_json(csv_file(tmp_path, HEADER, *ROWS))
    path = tmp_path / "changes.jsonl"
    path.write_text(
        '{"account_number": "CT-2025-00012", "phone": 27825550101}\n'
        '{"account_number": "CT-2025-00014", "company_name": null}\n'
        "\n"
        "not json\n"
        '["CT-2025-00016"]\n'
        '{"account_number": "CT-9", "email": "new@example.co.za", "first_name": "New"}\n'
    )

    document, code = import_json(path)

    assert code == 1
    assert [(row["line"], row["action"], row["fields"]) for row in document["rows"]] == [
        (1, "update", ["phone"]),
        (2, "update", ["company_name"]),
        (4, "refused", []),
        (5, "refused", []),
        (6, "create", ["account_number", "email", "first_name"]),
    ]
    assert refusals(document)[1] == (5, None, "not a JSON object but list")
    customers = by_account()
    assert customers["CT-2025-00012"].phone == "27825550101"
    assert customers["CT-2025-00012"].first_name == "Thandi"
    assert customers["CT-2025-00014"].company_name == ""


def test_created_at_orders_new_customers_and_never_moves_an_existing_one(tmp_path):
    path = csv_file(
        tmp_path,
        "account_number,email,first_name,created_at",
        "CT-B,b@example.co.za,B,2025-11-01T10:00:00+02:00",
        "CT-A,a@example.co.za,A,2024-03-05",
        "CT-C,c@example.co.za,C,",
    )

    import_json(path)

    customers = by_account()
    assert customers["CT-B"].created_at == datetime(2025, 11, 1, 8, 0, tzinfo=UTC)
    assert customers["CT-A"].created_at == datetime(2024, 3, 5, tzinfo=UTC)
    assert [c.account_number for c in Customer.objects.all()] == ["CT-A", "CT-B", "CT-C"]

    import_json(
        csv_file(tmp_path, "account_number,created_at", "CT-A,2020-01-01", name="later.csv")
    )
    assert Customer.objects.get(account_number="CT-A").created_at == customers["CT-A"].created_at


@pytest.mark.django_db(transaction=True)
def test_standard_input(settings):
    text = "\n".join([HEADER, *ROWS]) + "\n"

    result = run_manage("import_customers", "-", "--json", env=process_env(settings), input=text)

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["source"] == {"kind": "file", "name": "standard input", "format": "csv"}
    assert document["counts"]["created"] == 3
    assert set(by_account()) == {"CT-2025-00012", "CT-2025-00014", "CT-2025-00016"}


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_part_way_keeps_the_written_batches_and_closes_the_document(tmp_path, settings):
    lines = [f"CT-{n:05},c{n}@example.co.za,C,{n},,,residential" for n in range(20_000)]
    path = csv_file(tmp_path, HEADER, *lines)
    process = start_manage(
        "import_customers",
        str(path),
        "--json",
        env=process_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: Customer.objects.exists(), "the first batch written")
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        rest, said = (text.decode() for text in process.communicate(timeout=10))

    document = json.loads(rest)
    assert "Traceback" not in said
    assert said.strip().splitlines() == [document["problems"][0]]  # one line
    assert process.returncode == -signal.SIGINT  # a shell shows 130
    assert document["exit_code"] == 130
    assert document["problems"] == ["Interrupted (Ctrl-C): the rows before that are imported"]
    written = sorted(Customer.objects.values_list("account_number", flat=True))
    assert 1000 <= len(written) < 20_000
    assert sorted(row["account_number"] for row in document["rows"]) == written
    record = CustomerImport.objects.get(pk=document["import_id"])
    assert record.status == ImportStatus.STOPPED
    assert document["counts"] == {
        "rows": len(written),
        "created": len(written),
        "updated": 0,
        "unchanged": 0,
        "refused": 0,
    }
    assert (record.row_count, record.created_count) == (len(written), len(written))


@pytest.mark.django_db(transaction=True)
def test_an_import_queues_one_sync_task_however_many_rows_it_changes(tmp_path, settings):
    settings.ZOHO_SYNC_ON_SAVE = True
    OrmQ.objects.all().delete()
    lines = [f"CT-{n:05d},c{n}@example.co.za,Customer,{n},,,residential" for n in range(120)]

    document, code = import_json(csv_file(tmp_path, HEADER, *lines))

    assert code == 0
    assert document["sync_queued"] is True
    assert OrmQ.objects.count() == 1

    import_json(csv_file(tmp_path, HEADER, *lines))  # unchanged: nothing to send
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_queued_task_sends_the_import_to_zoho(tmp_path, settings, emulator):
    settings.ZOHO_SYNC_ON_SAVE = True
    OrmQ.objects.all().delete()

    import_json(csv_file(tmp_path, HEADER, *ROWS))
    assert run_queued_tasks() == 1

    assert Customer.objects.filter(zoho_sync_status=SyncStatus.SYNCED).count() == 3
    assert len(emulator.customers()) == 3
