"""The project's layout: the app never depends on the emulator it is tested against."""

from __future__ import annotations

import ast

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
