"""Transport-neutral request and response values passed between the HTTP server and the emulator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
HTML_CONTENT_TYPE = "text/html;charset=UTF-8"


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request; header names are lower-case, query keeps each key's first value."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """What to send back; `close_without_response` means close the connection and send nothing.

    `code` is Zoho's `code` in a JSON body, kept for the request log (None when there is none).
    """

    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    close_without_response: bool = False
    code: int | None = None


# Status 0 marks "nothing was sent" in the request log.
NO_RESPONSE = Response(status=0, close_without_response=True)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """Build a JSON response with Zoho's content type."""
    body = json.dumps(payload).encode("utf-8")
    code = payload.get("code") if isinstance(payload, dict) else None
    return Response(
        status=status,
        body=body,
        headers=dict(headers or {}),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def html_response(status: int) -> Response:
    """Build the small HTML error page a proxy in front of Zoho might send."""
    page = (
        "<!DOCTYPE html><html><head><title>Bad Gateway</title></head>"
        f"<body><h1>{status} Error</h1>"
        "<p>The server encountered a temporary error.</p></body></html>"
    )
    return Response(status=status, body=page.encode("utf-8"), content_type=HTML_CONTENT_TYPE)
