"""Free TCP ports on 127.0.0.1 for the servers a demo, a test or a benchmark starts.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same range it picks local ports of
outgoing connections from. Between picking such a port and the server binding it, any connection made meanwhile
(the server's own to PostgreSQL or the MQTT broker, say) may take it as its local port, and the server fails with
"address already in use". Ports below the ephemeral range are never taken that way, so they are picked from there;
a process never hands out the same port twice, so two servers it starts do not collide either.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Where the search starts: above the ports well-known services commonly use.
LOWEST = 10_000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def ephemeral_start() -> int | None:
    """The first port of the kernel's range for outgoing connections (Linux), or None where it cannot be read."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_pick() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port(rng: random.Random | None = None, attempts: int = 200) -> int:
    """A port nothing listens on now, not handed out before by this process, below the ephemeral range if possible.

    Where the range cannot be read (not Linux) or leaves no room below it, the kernel's pick is returned: the
    collision above is then possible again, but nothing better is known there.
    """
    top = ephemeral_start()
    if top is not None and top - LOWEST > attempts:
        pick = (rng or random).randrange
        for _ in range(attempts):
            port = pick(LOWEST, top)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    while True:
        port = _kernel_pick()
        if port not in _handed_out:
            _handed_out.add(port)
            return port
