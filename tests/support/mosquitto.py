"""A real mosquitto broker on 127.0.0.1 and a free port, for tests that need MQTT.

Never the system broker on 1883: each test gets its own process, config and port, and the broker can be
stopped and started again on the same port to test reconnection. The process is always terminated.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from simulators.ports import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Mosquitto:
    """``with Mosquitto() as broker:`` runs a broker on ``broker.port`` until the block ends."""

    def __init__(self, port: int | None = None, start_timeout: float = 5.0, extra_config: str = "",
                 allow_anonymous: bool = True):
        """``extra_config`` lines go under the listener, e.g. ``certfile``/``keyfile``/``password_file``."""
        if not Path(MOSQUITTO).exists():
            raise RuntimeError(f"{MOSQUITTO} not found: install mosquitto (.ci/run does) to run MQTT tests")
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._start_timeout = start_timeout
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        self._conf = Path(self._dir.name) / "mosquitto.conf"
        self._conf.write_text(
            f"per_listener_settings true\nlistener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n{extra_config}\n"
        )
        self._log = Path(self._dir.name) / "mosquitto.log"
        #: A folder that lives as long as the broker, for certificates and password files.
        self.dir = Path(self._dir.name)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is not None:
            return
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self._conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._start_timeout
        while not _port_open(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start on port {self.port}: {self._log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
