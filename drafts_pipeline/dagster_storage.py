"""Dagster's PostgreSQL storages with one small pool of connections per process.

dagster-postgres opens a new connection for every read and write of its run, event log and
schedule storages (SQLAlchemy's `NullPool`), so that an instance holds no connection while idle.
For this pipeline that is the wrong trade: a daemon-launched run writes hundreds of events, and
300 tasks through the daemon opened about 2,300 connections, 150 a second while the runs
started. Each costs the server a new backend process and the caller a round trip, on the same two
cores that run the pipeline.

These subclasses, named in `deploy/dagster.yaml`, give the three storages of one process one
engine with a pool of `POOL_SIZE` connections kept open (more at once when threads need them,
closed after use). They are otherwise dagster-postgres's own classes, so everything that checks
for them still finds them. Storages authenticated by a token provider keep Dagster's default:
a pooled connection would outlive its token.

A connection is never shared across `fork`: a process that inherits the pool opens its own.
"""

import os
import threading
from typing import Any

from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

POOL_SIZE = 3
MAX_OVERFLOW = 10
RECYCLE_S = 3600

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(postgres_url: str) -> Engine:
    """The pooled, autocommitting engine of `postgres_url` that this process's storages share."""
    with _engines_lock:
        engine = _engines.get(postgres_url)
        if engine is None:
            engine = create_pg_engine(
                postgres_url,
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                pool_recycle=RECYCLE_S,
                pool_pre_ping=True,
            )
            _refuse_inherited_connections(engine)
            _engines[postgres_url] = engine
        return engine


def _refuse_inherited_connections(engine: Engine) -> None:
    """A connection opened by another process (the parent of a fork) is dropped from this
    process's pool without being closed, so the parent's session goes on undisturbed."""

    @event.listens_for(engine, "connect")
    def _opened(dbapi_connection: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise exc.DisconnectionError("connection inherited from another process")


def _storage_arguments(inst_data: Any, config_value: Any) -> dict[str, Any]:
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "inst_data": inst_data,
        "token_provider": get_token_provider_from_config(config_value),
    }


class _SharedPool:
    """Makes a dagster-postgres storage use the process's shared pool (listed first in bases)."""

    postgres_url: str
    _engine: Engine
    _token_provider: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._token_provider is None:
            self._engine.dispose()
            self._engine = shared_engine(self.postgres_url)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> Any:
        return cls(**_storage_arguments(inst_data, config_value))

    def dispose(self) -> None:
        """Also closes the idle connections; a storage still in use opens new ones."""
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()


class PooledPostgresRunStorage(_SharedPool, PostgresRunStorage):
    """`PostgresRunStorage` on this process's shared connection pool."""


class PooledPostgresEventLogStorage(_SharedPool, PostgresEventLogStorage):
    """`PostgresEventLogStorage` on this process's shared connection pool."""


class PooledPostgresScheduleStorage(_SharedPool, PostgresScheduleStorage):
    """`PostgresScheduleStorage` on this process's shared connection pool."""
