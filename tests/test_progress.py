"""The progress bar of long runs: on a terminal only, under the runbook's lines, with count,
rate, ETA and the reason of each wait; never on a pipe, never in the --json document."""

from __future__ import annotations

import io
import json
import re

import pytest

from tests.commands import run

pytestmark = pytest.mark.django_db

# tqdm's bar: "Syncing:  50%|#####     | 3/6 [00:02<00:02,  1.48 customers/s, waiting: ...]"
BAR = re.compile(
    r"(?P<label>\w+): +\d+%\|[^|]*\| (?P<n>\d+)/(?P<total>\d+) "
    r"\[(?P<elapsed>\d\d:\d\d)<(?P<eta>\d\d:\d\d|\?), +(?P<rate>[\d.]+|\?) customers/s"
    r"(?:, (?P<wait>[^\]]+))?\]"
)


class Terminal(io.StringIO):
    """A stream that says it is a terminal, keeping everything written to it."""

    def isatty(self) -> bool:
        return True


def screen(written: str) -> list[str]:
    """What a terminal shows after `written`: a carriage return goes back to the line's start
    and the characters after it overwrite the line."""
    lines = []
    for line in written.split("\n"):
        cells: list[str] = []
        for part in line.split("\r"):
            cells[: len(part)] = part
        lines.append("".join(cells).rstrip())
    return lines


def bars(written: str) -> list[re.Match[str]]:
    return list(BAR.finditer(written))


def test_a_terminal_shows_count_rate_eta_and_budget_waits(emulator, make_customer, settings):
    settings.ZOHO_RATE_LIMIT_REQUESTS = 4
    settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 2
    for _ in range(6):
        make_customer()

    written, code = run("zoho_backfill_customers", stdout=Terminal())

    assert code == 0
    drawn = bars(written)
    assert {bar["label"] for bar in drawn} == {"Syncing"}
    assert {bar["total"] for bar in drawn} == {"6"}
    counts = [int(bar["n"]) for bar in drawn]
    assert counts == sorted(counts)
    assert counts[0] == 0
    assert counts[-1] == 6
    assert any(bar["rate"] != "?" and float(bar["rate"]) > 0 for bar in drawn)
    assert any(bar["eta"] != "?" for bar in drawn)
    assert any(
        re.fullmatch(r"waiting: request budget until \d\d:\d\d:\d\d UTC", bar["wait"] or "")
        for bar in drawn
    )


def test_a_terminal_names_zoho_blocks_and_settling_creates(emulator, make_customer, settings):
    settings.ZOHO_CREATE_SETTLE_SECONDS = 1.5
    emulator.configure(rate_limit_requests=3, rate_limit_window_seconds=60, block_seconds=1)
    customers = [make_customer() for _ in range(4)]
    emulator.inject("lose_response", method="POST", email=customers[-1].email)

    written, code = run("zoho_backfill_customers", stdout=Terminal())

    assert code == 0
    waits = {bar["wait"].split(" until ")[0] for bar in bars(written) if bar["wait"]}
    assert {"waiting: Zoho block", "waiting: create settling"} <= waits


def test_the_runbook_lines_stay_above_the_bar_and_the_bar_goes(emulator, make_customer):
    for _ in range(3):
        make_customer()

    written, _ = run("zoho_backfill_customers", stdout=Terminal())

    shown = screen(written)
    assert bars(written)
    assert not any("customers/s" in line for line in shown)  # cleared, line by line
    text = "\n".join(shown)
    assert "[1/3] Syncing: customer" in text
    assert re.search(r"\n  ✅ Successfully synced: \d+\n\n\[2/3\]", text)
    assert "Total Attempted: 3\n✅ Successfully Synced: 3\n❌ Failed: 0\n" in text
    assert text.endswith("✅ All selected customers successfully synced!\n")


def test_a_dry_run_on_a_terminal_counts_too(emulator, make_customer):
    for _ in range(3):
        make_customer()

    written, code = run("zoho_backfill_customers", "--dry-run", stdout=Terminal())

    assert code == 0
    assert {(bar["label"], bar["total"]) for bar in bars(written)} == {("Checking", "3")}


def test_no_bar_when_stdout_is_not_a_terminal(emulator, make_customer, settings):
    settings.ZOHO_RATE_LIMIT_REQUESTS = 4
    settings.ZOHO_RATE_LIMIT_WINDOW_SECONDS = 2
    for _ in range(6):
        make_customer()

    written, code = run("zoho_backfill_customers")

    assert code == 0
    assert "\r" not in written
    assert "customers/s" not in written
    assert "[6/6] Syncing: customer" in written


def test_with_json_the_bar_goes_to_a_terminal_stderr_only(emulator, make_customer):
    for _ in range(3):
        make_customer()
    errors = Terminal()

    written, code = run("zoho_backfill_customers", "--json", stdout=Terminal(), stderr=errors)

    assert code == 0
    assert json.loads(written)["counts"]["synced"] == 3  # nothing but the document
    assert bars(errors.getvalue())


def test_with_json_and_no_terminal_there_is_no_bar(emulator, make_customer):
    make_customer()
    errors = io.StringIO()

    written, _ = run("zoho_backfill_customers", "--json", stderr=errors)

    json.loads(written)
    assert errors.getvalue() == ""


# An import's bar: "Importing: 100%|##########| 2500/2500 [00:01<00:00, 2112.05 rows/s]"
IMPORT_BAR = re.compile(
    r"Importing: +\d+%\|[^|]*\| (?P<n>\d+)/(?P<total>\d+) "
    r"\[\d\d:\d\d<(?:\d\d:\d\d|\?), +(?:[\d.]+|\?) rows/s\]"
)


def customers_csv(tmp_path, rows: int, *, bad_line: int = 0) -> str:
    lines = ["account_number,email,first_name"]
    for n in range(rows):
        email = "not-an-email" if n + 2 == bad_line else f"c{n}@example.co.za"
        lines.append(f"CT-{n:06d},{email},Customer {n}")
    path = tmp_path / "customers.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_an_import_on_a_terminal_counts_rows_with_refusals_above_the_bar(tmp_path):
    path = customers_csv(tmp_path, 2500, bad_line=1500)

    written, code = run("import_customers", path, stdout=Terminal())

    assert code == 1
    drawn = list(IMPORT_BAR.finditer(written))
    assert {bar["total"] for bar in drawn} == {"2500"}
    assert [int(bar["n"]) for bar in drawn][-1] == 2500
    assert len({bar["n"] for bar in drawn}) >= 3  # it moved batch by batch
    shown = "\n".join(screen(written))
    assert not any("rows/s" in line for line in screen(written))  # gone before the totals
    assert "❌ line 1500: CT-001498 refused: email: 'not-an-email' is not a valid email" in shown
    assert "Rows read: 2500\n✅ Created: 2499\n" in shown


def test_an_import_with_json_draws_on_a_terminal_stderr_only(tmp_path):
    errors = Terminal()

    written, code = run(
        "import_customers", customers_csv(tmp_path, 10), "--json", stdout=Terminal(), stderr=errors
    )

    assert code == 0
    assert json.loads(written)["counts"]["created"] == 10
    assert IMPORT_BAR.search(errors.getvalue())
    assert "\r" not in run("import_customers", customers_csv(tmp_path, 10))[0]
