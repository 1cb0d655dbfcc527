"""The documentation a person finds their way in: a short README whose links, and the docs'
own, all lead somewhere (a file that exists, a heading that is there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from billing_sync.management.documents import DOCUMENTS
from tests.processes import PROJECT

README = PROJECT / "README.md"
PAGES = [README, *sorted((PROJECT / "docs").glob("*.md"))]
README_MAX_LINES = 250
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def links(page: Path) -> list[str]:
    """The link targets of a Markdown page, code left out."""
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    return LINK.findall(text)


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = INLINE_CODE.sub(lambda code: code.group()[1:-1], heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_the_readme_is_short_enough_to_find_the_first_steps():
    lines = README.read_text(encoding="utf-8").splitlines()

    assert len(lines) <= README_MAX_LINES
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:3] == [
        "## What it is",
        "## First steps with your own customers",
        "## Commands",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_leads_somewhere(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # a web address: not ours to check here
        path, _, fragment = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and fragment not in anchors(destination):
            broken.append(f"{target}: no such heading in {destination.name}")
    assert broken == [], f"{page.name}: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}

    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


def test_the_anchor_rule_matches_githubs():
    assert anchor("The company's database") == "the-companys-database"
    assert anchor("Exit codes") == "exit-codes"
    assert anchor("Keeping Zoho in step: the worker, the schedule") == (
        "keeping-zoho-in-step-the-worker-the-schedule"
    )


def top_level_names(cell: str) -> list[str]:
    """The backticked names of a table cell outside any (), [] or {}: a document's keys."""
    names, depth = [], 0
    for token in re.finditer(r"`([^`]*)`|[(\[{]|[)\]}]", cell):
        if token.group(1) is not None:
            if depth == 0:
                names.append(token.group(1))
        elif token.group() in "([{":
            depth += 1
        else:
            depth -= 1
    return names


def documented_keys() -> dict[str, list[str]]:
    """Each command's keys, as the table of docs/json-output.md lists them."""
    table = {}
    for line in (PROJECT / "docs" / "json-output.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        for command in re.findall(r"`(\w+)`", cells[0]):
            table[command] = top_level_names(cells[1])
    return table


def test_the_json_table_lists_the_keys_each_document_is_declared_with():
    documented = documented_keys()
    # The emulator prints its own line, not a command document.
    assert documented.pop("zoho_emulator")
    assert documented == {command: list(document) for command, document in DOCUMENTS.items()}
