"""Hostile configs: check-config names every problem as FILE: path: message, and serve refuses the same way."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from csms.runtime.cli import main
from tests.csms.certs import make_pki

EXAMPLE = (Path(__file__).resolve().parents[2] / "config" / "examples" / "site.toml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def with_database(value: str) -> str:
    return EXAMPLE.replace('database = "../../var/csms.sqlite"', f"database = {value!r}".replace("'", '"'))


def run(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line]


def both_refuse(capsys, path: Path, field: str, words: str) -> None:
    """check-config and serve print the same one-line problem and exit 2 (no traceback)."""
    for argv in (["check-config", str(path)], ["serve", "--config", str(path)]):
        code, lines = run(capsys, *argv)
        assert code == 2, (argv, lines)
        assert any(re.fullmatch(rf"{re.escape(str(path))}: {re.escape(field)}: .*{words}.*", line) for line in lines), lines
        assert not any("Traceback" in line for line in lines)


def test_deeply_nested_array_is_a_syntax_problem_not_a_traceback(tmp_path, capsys):
    path = write(tmp_path, EXAMPLE + "\nextra = " + "[" * 500 + "]" * 500 + "\n")
    both_refuse(capsys, path, "(syntax)", "nested")


def test_database_that_is_a_directory(tmp_path, capsys):
    (tmp_path / "db").mkdir()
    both_refuse(capsys, write(tmp_path, with_database(str(tmp_path / "db"))), "storage.database", "is a directory")


def test_database_path_that_is_empty(tmp_path, capsys):
    both_refuse(capsys, write(tmp_path, with_database("")), "storage.database", "empty")


def test_database_that_is_not_sqlite(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("dear diary " * 100)
    both_refuse(capsys, write(tmp_path, with_database(str(tmp_path / "notes.txt"))), "storage.database",
                "not a SQLite database")


def test_database_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    both_refuse(capsys, write(tmp_path, with_database(str(tmp_path / "file" / "csms.sqlite"))), "storage.database",
                "not a directory")


def test_an_empty_or_new_database_file_is_fine(tmp_path, capsys):
    (tmp_path / "empty.sqlite").write_bytes(b"")
    for db in ("empty.sqlite", "sub/new.sqlite", ":memory:"):
        code, lines = run(capsys, "check-config", str(write(tmp_path, with_database(db))))
        assert code == 0, lines


def tls_config(tmp_path: Path, cert: str, key: str, ca: str) -> Path:
    text = EXAMPLE.replace("security_profile = 1 ", "security_profile = 3 ").replace(
        "heartbeat_interval = 300", f'heartbeat_interval = 300\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_ca = "{ca}"')
    return write(tmp_path, text)


@pytest.mark.parametrize("missing", ["tls_cert", "tls_key", "tls_ca"])
def test_missing_tls_files_are_named(tmp_path, capsys, missing):
    pki = make_pki(tmp_path)
    files = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tls_ca": str(pki.ca_cert)}
    files[missing] = str(tmp_path / "nowhere" / f"{missing}.pem")
    path = tls_config(tmp_path, files["tls_cert"], files["tls_key"], files["tls_ca"])
    both_refuse(capsys, path, f"server.{missing}", f"{re.escape(files[missing])}.*No such file")


def test_tls_files_that_are_not_certificates_are_named(tmp_path, capsys):
    pki = make_pki(tmp_path)
    (tmp_path / "junk.pem").write_text("not a certificate")
    path = tls_config(tmp_path, str(tmp_path / "junk.pem"), str(pki.server_key), str(pki.ca_cert))
    both_refuse(capsys, path, "server.tls_cert", "cannot load")


def test_valid_tls_files_pass(tmp_path, capsys):
    pki = make_pki(tmp_path)
    path = tls_config(tmp_path, str(pki.server_cert), str(pki.server_key), str(pki.ca_cert))
    code, lines = run(capsys, "check-config", str(path))
    assert code == 0, lines


def test_a_meter_profile_that_names_no_register_map(tmp_path, capsys):
    text = with_database(str(tmp_path / "csms.sqlite")).replace('profile = "ampguard"', 'profile = "nosuchmap"')
    both_refuse(capsys, write(tmp_path, text), "meters.0.profile", "'nosuchmap' not found.*available: .*ampguard")


def test_a_meter_profile_that_names_a_broken_register_map(tmp_path, capsys):
    shipped = Path(__file__).resolve().parents[2] / "config" / "registers" / "ampguard.toml"
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "mymeter.toml").write_text(shipped.read_text().replace('unit = "A"', 'unit = "V"', 1))
    text = with_database(str(tmp_path / "csms.sqlite")).replace('profile = "ampguard"', 'profile = "mymeter"')
    path = write(tmp_path, text + '\n[gateway]\nregister_dirs = ["maps"]\n')
    both_refuse(capsys, path, "meters.0.profile", "mymeter.toml: registers.1.unit: .* is in 'A', not 'V'")


@pytest.mark.parametrize("old, new, field", [
    ("port = 9000", 'port = "9000"', "server.port"),
    ("port = 9000", "port = 9000.0", "server.port"),
    ("max_current = 32", 'max_current = "32"', "chargers.0.max_current"),
    ('heartbeat_interval = 300', 'heartbeat_interval = "300"', "server.heartbeat_interval"),
    ("active = true", 'active = "yes"', "load_balancers.0.active"),
    ("active = true", "active = 1", "load_balancers.0.active"),
    ("chargers_in_measurement = true", 'chargers_in_measurement = "true"', "load_balancers.0.chargers_in_measurement"),
])
def test_a_value_of_the_wrong_type_is_refused_not_converted(tmp_path, capsys, old, new, field):
    text = with_database(str(tmp_path / "csms.sqlite"))
    assert old in text, old
    both_refuse(capsys, write(tmp_path, text.replace(old, new, 1)), field, "Input should be a valid")


def test_a_whole_number_where_a_decimal_is_expected_is_kept(tmp_path, capsys):
    text = with_database(str(tmp_path / "csms.sqlite"))
    assert main(["check-config", str(write(tmp_path, text.replace("poll_interval = 1.0", "poll_interval = 1")))]) == 0


async def test_checking_the_database_in_use_keeps_its_write_ahead_log(tmp_path):
    """``serve`` checks the database file again on every reload while its storage holds it. Opening and closing
    the file ourselves dropped the process's locks on it: the next reader in another process (``csms
    transactions``) then checkpointed and deleted the WAL the server still wrote to, and a crash lost what had
    been acknowledged since."""
    import subprocess
    import sys

    from csms.config.files import _database_problems
    from csms.storage.database import Storage

    db = tmp_path / "csms.sqlite"
    reader = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
              "c.execute('select count(*) from sqlite_master').fetchone(); c.close()")
    async with Storage(str(db)) as storage:
        await storage.write(lambda d: d.execute("create table if not exists probe (x)"))
        assert _database_problems(str(db)) == []
        subprocess.run([sys.executable, "-c", reader, str(db)], check=True, timeout=60)
        await storage.write(lambda d: d.execute("insert into probe values (1)"))
        wal = tmp_path / "csms.sqlite-wal"
        assert wal.exists(), "another process deleted the write-ahead log of the open database"
        links = [_link(fd) for fd in os.listdir("/proc/self/fd")]
        assert [link for link in links if "csms.sqlite" in link and "(deleted)" in link] == []


def _link(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_serve_names_an_ocpp_port_in_use_without_a_traceback(tmp_path, capsys):
    """Found by a user test: the handler for PostgreSQL's errors came first and re-raised the OSError, so the
    hint below was never printed, only a traceback."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        text = with_database(str(tmp_path / "csms.sqlite")).replace("port = 9000", f"port = {port}", 1)
        code, lines = run(capsys, "serve", "--config", str(write(tmp_path, text)))
    assert code == 1 and len(lines) == 1, lines
    assert f"is another process using 127.0.0.1:{port}? set [server] port" in lines[0]
