"""Engines and migrations: one engine per database URL and process."""

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from drafts_pipeline.errors import ConfigurationError
from drafts_pipeline.store.outages import OUTAGES

MIGRATIONS = Path(__file__).parent / "migrations"

# The newest migration in MIGRATIONS (a test keeps the two in step). Knowing it here lets every
# command, step and sensor tick check the schema with two small queries, without importing
# Alembic (and the template and highlighting libraries it brings, 0.3 s), which only an actual
# upgrade needs.
HEAD_REVISION = "0009"


# `engine.connect().execution_options(**READ_ONLY)` for a connection that never writes: on SQLite
# its transactions do not take the write lock.
READ_ONLY_OPTION = "drafts_read_only"
READ_ONLY = {READ_ONLY_OPTION: True}


# How long an SQLite statement waits for another connection's write lock before it fails
# with "database is locked" (then `outages.BUSY_ATTEMPTS` runs the operation again).
SQLITE_BUSY_TIMEOUT_S = 30.0


@cache
def engine_for(url: str) -> Engine:
    """A pooled engine; SQLite gets WAL, a busy timeout and enforced foreign keys. Its new
    connections tell `OUTAGES` that the database is reachable."""
    _require_supported(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        OUTAGES.watch(engine)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below open transactions, not the driver.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(connection: Connection) -> None:
            # Take the write lock up front: a deferred transaction that reads and then
            # writes fails with "database is locked" when another writer got in between. A
            # connection opened with READ_ONLY only reads, which WAL lets it do beside a writer,
            # so it does not queue for the lock.
            if connection.get_execution_options().get(READ_ONLY_OPTION):
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    OUTAGES.watch(engine)
    return engine


SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def _require_supported(url: str) -> None:
    """A URL SQLAlchemy can parse, of a database the store runs on (the URL itself is never
    repeated: it may hold a password)."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise ConfigurationError(
            "DRAFTS_DATABASE_URL is not a database URL: write sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DATABASE"
        ) from None
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigurationError(
            f"DRAFTS_DATABASE_URL names a {backend} database; the draft store runs on SQLite "
            "or PostgreSQL"
        )


def dialect_insert(dialect_name: str) -> Callable[..., Any]:
    """The dialect's INSERT construct, which offers ON CONFLICT DO NOTHING."""
    return postgresql.insert if dialect_name == "postgresql" else sqlite.insert


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None when it has no schema yet."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest migration (idempotent)."""
    engine = engine_for(url)
    with engine.connect() as connection:
        if current_revision(connection) == HEAD_REVISION:
            return
    from alembic import command

    config = _alembic_config()
    with engine.connect() as connection:
        on_sqlite = connection.dialect.name == "sqlite"
        if on_sqlite:
            # A migration that changes a constraint rebuilds the table on SQLite (Alembic's
            # batch mode: copy, drop, rename). With foreign keys enforced, dropping it would
            # cascade to every row that references it: drafts, votes and claims. The pragma
            # only takes effect outside a transaction, so it goes to the driver's connection
            # before SQLAlchemy begins one.
            _sqlite_pragma(connection, "foreign_keys=OFF")
        try:
            with connection.begin():
                if not on_sqlite:
                    # Concurrent first runs would otherwise race to create the same tables.
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(724242)")
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                broken = (
                    connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if on_sqlite
                    else []
                )
                if broken:
                    raise RuntimeError(
                        f"migrating {safe_url(url)} left {len(broken)} row(s) whose foreign key "
                        f"points nowhere (first: {tuple(broken[0])}); nothing was changed"
                    )
        finally:
            if on_sqlite:
                _sqlite_pragma(connection, "foreign_keys=ON")


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    """Run `PRAGMA pragma` on the driver's connection, outside any transaction."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def migrations_head() -> str | None:
    """The newest migration as Alembic reads it from MIGRATIONS."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def require_current(url: str) -> None:
    """Fail with an actionable message when the schema is missing or behind."""
    with engine_for(url).connect() as connection:
        current = current_revision(connection)
    if current != HEAD_REVISION:
        raise ConfigurationError(
            f"the draft store at {safe_url(url)} is at schema {current or 'none'}, "
            f"expected {HEAD_REVISION}: run `drafts-pipeline db upgrade`"
        )


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)
