"""The project's layout: the app never depends on the emulator it is tested against."""

from __future__ import annotations

import ast
import re

import pytest

from tests.processes import PROJECT

EMULATOR = "zoho_emulator"


def imports_emulator(source: str) -> bool:
    """Whether Python source imports the emulator package or one of its modules, anywhere in it.

    Relative imports are left out: they cannot leave their own top-level package.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        if any(module.split(".")[0] == EMULATOR for module in modules):
            return True
    return False


def test_billing_sync_never_imports_the_emulator():
    offenders = [
        str(path.relative_to(PROJECT))
        for path in sorted((PROJECT / "billing_sync").rglob("*.py"))
        if imports_emulator(path.read_text(encoding="utf-8"))
    ]

    assert offenders == [], f"billing_sync must not import {EMULATOR}: {', '.join(offenders)}"


@pytest.mark.parametrize(
    ("source", "imports"),
    [
        ("import zoho_emulator", True),
        ("import os, zoho_emulator.config as config", True),
        ("from zoho_emulator import ZohoEmulator", True),
        ("from zoho_emulator.faults import FAULT_KINDS", True),
        ("def f():\n    from zoho_emulator import EmulatorConfig\n", True),
        ("import zoho_emulators", False),
        ("from billing_sync.zoho import client  # not zoho_emulator", False),
        ("NAME = 'zoho_emulator'", False),
    ],
)
def test_the_check_reads_imports_not_words(source, imports):
    assert imports_emulator(source) is imports


PACKAGES = ("zoho", "run", "imports", "operations", "admin")


def allowed_imports(package: str) -> list[str]:
    """What a package's docstring says it may import: its "May import:" paragraph."""
    source = (PROJECT / "billing_sync" / package / "__init__.py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source))
    paragraph = doc.split("May import:", 1)[1].split("\n\n", 1)[0]
    without_reasons = re.sub(r"\([^)]*\)", "", paragraph)
    return [name.strip(" .\n") for name in without_reasons.split(",")]


def app_imports(path) -> set[str]:
    """The billing_sync modules a module imports, without the prefix ("run.claims")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("billing_sync."):
            found.add(node.module.removeprefix("billing_sync."))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_its_docstring_allows(package):
    allowed = [package, *allowed_imports(package)]
    offenders = [
        f"{path.relative_to(PROJECT)} imports {module}"
        for path in sorted((PROJECT / "billing_sync" / package).rglob("*.py"))
        for module in sorted(app_imports(path))
        if not any(module == name or module.startswith(f"{name}.") for name in allowed)
    ]

    assert offenders == []


def test_no_folder_of_the_app_holds_more_than_twelve_modules():
    crowded = {
        str(folder.relative_to(PROJECT)): count
        for folder in [PROJECT / "billing_sync", *(PROJECT / "billing_sync").rglob("*")]
        if folder.is_dir() and folder.name != "migrations"
        if (count := len(list(folder.glob("*.py")))) > 12
    }

    assert crowded == {}


def test_no_module_of_the_app_is_over_500_lines():
    long = {
        str(path.relative_to(PROJECT)): lines
        for path in (PROJECT / "billing_sync").rglob("*.py")
        if "migrations" not in path.parts and path.name != "models.py"
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }

    assert long == {}


def readme_layout() -> dict[str, str]:
    """The README's Layout block: each entry's text, by the path it starts with."""
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```")[1]
    entries: dict[str, str] = {}
    path = ""
    for line in block.splitlines():
        if line and not line.startswith(" "):
            path, _, line = line.partition(" ")
        entries[path] = entries.get(path, "") + " " + line
    return entries


@pytest.mark.parametrize(
    "folder", ["run", "run/customer", "imports", "operations", "admin", "management"]
)
def test_the_readme_layout_names_each_package_and_its_modules(folder):
    text = readme_layout()[f"billing_sync/{folder}/"]
    modules = [
        path.stem
        for path in sorted((PROJECT / "billing_sync" / folder).glob("*.py"))
        if path.stem != "__init__"
    ]

    assert [stem for stem in modules if not re.search(rf"\b{stem}\b", text)] == []


def test_the_readme_layout_names_the_modules_at_the_apps_root():
    at_the_root = [f"billing_sync/{name}" for name in ("*.py", "models.py")]
    text = " ".join(path + readme_layout()[path] for path in at_the_root)
    modules = [path.stem for path in sorted((PROJECT / "billing_sync").glob("*.py"))]

    assert [m for m in modules if m != "__init__" and not re.search(rf"\b{m}\b", text)] == []
