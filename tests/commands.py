"""Running a zoho_* command in the test process: its output and exit code, as a script sees them."""

from __future__ import annotations

import io
import json
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError


def run(
    name: str,
    *args: str,
    stdout: io.TextIOBase | None = None,
    stderr: io.TextIOBase | None = None,
) -> tuple[str, int]:
    """Run a command; return its output and exit code."""
    out = stdout or io.StringIO()
    streams: dict[str, Any] = {"stdout": out}
    if stderr is not None:
        streams["stderr"] = stderr
    try:
        call_command(name, *args, **streams)
    except CommandError as exc:
        code = exc.returncode
    else:
        code = 0
    if isinstance(out, io.TextIOWrapper):
        out.flush()
        return out.buffer.getvalue().decode(out.encoding), code
    return out.getvalue(), code


def run_json(name: str, *args: str, **streams: Any) -> tuple[dict[str, Any], int]:
    """Run a command with --json; return its document and exit code.

    Fails unless stdout holds exactly one JSON document (json.loads refuses anything more)
    whose exit_code is the code the command exited with.
    """
    output, code = run(name, "--json", *args, **streams)
    document = json.loads(output)
    assert document["exit_code"] == code, document
    return document, code
