"""A PostgreSQL server for the tests: the one configured, the local one, or a throwaway one.

Order: `DRAFTS_TEST_DATABASE_URL` (a server URL; each test gets its own database on it), then a
server on 127.0.0.1:5432, then a throwaway cluster made with the machine's `initdb` in a
temporary folder, stopped and removed when the session ends.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayServer:
    """A PostgreSQL cluster of its own in a temporary folder, on a free port, that a test can
    stop and start again (a database outage) and that is removed at the end."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self._pg_ctl = pg_ctl
        self.folder = Path(tempfile.mkdtemp(prefix="drafts-pg-"))
        self._data, self.port = self.folder / "data", _free_port()
        # initdb refuses to run as root; hand the folder to the postgres account then.
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(initdb, "-D", str(self._data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        self._run(self._pg_ctl, "-D", str(self._data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stop at once, dropping every connection (as a crash or a failover does)."""
        self._run(self._pg_ctl, "-D", str(self._data), "-m", "immediate", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def throwaway_server() -> Iterator[ThrowawayServer | None]:
    """A started `ThrowawayServer`, or None where the machine has no `initdb`."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        yield None
        return
    server = ThrowawayServer(initdb, pg_ctl)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextmanager
def _throwaway_cluster() -> Iterator[str | None]:
    with throwaway_server() as server:
        yield server.admin_url if server else None


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """Yield an admin URL of a reachable server, or None when none can be had."""
    configured = os.environ.get("DRAFTS_TEST_DATABASE_URL")
    if configured:
        yield configured
    elif _reachable(LOCAL_URL):
        yield LOCAL_URL
    else:
        with _throwaway_cluster() as url:
            yield url


def create_database(admin_url: str, name: str) -> str:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
