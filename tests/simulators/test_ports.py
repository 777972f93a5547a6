"""The free-port helper every demo, test and benchmark uses: a port outgoing connections cannot take first."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from simulators import ports


def test_a_port_is_below_the_range_outgoing_connections_use_and_nothing_listens_on_it() -> None:
    start = ports.ephemeral_start()
    if start is None:
        pytest.skip("the kernel's ephemeral port range cannot be read here")
    for _ in range(50):
        port = ports.free_port()
        assert ports.LOWEST <= port < start
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_process_never_hands_out_the_same_port_twice() -> None:
    rng = random.Random(1)
    picked = [ports.free_port(rng) for _ in range(300)]
    assert len(set(picked)) == len(picked)


def test_a_port_something_listens_on_is_not_handed_out() -> None:
    if ports.ephemeral_start() is None:
        pytest.skip("the kernel's ephemeral port range cannot be read here")
    listener = socket.socket()
    listener.bind(("127.0.0.1", ports.free_port()))
    listener.listen()
    busy = listener.getsockname()[1]
    ports._handed_out.discard(busy)
    # Every pick the search makes is the busy port, until it is told otherwise.
    picks = iter([busy] * 5 + [busy + 1 if busy + 1 < ports.ephemeral_start() else busy - 1])

    class Scripted:
        @staticmethod
        def randrange(_lo: int, _hi: int) -> int:
            return next(picks)
    try:
        assert ports.free_port(Scripted()) != busy  # type: ignore[arg-type]
    finally:
        listener.close()


def test_without_a_readable_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ports, "_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_start() is None
    picked = {ports.free_port() for _ in range(20)}
    assert len(picked) == 20
    for port in picked:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
