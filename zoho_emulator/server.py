"""The HTTP side: a threading HTTP/1.1 server that turns each request into a Request for the app."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from zoho_emulator.messages import Request, Response, json_response

logger = logging.getLogger(__name__)

App = Callable[[Request], Response]


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Serves `app` on a socket and can cut every open keep-alive connection when stopped."""

    daemon_threads = True
    poll_interval = 0.1

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serve until shutdown(), checking for it every `poll_interval` seconds."""
        super().serve_forever(poll_interval or self.poll_interval)

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.started = False
        self.connections_opened = 0
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, EmulatorRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then serve it in its own thread."""
        with self._connections_lock:
            self._connections.add(request)
            self.connections_opened += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open client connection so their handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("Connection was already closed.")


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Reads one request, asks the app for a Response, writes it (or closes without one)."""

    protocol_version = "HTTP/1.1"
    server_version = "ZohoBillingEmulator/1.0"
    # Idle keep-alive connections end after this long, so their threads do not pile up.
    timeout = 120
    # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        """Serve GET."""
        self._serve()

    def do_POST(self) -> None:
        """Serve POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve PUT."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve DELETE (the API answers 405)."""
        self._serve()

    def do_PATCH(self) -> None:
        """Serve PATCH (the API answers 405)."""
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Send the access log to the logging module instead of stderr."""
        logger.debug("%s - %s", self.address_string(), format % args)

    def _serve(self) -> None:
        request = self._read_request()
        try:
            response = self.server.app(request)
        except Exception:
            logger.exception("Emulator failed on %s %s", request.method, request.path)
            response = json_response(500, {"code": -1, "message": "Internal error"})
        if response.close_without_response:
            self.close_connection = True
            return
        try:
            self._write(response)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. timed out on a slow fault); the work is done regardless.
            self.close_connection = True

    def _read_request(self) -> Request:
        split = urlsplit(self.path)
        query = {
            key: values[0] for key, values in parse_qs(split.query, keep_blank_values=True).items()
        }
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Request(self.command, split.path, query, headers, self._read_body())

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Not supported; the stream position would be unknown, so do not reuse the connection.
            self.close_connection = True
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)
        self.wfile.flush()
