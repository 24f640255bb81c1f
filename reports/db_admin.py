"""Reader roles for the reporting database on PostgreSQL (``staffcast db grant-reader``).

A reader (a dashboard, a recruiter's spreadsheet connection) gets SELECT on the ``current_*``
views and nothing else: no base table, no ``current_quarantined_row`` (quarantined rows carry
source keys), no writes, no CREATE in the schema. PostgreSQL views run with their owner's
rights, so the views work without access to the tables behind them.

Create the role yourself, as a database administrator, so its password never passes through
staffcast::

    CREATE ROLE dashboards LOGIN PASSWORD '...';   -- or \\password dashboards in psql
    staffcast db grant-reader dashboards --reporting postgresql+psycopg://owner@host/reporting

Run it as the owner of the reporting tables. It is idempotent. Migrations keep readers working:
after every migration, roles that can read ``current_forecast_run`` get SELECT on the reader
views a migration added (:func:`extend_reader_grants`, called by reports/migrations/env.py).

SQLite has no roles: protect a SQLite reporting file with file permissions, or give readers a
copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, inspect, text

from reports.schema import SCHEMA_REVISION, TABLES, VIEWS, schema_revision
from staffcast.errors import StaffcastError

__all__ = [
    "HIDDEN_VIEWS",
    "READER_VIEWS",
    "ReaderGrant",
    "ReaderGrantError",
    "extend_reader_grants",
    "grant_reader",
]

#: Views a reader must not see: quarantined rows hold source keys (request ids).
HIDDEN_VIEWS: tuple[str, ...] = ("current_quarantined_row",)
#: Views a reader role gets SELECT on.
READER_VIEWS: tuple[str, ...] = tuple(view for view in VIEWS if view not in HIDDEN_VIEWS)
#: Relations a reader gets no privilege on (besides HIDDEN_VIEWS).
_PRIVATE_TABLES: tuple[str, ...] = (*TABLES, "alembic_version")
_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


class ReaderGrantError(StaffcastError):
    """A reader role cannot be set up as asked; nothing was changed."""


@dataclass(frozen=True)
class ReaderGrant:
    """What :func:`grant_reader` left in place.

    ``views``: the views the role may SELECT. ``leaks``: privileges the role still holds by
    other ways than a direct grant (membership of another role, grants to PUBLIC), which
    staffcast does not revoke; empty when the role reads the views alone.
    """

    role: str
    schema: str
    views: tuple[str, ...]
    leaks: tuple[str, ...]


def _require_postgresql(connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        raise ReaderGrantError(
            f"The reporting database is {connection.dialect.name}, which has no roles: a reader "
            "of a SQLite file can read every table in it. Protect the file with file "
            "permissions (read-only for readers), or publish to PostgreSQL and use "
            "grant-reader there."
        )


def _check_role(connection: Connection, role: str) -> None:
    found = connection.execute(
        text(
            "SELECT r.rolsuper, pg_has_role(r.rolname, c.relowner, 'MEMBER') AS owns "
            "FROM pg_roles AS r CROSS JOIN pg_class AS c "
            "WHERE r.rolname = :role AND c.oid = to_regclass('forecast_run')"
        ),
        {"role": role},
    ).one_or_none()
    if found is None:
        exists = connection.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
        ).scalar()
        if not exists:
            raise ReaderGrantError(
                f"There is no PostgreSQL role {role!r}. Create it first as an administrator, "
                f"e.g. CREATE ROLE {_quote(connection, role)} LOGIN PASSWORD '...'; staffcast "
                "does not create roles, so a password never passes through it."
            )
        raise ReaderGrantError(
            "The reporting tables do not exist yet: run 'staffcast db upgrade' first."
        )
    if found.rolsuper:
        raise ReaderGrantError(
            f"Role {role!r} is a superuser and reads every table whatever is granted: use a "
            "plain LOGIN role for readers."
        )
    if found.owns:
        raise ReaderGrantError(
            f"Role {role!r} owns the reporting tables (or is a member of their owner) and reads "
            "them whatever is granted: use a separate LOGIN role for readers."
        )


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _existing_views(connection: Connection, names: tuple[str, ...]) -> list[str]:
    present = set(inspect(connection).get_view_names())
    return [name for name in names if name in present]


def grant_reader(engine: Engine, role: str) -> ReaderGrant:
    """Make existing PostgreSQL ``role`` a reader of the ``current_*`` views, and only that.

    Grants CONNECT on the database, USAGE on the schema and SELECT on :data:`READER_VIEWS`;
    revokes every privilege ``role`` was granted directly on the reporting tables,
    ``alembic_version``, ``current_quarantined_row`` and the quarantined_row id sequence, CREATE
    on the schema, and anything but SELECT on the reader views. Idempotent; one transaction.

    Raises :class:`ReaderGrantError` on SQLite, for a role that does not exist, is a superuser
    or owns the tables, and when the schema is not at this version's revision.
    """
    with engine.begin() as connection:
        _require_postgresql(connection)
        revision = schema_revision(connection)
        if revision != SCHEMA_REVISION:
            raise ReaderGrantError(
                f"The reporting database is at schema revision {revision or 'none'}, not "
                f"{SCHEMA_REVISION}: run 'staffcast db upgrade' first."
            )
        _check_role(connection, role)
        schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        database = connection.execute(text("SELECT current_database()")).scalar_one()
        grantee = _quote(connection, role)
        quote = connection.dialect.identifier_preparer.quote

        private = [
            *(name for name in _PRIVATE_TABLES if inspect(connection).has_table(name)),
            *_existing_views(connection, HIDDEN_VIEWS),
        ]
        views = _existing_views(connection, READER_VIEWS)
        statements = [
            f"GRANT CONNECT ON DATABASE {quote(database)} TO {grantee}",
            f"GRANT USAGE ON SCHEMA {quote(schema)} TO {grantee}",
            f"REVOKE CREATE ON SCHEMA {quote(schema)} FROM {grantee}",
            f"REVOKE ALL ON TABLE {', '.join(map(quote, private))} FROM {grantee}",
            f"REVOKE ALL ON TABLE {', '.join(map(quote, views))} FROM {grantee}",
            f"GRANT SELECT ON TABLE {', '.join(map(quote, views))} TO {grantee}",
        ]
        sequence = connection.execute(
            text("SELECT pg_get_serial_sequence('quarantined_row', 'id')")
        ).scalar()
        if sequence:  # already quoted and schema-qualified
            statements.append(f"REVOKE ALL ON SEQUENCE {sequence} FROM {grantee}")
        for statement in statements:
            connection.exec_driver_sql(statement)

        leaks = [
            f"{privilege} on {name}"
            for name, privilege in connection.execute(
                text(
                    "SELECT n.name, p.privilege FROM unnest(CAST(:names AS text[])) AS n(name) "
                    "CROSS JOIN unnest(CAST(:privileges AS text[])) AS p(privilege) "
                    "WHERE has_table_privilege(:role, quote_ident(:schema) || '.' || "
                    "quote_ident(n.name), p.privilege) ORDER BY 1, 2"
                ),
                {
                    "names": private,
                    "privileges": list(_TABLE_PRIVILEGES),
                    "role": role,
                    "schema": schema,
                },
            )
        ]
        if connection.execute(
            text("SELECT has_schema_privilege(:role, :schema, 'CREATE')"),
            {"role": role, "schema": schema},
        ).scalar_one():
            leaks.append(f"CREATE on schema {schema}")
    return ReaderGrant(role, schema, tuple(views), tuple(leaks))


def extend_reader_grants(connection: Connection) -> list[str]:
    """Give every role that can SELECT ``current_forecast_run`` SELECT on all reader views.

    Run after migrations (reports/migrations/env.py), so that a view a migration added, or one
    it had to drop and re-create, is readable by the existing readers. The owner and PUBLIC
    are left alone. Returns the roles granted to; a no-op off PostgreSQL.
    """
    if connection.dialect.name != "postgresql":
        return []
    roles = list(
        connection.execute(
            text(
                "SELECT DISTINCT r.rolname FROM pg_class AS c "
                "CROSS JOIN LATERAL aclexplode(c.relacl) AS a "
                "JOIN pg_roles AS r ON r.oid = a.grantee "
                "WHERE c.oid = to_regclass('current_forecast_run') "
                "AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner "
                "ORDER BY r.rolname"
            )
        ).scalars()
    )
    views = _existing_views(connection, READER_VIEWS)
    if roles and views:
        quote = connection.dialect.identifier_preparer.quote
        connection.exec_driver_sql(
            f"GRANT SELECT ON TABLE {', '.join(map(quote, views))} "
            f"TO {', '.join(map(quote, roles))}"
        )
    return roles
