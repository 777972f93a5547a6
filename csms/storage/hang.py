"""A bound on every wait for a PostgreSQL server's answer: a server that stops answering without closing the
connection (hung, a frozen VM, a partition that sends no reset) must not stall the storage thread for ever.

Neither of the usual tools works on such a server. PostgreSQL's ``statement_timeout`` runs on the server, the one
that is not answering; and psycopg's way out of a wait, cancelling the query, opens a new connection to the same
server, which hangs in turn (the lease connection saw a cancel hold a task 10.8 s). So the storage thread marks
each wait with a deadline (:meth:`HangGuard.waiting`), and a watchdog on another thread (the event loop's) calls
:meth:`HangGuard.check`, which shuts the socket down once a deadline has passed: the blocked call then fails at
once, as a lost connection, and the writer's outage handling takes over (run again after reconnecting, or
"outcome unknown" for a commit in flight). Nothing is sent to the hung server and nothing waits on it.

The shutdown goes through a duplicate of the socket's descriptor taken at connect (:meth:`HangGuard.attach`):
libpq closes its own descriptor when it sees a connection fail, and the freed number may then belong to another
socket, which a shutdown through the old number would cut. The duplicate always names the socket it was made
from. A lock makes "deadline passed, shut down" one step against the storage thread's starting or ending a wait,
so a wait that ended in time is never cut.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class HangGuard:
    """Deadlines on one connection's waits; ``timeout`` seconds each unless :meth:`waiting` says otherwise."""

    def __init__(self, timeout: float):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.timeout = timeout
        #: Times a wait passed its deadline and the connection was cut.
        self.tripped = 0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._deadline: float | None = None
        self._limit = timeout

    def attach(self, fd: int) -> None:
        """Watches the connection whose socket is ``fd`` (a fresh connection, on the storage thread)."""
        sock = socket.socket(fileno=os.dup(fd))
        with self._lock:
            old, self._sock, self._deadline = self._sock, sock, None
        if old is not None:
            old.close()

    def detach(self) -> None:
        """Stops watching (the connection is being closed); its duplicate descriptor is closed."""
        with self._lock:
            sock, self._sock, self._deadline = self._sock, None, None
        if sock is not None:
            sock.close()

    @contextmanager
    def waiting(self, timeout: float | None = None) -> Iterator[None]:
        """Around one call that waits on the server: it is cut if it lasts longer than ``timeout`` (default: the
        guard's)."""
        limit = self.timeout if timeout is None else timeout
        with self._lock:
            self._deadline, self._limit = time.monotonic() + limit, limit
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def check(self, now: float | None = None) -> float | None:
        """Cuts the connection if its wait has passed its deadline; returns that wait's limit when it did."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._sock is None or self._deadline is None or now < self._deadline:
                return None
            self._deadline = None  # once: the call fails now, and ends its wait
            self.tripped += 1
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already shut (the server closed it meanwhile): the call fails by itself
            return self._limit
