"""Counts the bytes the Docker engine receives for builds and image loads, whoever sends them.

The benchmark points every builder (docker CLI, plain Pants, the plugin) at a socket of its own that
relays each connection, byte for byte, to the engine's socket. Bytes sent to the engine on a connection
that carries a `POST /build`, `POST /session` (BuildKit's file transfer: the build context, the
Dockerfile) or `POST /images/load` request are counted: the legacy builder's context tar, BuildKit's
`transferring context`, and what `docker load` sends alike, measured the same way for every builder
and independent of how the builder works inside. Other API calls (inspect, list, tag, run) are not
counted; a counted connection's few hundred bytes of other requests (a `/_ping` before the build on a
reused connection) are.
"""
from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

# A request line of the calls that send image content (any API version, any query string).
_CONTENT_REQUEST = re.compile(rb"POST /(?:v[0-9.]+/)?(?:build|session|images/load)[ ?]")
_SCAN_TAIL = 256  # bytes kept from the previous chunk so a request line split across chunks matches


class EngineMeter:
    """A relay on `listen` to the engine at `engine` (unix socket paths) counting build/load bytes."""

    def __init__(self, engine: str, listen: Path) -> None:
        self.engine, self.listen = engine, listen
        self._lock = threading.Lock()
        self._counted = 0
        self._server: socket.socket | None = None

    def start(self) -> str:
        """Starts relaying; returns the DOCKER_HOST value that goes through the meter."""
        self.listen.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.listen))
        server.listen(128)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()
        return f"unix://{self.listen}"

    def stop(self) -> None:
        if self._server:
            self._server.close()
            self._server = None
        self.listen.unlink(missing_ok=True)

    def take(self) -> int:
        """Bytes counted since the last take (connections still open count what they sent so far)."""
        with self._lock:
            counted, self._counted = self._counted, 0
        return counted

    def _accept(self) -> None:
        while self._server:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.engine)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        back.start()
        self._pump(client, upstream, True)
        back.join()
        client.close()
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket, to_engine: bool) -> None:
        counting, pending, tail = False, 0, b""
        try:
            while True:
                data = src.recv(1 << 18)
                if not data:
                    break
                if to_engine:
                    if not counting:
                        pending += len(data)
                        if _CONTENT_REQUEST.search(tail + data):
                            counting = True
                            self._add(pending)
                        tail = data[-_SCAN_TAIL:]
                    else:
                        self._add(len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _add(self, n: int) -> None:
        with self._lock:
            self._counted += n
