"""Faults the outage tests put between the service and what it needs, from real parts only.

- `TcpProxy`: a TCP relay on a fixed local port in front of PostgreSQL. `cut()` closes the
  listening socket and every open connection (the database "goes away" for the service: its
  connections break and new ones are refused); `restore()` listens again on the same port.
- `Tmpfs`: a small tmpfs mounted (root only) for a disk that really fills up, and that can be
  remounted read-only; unmounted at the end.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import threading
from pathlib import Path

import pytest

_CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`, until cut; restorable on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.restore()

    def restore(self) -> None:
        """Listen (again) on the proxy's port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Stop listening and break every connection through the proxy."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for sock in ready:
                    data = sock.recv(_CHUNK)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._sockets -= {a, b}
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()


def require_root_mounts() -> None:
    """The disk tests mount a tmpfs: root only. Skips elsewhere, fails when CI=true (the CI
    machine runs as root)."""
    if os.geteuid() != 0:
        message = "mounting a tmpfs for the disk-full and read-only tests needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class Tmpfs:
    """A tmpfs of `size` bytes at `path` (root only)."""

    def __init__(self, path: Path, size: int) -> None:
        require_root_mounts()
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))

    def _mount(self, *args: str) -> None:
        result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            message = f"mount {' '.join(args)} failed: {result.stderr.strip()}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)

    def read_only(self, on: bool) -> None:
        self._mount("-o", f"remount,{'ro' if on else 'rw'}", str(self.path))

    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self, name: str = "filler") -> Path:
        """Write zeros into a file until the filesystem is full; the file."""
        filler = self.path / name
        block = b"\0" * 65536
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while block:
                try:
                    os.write(fd, block)
                except OSError:  # ENOSPC: try smaller writes down to one byte
                    block = block[: len(block) // 2]
        finally:
            os.close(fd)
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
