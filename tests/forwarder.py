"""A TCP forwarder a test owns: it passes connections to a real server (the emulator, the
database) until the test cuts it, so a fault tests drive is real (refused connections, dropped
ones) without stopping the machine's services."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator


class Forwarder:
    """Listens on 127.0.0.1:`port` and forwards each connection to `target` while open.

    `cut()` drops every live connection and closes the listener, so new connections are
    refused; `restore()` listens on the same port again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections_made = 0
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> Forwarder:
        """Listen (on a free port the first time, the same one after a cut)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    restore = start

    def cut(self) -> None:
        """Refuse new connections and drop the live ones, as a lost network does."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections_made += 1
                self._live.update((client, server))
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:  # blocking: a readable socket's recv returns at once
                sock.settimeout(None)
                selector.register(sock, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select():
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peers[key.fileobj].sendall(data)  # type: ignore[index]
            except OSError:
                return
            finally:
                for sock in peers:
                    with self._lock:
                        self._live.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.close()


@contextlib.contextmanager
def forwarding(host: str, port: int) -> Iterator[Forwarder]:
    """A started forwarder to host:port, cut when the block ends."""
    forwarder = Forwarder(host, port).start()
    try:
        yield forwarder
    finally:
        forwarder.cut()
