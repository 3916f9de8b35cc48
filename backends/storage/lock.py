"""The writer lock of an ensemble store: one writer at a time, readers never blocked.

A writer (``run``, ``simulate --out``, ``resume``, a scan task) holds an exclusive OS lock
(``flock``) on ``DIR/writer.lock`` for as long as it has the store open for writing; the file
says who holds it (PID, host, start time). A second writer is refused at once, naming the
holder. The operating system drops the lock when its process dies however it dies (SIGKILL
included), so a lock file left by a dead writer is no lock at all: the next writer takes it
over and rewrites the holder. Readers take no lock and read only committed data (the commit
record names what is committed). On a network file system the lock is as good as its
``flock`` (Linux's NFS client maps it to a byte-range lock the server enforces).
"""
from __future__ import annotations

import json
import os
import socket
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one writer is then the user's promise
    fcntl = None

__all__ = ["LOCK", "WriterLock", "StoreLockedError"]

LOCK = "writer.lock"


class StoreLockedError(ValueError):
    """Another live process is writing the store."""


class WriterLock:
    """The exclusive, non-blocking writer lock of the store at ``path``: :meth:`acquire` takes it
    or raises :class:`StoreLockedError` naming the holder; :meth:`release` (or the process's end)
    gives it back."""

    def __init__(self, path: str):
        self.path = path
        self.file = os.path.join(path, LOCK)
        self.fd: int | None = None

    def acquire(self) -> "WriterLock":
        if fcntl is None or self.fd is not None:  # pragma: no cover - Windows
            return self
        try:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreLockedError(f"{self.path!r} cannot be opened for writing ({e.strerror or e}): "
                                   f"its writer lock {LOCK} cannot be created") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreLockedError(f"{self.path!r} is being written by another process ({holder}); wait for it to "
                                   f"finish or stop it (Ctrl-C, or a file named STOP in the directory), then "
                                   f"`portable-lattice resume {self.path}`") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __del__(self):  # a store dropped without close(): its writer is gone
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the process's end drops the lock
            pass

    @property
    def held(self) -> bool:
        return self.fd is not None


def _holder(fd: int) -> str:
    """'pid N on host H since T' from a lock file (what its holder wrote), or a plain phrase."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on host {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its holder has not said who it is yet"
