"""A private PostgreSQL cluster on 127.0.0.1 and a free port, for tests that need PostgreSQL.

Never the machine's own service on 5432: each use gets its own ``initdb`` cluster in a temporary folder (trust
auth, its unix socket in that folder too), so a test can stop and start the server (``stop()``/``start()``) to
check what survives a restart. The server is always stopped and its folder removed.

``initdb`` refuses to run as root (CI runs as root), so there the cluster belongs to the ``postgres`` user the
Debian package creates, and every server command runs as that user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from simulators.ports import free_port


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: Debian's /usr/lib/postgresql/<v>/bin (newest), else PATH."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(os.path.join(folder, "initdb"), os.X_OK) and os.access(os.path.join(folder, "pg_ctl"), os.X_OK):
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb and shutil.which("pg_ctl") else None


def unavailable_reason() -> str | None:
    """Why no private cluster can be started here (None: one can)."""
    if find_bin_dir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl): install the Debian package postgresql " \
               "(scripts/install-test-deps.sh does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user for initdb to run as"
    return None


class PostgresCluster:
    """``with PostgresCluster() as pg:`` runs a server with database ``pg.dbname``; ``pg.url`` connects to it."""

    def __init__(self, dbname: str = "csms_test", start_timeout: float = 30.0, durable: bool = False,
                 parent: str | None = None):
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.bin = find_bin_dir()
        assert self.bin is not None
        self.port = free_port()
        self.host = "127.0.0.1"
        self.dbname = dbname
        self._timeout = start_timeout
        #: True: the server's defaults (fsync, full page writes), for benchmarks of commits made durable.
        self.durable = durable
        self._as_root = os.geteuid() == 0
        self.user = "postgres" if self._as_root else pwd.getpwuid(os.geteuid()).pw_name
        self._tmp = tempfile.TemporaryDirectory(prefix="csms-pg-", dir=parent)  # parent: which disk (default /tmp)
        self.dir = Path(self._tmp.name)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._running = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=self._timeout, check=False)

    def _check(self, done: subprocess.CompletedProcess[str], what: str) -> None:
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout[-1000:]}{done.stderr[-1000:]}\n{log}")

    def init(self) -> None:
        self._check(self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8",
                              "--no-sync", "--locale=C"), "initdb")
        with (self.data / "postgresql.conf").open("a") as conf:
            # A throwaway cluster: no fsync unless durable (a stop still writes everything out), its socket in its
            # own folder.
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = "
                       f"'{self.dir}'\nmax_connections = 40\n")
            if not self.durable:
                conf.write("fsync = off\nfull_page_writes = off\n")

    def start(self) -> None:
        if self._running:
            return
        self._check(self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                              "-t", str(int(self._timeout)), "start"), "pg_ctl start")
        self._running = True

    def stop(self, mode: str = "fast") -> None:
        """``mode``: fast (disconnects clients, clean shutdown) or immediate (like a crash: recovery on start)."""
        if not self._running:
            return
        self._running = False
        self._check(self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"), "pg_ctl stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> None:
        self._check(self._run("createdb", "-h", self.host, "-p", str(self.port), "-U", self.user, name), "createdb")

    def __enter__(self) -> PostgresCluster:
        try:
            self.init()
            self.start()
            self.create_database(self.dbname)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            self._tmp.cleanup()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
