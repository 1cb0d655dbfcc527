"""Running a zoho_* command in the test process: its output and exit code, as a script sees them."""

from __future__ import annotations

import io

from django.core.management import call_command
from django.core.management.base import CommandError


def run(name: str, *args: str, stdout: io.TextIOBase | None = None) -> tuple[str, int]:
    """Run a command; return its output and exit code."""
    out = stdout or io.StringIO()
    try:
        call_command(name, *args, stdout=out)
    except CommandError as exc:
        code = exc.returncode
    else:
        code = 0
    if isinstance(out, io.TextIOWrapper):
        out.flush()
        return out.buffer.getvalue().decode(out.encoding), code
    return out.getvalue(), code
