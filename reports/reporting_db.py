"""The reporting database refusing a run: checked before any work, explained in one paragraph.

:func:`preflight` runs first in every weekly run, before the source is read: the schema is at
this version's revision (or migrated to it), the run's login may write every reporting table
(a write that is rolled back; on PostgreSQL the table privileges too), and for SQLite the file
passes ``PRAGMA quick_check`` and its disk has room. A refusal costs seconds, not a run.

:func:`refused` turns any error the database raised (at the start, during publish, after) into
:class:`staffcast.errors.ReportingUnavailable`: one paragraph naming the database (password
hidden), what it refused, why in plain words, and what to do. The kinds it knows:

========================= ===============================================================
read-only                 a read-only file, mount or ``mode=ro`` URI; a PostgreSQL standby
permission denied         a login role without INSERT/UPDATE/DELETE on the tables
disk full                 SQLite's disk or PostgreSQL's volume is out of space
server gone               connection refused, or the server stopped during the run
corrupt                   a file that is not a database, or a damaged one
lock held                 another program holds the write lock (SQLite) or a table lock
login refused             a wrong password or an unknown role
========================= ===============================================================
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine, make_url

from reports.schema import CHILD_TABLES, create_schema, table
from staffcast.errors import ReportingUnavailable, StaffcastError

__all__ = ["Refusal", "classify", "preflight", "refused", "sqlite_path"]

_NOT_PUBLISHED = "Nothing was published; the previous run stays current."
#: SQLite files that passed quick_check lately in this process (the CLI checks, then the flow).
_QUICK_CHECKED: dict[Path, float] = {}


@dataclass(frozen=True)
class Refusal:
    """A kind of refusal: what it means and what to do about it."""

    kind: str
    meaning: str
    advice: str


_KINDS = {
    "read-only": Refusal(
        "read-only",
        "the database is read-only (a read-only file, folder or mount, a mode=ro URI, or a "
        "PostgreSQL standby)",
        "Point --reporting (STAFFCAST_REPORTING_URL) at a writable database, or make the file, "
        "its folder or the mount writable for the user running staffcast.",
    ),
    "permission denied": Refusal(
        "permission denied",
        "the login may not write the reporting tables",
        "Run with the login that owns the reporting tables (readers get `staffcast db "
        "grant-reader`, writers need INSERT, UPDATE and DELETE on every reporting table), or "
        "fix the file's permissions.",
    ),
    "disk full": Refusal(
        "disk full",
        "the disk holding the database is full",
        "Free space on that disk (old reports, old runs) or move the database, then run again.",
    ),
    "server gone": Refusal(
        "server gone",
        "the database server did not answer or closed the connection",
        "Check that the server is running and reachable from this machine, then run again.",
    ),
    "corrupt": Refusal(
        "corrupt",
        "the file is not a SQLite database staffcast can read, or it is damaged",
        "Restore it from a backup, or move it aside so that the next run starts a new one "
        "(the report history in it is then lost to staffcast).",
    ),
    "lock held": Refusal(
        "lock held",
        "another program holds a lock on the database",
        "Find the program holding it (another staffcast run, a tool with an open write "
        "transaction) and let it finish, then run again.",
    ),
    "login refused": Refusal(
        "login refused",
        "the server refused the login (user or password)",
        "Check the user and password in the reporting URL.",
    ),
}
_SQLSTATES = {
    "25006": "read-only",  # read_only_sql_transaction
    "42501": "permission denied",  # insufficient_privilege
    "53100": "disk full",
    "57P01": "server gone",  # admin_shutdown
    "57P02": "server gone",  # crash_shutdown
    "57P03": "server gone",  # cannot_connect_now
    "08000": "server gone",
    "08001": "server gone",
    "08003": "server gone",
    "08006": "server gone",
    "55P03": "lock held",
    "28P01": "login refused",
    "28000": "login refused",
}
_PHRASES = (
    ("readonly database", "read-only"),
    ("read-only", "read-only"),
    ("permission denied", "permission denied"),
    ("access permission denied", "permission denied"),
    ("database or disk is full", "disk full"),
    ("no space left", "disk full"),
    ("file is not a database", "corrupt"),
    ("malformed", "corrupt"),
    ("database is locked", "lock held"),
    ("database table is locked", "lock held"),
    ("connection refused", "server gone"),
    ("server closed the connection", "server gone"),
    ("terminating connection", "server gone"),
    ("could not connect", "server gone"),
    ("connection is closed", "server gone"),
    ("the connection is lost", "server gone"),
    ("consuming input failed", "server gone"),
    ("password authentication failed", "login refused"),
    ("role .* does not exist", "login refused"),
)


def _driver_error(exc: BaseException) -> BaseException:
    return getattr(exc, "orig", None) or exc


def classify(exc: BaseException) -> Refusal | None:
    """The kind of refusal ``exc`` is, or None when it is none of the known kinds."""
    import re

    error = _driver_error(exc)
    state = getattr(error, "sqlstate", None)
    if state in _SQLSTATES:
        return _KINDS[_SQLSTATES[state]]
    if isinstance(error, OSError) and error.errno == 28:
        return _KINDS["disk full"]
    text = str(error).lower()
    for phrase, kind in _PHRASES:
        if re.search(phrase, text):
            return _KINDS[kind]
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return _KINDS["server gone"]
    return None


def _first_line(exc: BaseException, url: str) -> str:
    error = _driver_error(exc)
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    line = lines[0] if lines else type(error).__name__
    password = make_url(url).password
    if password:
        line = line.replace(str(password), "***")
    return f"{type(error).__name__}: {line[:300]}"


def where(url: str) -> str:
    """The reporting database for a message: a SQLite file's path, else the URL without its
    password."""
    from staffcast.source import redact_url

    path = sqlite_path(url)
    return f"{path} (SQLite)" if path is not None else redact_url(url)


def refused(
    exc: BaseException, url: str, doing: str, after: str = _NOT_PUBLISHED
) -> StaffcastError:
    """One paragraph for the reporting database at ``url`` refusing ``doing``."""
    kind = classify(exc)
    said = _first_line(exc, url)
    if kind is None:
        return ReportingUnavailable(
            f"The reporting database {where(url)} refused {doing} ({said}). Check the "
            f"URL, that the server is running and that the login may write it. {after}"
        )
    return ReportingUnavailable(
        f"The reporting database {where(url)} refused {doing}: {kind.meaning} "
        f"({said}). {kind.advice} {after}"
    )


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``file:`` URIs too), or None (another backend, memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if database in ("", ":memory:"):
        return None
    return Path(database).expanduser()


def _check_sqlite_file(path: Path, url: str, min_free_mb: float) -> None:
    """The file (when it exists) passes quick_check; its folder's disk has ``min_free_mb``."""
    folder = path.parent if path.parent.exists() else Path.cwd()
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < min_free_mb:
        raise ReportingUnavailable(
            f"The reporting database {where(url)} cannot take a run: its disk has "
            f"{free_mb:.0f} MB free, under STAFFCAST_REPORTING_MIN_FREE_MB={min_free_mb:g}. "
            f"{_KINDS['disk full'].advice} {_NOT_PUBLISHED}"
        )
    if not path.is_file() or time.monotonic() - _QUICK_CHECKED.get(path, -1e9) < 120:
        return
    import sqlite3

    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=3)
        try:
            verdict = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise refused(exc, url, "an integrity check (PRAGMA quick_check)") from None
    _QUICK_CHECKED[path] = time.monotonic()
    if verdict != ["ok"]:
        raise ReportingUnavailable(
            f"The reporting database {where(url)} failed its integrity check (PRAGMA "
            f"quick_check: {'; '.join(verdict)[:300]}): {_KINDS['corrupt'].meaning}. "
            f"{_KINDS['corrupt'].advice} {_NOT_PUBLISHED}"
        )


def _check_privileges(connection: sa.Connection) -> list[str]:
    """PostgreSQL: the reporting tables the login lacks a writer's privilege on."""
    needed: dict[str, tuple[str, ...]] = {"forecast_run": ("INSERT", "UPDATE", "DELETE")}
    needed.update({name: ("INSERT", "DELETE") for name in CHILD_TABLES})
    missing = []
    for name, privileges in needed.items():
        for privilege in privileges:
            allowed = connection.execute(
                sa.text("SELECT has_table_privilege(CAST(:t AS regclass), :p)"),
                {
                    "t": connection.dialect.identifier_preparer.format_table(table(name)),
                    "p": privilege,
                },
            ).scalar_one()
            if not allowed:
                missing.append(f"{privilege} on {name}")
    return missing


def preflight(engine: Engine, url: str, min_free_mb: float = 256.0) -> None:
    """Check the reporting database can take a run; raise one paragraph when it cannot.

    Cheap (a few reads and a rolled-back write; ``PRAGMA quick_check`` reads a SQLite file
    once), and nothing is left behind.
    """
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path, url, min_free_mb)
    try:
        create_schema(engine)
    except StaffcastError:
        raise
    except Exception as exc:  # noqa: BLE001 - driver errors of any kind mean one thing here
        raise refused(exc, url, "the schema check and migration") from exc
    forecast_run = table("forecast_run")
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                missing = _check_privileges(connection)
                if missing:
                    raise ReportingUnavailable(
                        f"The reporting database {where(url)} will not let this login "
                        f"write a run: it lacks {', '.join(missing[:4])}"
                        f"{' and more' if len(missing) > 4 else ''}. "
                        f"{_KINDS['permission denied'].advice} {_NOT_PUBLISHED}"
                    )
                connection.rollback()  # end the autobegun read
            with connection.begin() as transaction:
                if connection.dialect.name == "postgresql":  # a held lock: refuse, not hang
                    connection.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                connection.execute(
                    sa.update(forecast_run)
                    .where(forecast_run.c.run_id == "(staffcast preflight)")
                    .values(status="running")
                )
                connection.execute(
                    sa.insert(forecast_run).values(
                        run_id="(staffcast preflight)",
                        as_of=sa.func.current_date(),
                        status="failed",
                        started_at=sa.func.current_timestamp(),
                        parameters={},
                        code_version="preflight",
                        horizon_days=1,
                    )
                )
                transaction.rollback()
    except StaffcastError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise refused(exc, url, "a test write (rolled back)") from exc
