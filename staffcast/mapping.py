"""The source mapping: how an agency's own tables, columns and codes become staffcast's.

A mapping is a small YAML file (see ``docs/source-contract.md`` and
``docs/mapping-example.yaml``)::

    tables:
      shift_requests:
        table: scheduling.shifts          # or query: "SELECT ...", or file: "Shifts.csv"
        columns:
          request_id: shift_id            # a source column ...
          shift_hours: {sql: "EXTRACT(EPOCH FROM end_time - start_time) / 3600"}  # ... or SQL
        values:
          role: {Registered Nurse: RN, RN-ICU: RN}
        exclude:
          role: [CNA]
        formats:
          shift_start: ["%m/%d/%Y %I:%M %p"]
        delimiter: ";"                    # files only; default: sniffed from the header line

Decisions:

- **Identity by default.** A table or column the mapping does not list keeps staffcast's own
  name, so an empty mapping (:data:`IDENTITY`) reads today's sources unchanged.
- **Everything in the file is text.** The YAML is read without PyYAML's implicit typing, so
  codes such as ``Y``, ``N``, ``no``, ``on`` or ``01`` stay the text the source holds (YAML 1.1
  would turn ``no`` into False and ``01`` into 1); only an empty value or ``~`` means "none".
- **Strict keys, all problems at once.** The shape is a pydantic schema with no extra keys; an
  unknown key, table or column is reported with its key path, its line in the file, what was
  expected and close matches (difflib), e.g. ``line 7, tables.shift_requests.columns.shift_strat:
  not a column of shift_requests (close: shift_start)``. Every problem of the file is reported
  in one :class:`MappingError` paragraph.
- **Value maps only where staffcast has fixed codes**: ``role`` -> RN/LPN, ``status`` ->
  filled/unfilled/cancelled, ``response`` -> accepted/declined/no_response (targets matched
  case-insensitively and written canonically), and ``facility_type`` (free text). Source values
  are compared by the parsing layer after stripping, collapsing blanks and case-folding, so two
  keys that differ only that way must not disagree.
- **Excluded values** (out of scope, e.g. CNA shifts) apply to text columns; a value cannot be
  both mapped and excluded.
- **Formats** (``strftime``) apply to timestamp and date columns only; they are tried after ISO
  8601 by :mod:`data_contracts.parsing`.
- **Source kinds.** ``table``/``query``/SQL expressions need a database, ``file``/``delimiter``
  a folder; :meth:`SourceMapping.check_kind` says so before anything is read (a ``delimiter`` on
  a database is harmless and ignored).
- ``query`` must be one ``SELECT`` (or ``WITH ... SELECT``); it is read as a sub-query
  ``(query) AS src``, so a second statement cannot run. A ``file`` is a name inside the source
  folder, never a path.

The mapping never names what staffcast must not read: only the columns of
:data:`SOURCE_COLUMNS` are selected, whatever else the source holds (minimum necessary).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from data_contracts.parsing import ParseOptions
from staffcast.errors import StaffcastError

__all__ = [
    "IDENTITY",
    "OPTIONAL_TABLES",
    "SOURCE_COLUMNS",
    "ColumnSource",
    "MappingError",
    "SourceMapping",
    "TableMapping",
    "close_matches",
    "load_mapping",
]

SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "facilities": (
        "facility_id",
        "facility_type",
        "region",
        "timezone",
        "active_from",
        "active_to",
    ),
    "shift_requests": (
        "request_id",
        "facility_id",
        "role",
        "shift_start",
        "shift_hours",
        "requested_at",
        "status",
        "cancelled_at",
    ),
    "nurses": ("nurse_id", "role", "region", "on_call", "hired_on", "separated_on"),
    "shift_offers": ("request_id", "offered_at", "response"),
}
"""The columns staffcast reads from each source table, and nothing else (the source contract)."""

OPTIONAL_TABLES = frozenset({"shift_offers"})
"""Tables a source may lack (read as empty), unless the mapping names them."""

TEMPORAL_COLUMNS = frozenset(
    {
        "shift_start",
        "requested_at",
        "cancelled_at",
        "offered_at",
        "active_from",
        "active_to",
        "hired_on",
        "separated_on",
    }
)
"""Columns holding instants or dates: the only ones ``formats`` applies to."""

TEXT_COLUMNS = frozenset(
    {
        "facility_id",
        "facility_type",
        "region",
        "timezone",
        "request_id",
        "role",
        "status",
        "nurse_id",
        "response",
    }
)
"""Columns holding ids or codes: the only ones ``exclude`` applies to."""

VALUE_TARGETS: dict[str, tuple[str, ...] | None] = {
    "role": ("RN", "LPN"),
    "status": ("filled", "unfilled", "cancelled"),
    "response": ("accepted", "declined", "no_response"),
    "facility_type": None,  # free text
}
"""Columns a value map may recode, and the staffcast values it may produce (None: any text)."""

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
"""Delimiters sniffed in CSV files, with their names for messages."""

_DOCS = "docs/source-contract.md"


class MappingError(StaffcastError):
    """The source mapping file is missing, not YAML, or not a valid mapping; or it asks for
    something the source cannot do (SQL on a folder of files). Nothing was read or published."""


def close_matches(word: str, choices: Iterable[str], cutoff: float = 0.6) -> list[str]:
    """Up to three of ``choices`` close to ``word`` (case-insensitive), best first.

    A choice that shares a distinctive part of the name comes first (``start`` of
    ``shift_start`` in ``start_time``, ``hired`` of ``hired_on`` in ``hire_date``: a part, or the
    start of one, that no other choice has): agencies rename columns more often than they
    misspell them. Then difflib's similar spellings.
    """
    choices = list(dict.fromkeys(choices))

    def parts(name: str) -> list[str]:
        return [p for p in re.split(r"[\W_]+", name.casefold()) if len(p) > 2]

    def shares(part: str, choice: str) -> bool:
        return any(
            p == part
            or (min(len(p), len(part)) >= 4 and (p.startswith(part) or part.startswith(p)))
            for p in parts(choice)
        )

    found: list[str] = []
    for part in parts(word):
        having = [c for c in choices if shares(part, c)]
        if len(having) == 1 and having[0] not in found:
            found.append(having[0])
    folded: dict[str, str] = {}
    for choice in choices:
        folded.setdefault(choice.casefold(), choice)
    for match in difflib.get_close_matches(word.casefold(), folded, 3, cutoff):
        if folded[match] not in found:
            found.append(folded[match])
    return found[:3]


def _quoted_list(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


# --- checking keys ------------------------------------------------------------------------------

_SECTIONS: dict[str, tuple[frozenset[str] | None, str]] = {
    "columns": (None, "a column of {table}"),
    "values": (frozenset(VALUE_TARGETS), "a column with a value map ({allowed})"),
    "exclude": (TEXT_COLUMNS, "a text column of {table} ({allowed})"),
    "formats": (TEMPORAL_COLUMNS, "a timestamp or date column of {table} ({allowed})"),
}

Path_ = tuple[str, ...]


def _key_problems(tables: Mapping[str, Any]) -> list[tuple[Path_, str]]:
    """Unknown tables, and keys of columns/values/exclude/formats that are not (the right kind
    of) columns of their table, each with its key path and close matches."""
    problems: list[tuple[Path_, str]] = []
    for table, mapped in tables.items():
        path = ("tables", str(table))
        if table not in SOURCE_COLUMNS:
            problems.append((path, _unknown("table", str(table), list(SOURCE_COLUMNS))))
            continue
        if not isinstance(mapped, Mapping):
            continue
        for section, (kinds, expected) in _SECTIONS.items():
            keys = mapped.get(section)
            if not isinstance(keys, Mapping):
                continue
            columns = SOURCE_COLUMNS[table]
            allowed = [c for c in columns if kinds is None or c in kinds]
            for key in keys:
                if key in allowed:
                    continue
                what = expected.format(table=table, allowed=", ".join(allowed) or "none")
                if key in columns:
                    message = f"'{key}' is not {what}"
                else:
                    message = _unknown(f"column of {table}", str(key), allowed)
                problems.append(((*path, section, str(key)), message))
    return problems


def _unknown(what: str, key: str, allowed: list[str]) -> str:
    close = close_matches(key, allowed)
    hint = f" (close: {', '.join(close)})" if close else ""
    return f"'{key}' is not a {what}{hint}; expected one of {', '.join(allowed)}"


# --- the schema -------------------------------------------------------------------------------


class ColumnSource(BaseModel):
    """Where one staffcast column comes from: a source column, or a SQL expression over the
    source table's columns (databases only). In YAML a plain string is a column name; the long
    forms are ``{column: name}`` and ``{sql: "expression"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    sql: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_of(self) -> ColumnSource:
        given = [k for k in ("column", "sql") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                'give either a source column name or {sql: "expression"}, not '
                + (" and ".join(given) if given else "nothing")
            )
        text = (self.column if self.column is not None else self.sql) or ""
        if not text.strip():
            raise ValueError("the column name or SQL expression is empty")
        return self

    def text(self) -> str:
        """The column name or the SQL expression, for messages and descriptions."""
        return self.column if self.column is not None else (self.sql or "")


def _as_list(value: Any) -> Any:
    """A lone YAML string where a list is expected: a list of one."""
    if isinstance(value, dict):
        return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
    return value


def _fold(value: str) -> str:
    """A source value as the parsing layer compares it: stripped, blanks collapsed, case-folded."""
    return " ".join(value.split()).casefold()


class TableMapping(BaseModel):
    """How one staffcast table is read from the source: where from, and its columns, codes,
    excluded values and formats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = Field(None, description="schema-qualified table or view name")
    query: str | None = Field(None, description="a SQL SELECT (databases only)")
    file: str | None = Field(None, description="the file's name in the source folder")
    columns: dict[str, ColumnSource] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    exclude: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    formats: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    delimiter: str | None = Field(None, description="CSV delimiter (files only)")

    @field_validator("exclude", "formats", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.strip().split(".")
        if not 1 <= len(parts) <= 2 or not all(p.strip() for p in parts):
            raise ValueError(
                f"'{value}' is not a table name: expected 'table' or 'schema.table' "
                "(for anything else, use query:)"
            )
        return ".".join(p.strip() for p in parts)

    @field_validator("query")
    @classmethod
    def _select_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        query = value.strip().rstrip(";").strip()
        if not re.match(r"(?is)^(select|with)\b", query):
            raise ValueError("expected one SQL SELECT statement (starting with SELECT or WITH)")
        return query

    @field_validator("file")
    @classmethod
    def _file_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or "/" in value or "\\" in value:
            raise ValueError(
                f"'{value}' is not a file name: give the name of a file in the source folder, "
                "without a path"
            )
        return value.strip()

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
        value = named.get(value.strip().lower(), value) if value.strip() else value
        if len(value) != 1 or value in '"\r\n':
            raise ValueError(
                f"expected one character such as ',', ';', '|' or \"\\t\" (tab), not {value!r}"
            )
        return value

    @field_validator("values")
    @classmethod
    def _targets(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        problems = []
        checked: dict[str, dict[str, str]] = {}
        for column, codes in value.items():
            allowed = VALUE_TARGETS.get(column)
            canonical = {t.casefold(): t for t in allowed or ()}
            recoded: dict[str, str] = {}
            seen: dict[str, tuple[str, str]] = {}
            for source, target in codes.items():
                if allowed is not None and target.strip().casefold() not in canonical:
                    problems.append(
                        f"{column}: '{source}' -> '{target}' is not a staffcast {column} "
                        f"(expected one of {', '.join(allowed)})"
                    )
                    continue
                target = canonical.get(target.strip().casefold(), target.strip())
                earlier = seen.get(_fold(source))
                if earlier is not None and earlier[1] != target:
                    problems.append(
                        f"{column}: '{earlier[0]}' and '{source}' are the same source value "
                        f"(compared without case and extra blanks) but map to '{earlier[1]}' and "
                        f"'{target}'"
                    )
                seen[_fold(source)] = (source, target)
                recoded[source] = target
            checked[column] = recoded
        if problems:
            raise ValueError("; ".join(problems))
        return checked

    @model_validator(mode="after")
    def _one_source(self) -> TableMapping:
        given = [k for k in ("table", "query", "file") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give one of table, query or file, not {' and '.join(given)}: a table is read "
                "from one place"
            )
        for column, excluded in self.exclude.items():
            mapped = {_fold(s) for s in self.values.get(column, {})}
            both = [v for v in excluded if _fold(v) in mapped]
            if both:
                raise ValueError(
                    f"{_quoted_list(both)} of {column} is both mapped under values and excluded; "
                    "a value is either recoded or out of scope"
                )
        return self

    def source(self, column: str) -> ColumnSource:
        """Where ``column`` (a staffcast name) comes from; staffcast's name when not mapped."""
        return self.columns.get(column) or ColumnSource(column=column)

    def origin(self, table: str) -> str:
        """Where the table is read from, in words (``scheduling.shifts``, ``query``)."""
        if self.query is not None:
            return "query (" + _short(self.query) + ")"
        return self.table or self.file or table


def _short(sql: str, limit: int = 80) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SourceMapping(BaseModel):
    """The whole mapping: per staffcast table, how it is read. Tables not listed are read
    under staffcast's own names (see :data:`IDENTITY`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tables: dict[str, TableMapping] = Field(default_factory=dict)
    _origin: str = PrivateAttr("")

    @property
    def origin(self) -> str:
        """The file the mapping was loaded from ('' when built in code)."""
        return self._origin

    @model_validator(mode="after")
    def _known_keys(self, info: ValidationInfo) -> SourceMapping:
        if (info.context or {}).get("keys_checked"):
            return self
        problems = _key_problems({n: t.model_dump() for n, t in self.tables.items()})
        if problems:
            raise ValueError("; ".join(f"{_dotted(p)}: {m}" for p, m in problems))
        return self

    def table(self, name: str) -> TableMapping:
        """The mapping of staffcast table ``name`` (an empty one when not listed)."""
        return self.tables.get(name) or TableMapping()

    def locates(self, name: str) -> bool:
        """Whether the mapping says where table ``name`` is (so it must exist)."""
        mapped = self.tables.get(name)
        return mapped is not None and any(
            v is not None for v in (mapped.table, mapped.query, mapped.file)
        )

    def parse_options(self, table: str) -> ParseOptions:
        """How the parsing layer reads ``table``'s values: value maps, excluded values and
        timestamp formats (staffcast's defaults when the mapping has none)."""
        mapped = self.table(table)
        return ParseOptions(
            values={c: dict(codes) for c, codes in mapped.values.items()},
            exclude={c: frozenset(v) for c, v in mapped.exclude.items()},
            formats={c: tuple(f) for c, f in mapped.formats.items()},
        )

    def check_kind(self, kind: Literal["database", "folder"]) -> None:
        """Raise :class:`MappingError` for keys the source kind cannot honour (SQL on a folder,
        a file on a database), all of them in one paragraph."""
        problems = []
        for name, mapped in self.tables.items():
            where = f"tables.{name}"
            if kind == "folder":
                for key in ("table", "query"):
                    if getattr(mapped, key) is not None:
                        problems.append(
                            f"{where}.{key} needs a database, but the source is a folder of "
                            f"files (use file: to name {name}'s file)"
                        )
                for column, source in mapped.columns.items():
                    if source.sql is not None:
                        problems.append(
                            f"{where}.columns.{column} is a SQL expression, which needs a "
                            "database; a folder source maps columns to file columns only "
                            f"(compute {column} in the export)"
                        )
            elif mapped.file is not None:
                problems.append(
                    f"{where}.file names a file, but the source is a database (use table: or "
                    "query:)"
                )
        if problems:
            raise MappingError(
                f"The source mapping{_from(self.origin)} does not fit a {kind} source: "
                + "; ".join(problems)
                + ". Fix the mapping and run again; nothing was read or published."
            )

    def describe(self) -> str:
        """The mapping in use, in words, one line per table (for ``staffcast validate``).

        ``shift_requests <- scheduling.shifts: request_id <- shift_id, shift_hours <- SQL
        EXTRACT(...); role values: Registered Nurse -> RN; excluded: role in CNA``.
        """
        if not self.tables:
            return "No source mapping: staffcast's own table and column names."
        lines = []
        for table in SOURCE_COLUMNS:
            mapped = self.tables.get(table)
            if mapped is None:
                continue
            parts = []
            columns = [
                f"{c} <- {'SQL ' + _short(s.sql) if s.sql is not None else s.column}"
                for c, s in mapped.columns.items()
            ]
            if columns:
                parts.append(", ".join(columns) + " (other columns: own names)")
            for column, codes in mapped.values.items():
                shown = ", ".join(f"{s} -> {t}" for s, t in codes.items())
                parts.append(f"{column} values: {shown}")
            for column, excluded in mapped.exclude.items():
                parts.append(f"excluded: {column} in {', '.join(excluded)}")
            for column, formats in mapped.formats.items():
                parts.append(f"{column} formats: {' or '.join(formats)}")
            if mapped.delimiter is not None:
                parts.append(
                    f"delimiter {DELIMITERS.get(mapped.delimiter, repr(mapped.delimiter))}"
                )
            lines.append(f"{table} <- {mapped.origin(table)}: " + ("; ".join(parts) or "as is"))
        rest = [t for t in SOURCE_COLUMNS if t not in self.tables]
        if rest:
            lines.append(f"{', '.join(rest)}: staffcast's own table and column names")
        return "\n".join(lines)


IDENTITY = SourceMapping()
"""No mapping: every table and column under staffcast's own name."""


def _from(origin: str) -> str:
    return f" '{origin}'" if origin else ""


# --- loading ------------------------------------------------------------------------------------


class _TextLoader(yaml.SafeLoader):
    """PyYAML's safe loader without implicit typing: every scalar is text except empty / ~."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class _Lines:
    """Line numbers of the YAML file's keys by key path, and keys given twice."""

    lines: dict[Path_, int]
    repeated: list[tuple[Path_, int]]

    def of(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def _key_lines(node: yaml.Node | None) -> _Lines:
    found = _Lines({}, [])

    def walk(node: yaml.Node, path: Path_) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                child = (*path, name)
                if child in found.lines:
                    found.repeated.append((child, key.start_mark.line + 1))
                found.lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found.lines.setdefault((*path, str(index)), item.start_mark.line + 1)
                walk(item, (*path, str(index)))

    if node is not None:
        walk(node, ())
    return found


def _dotted(path: Iterable[Any]) -> str:
    parts = []
    for part in path:
        text = str(part)
        parts.append(text if re.fullmatch(r"[\w-]+", text) else f"'{text}'")
    return ".".join(parts) or "(top level)"


_FIELDS: dict[str, list[str]] = {
    "": list(SourceMapping.model_fields),
    "table": list(TableMapping.model_fields),
    "column": list(ColumnSource.model_fields),
}


def _pydantic_problems(exc: ValidationError) -> list[tuple[Path_, str]]:
    """pydantic's errors as (key path, what to fix)."""
    problems = []
    for error in exc.errors(include_url=False):
        path = tuple(str(p) for p in error["loc"] if p != "[key]")
        kind = error["type"]
        if kind == "extra_forbidden":
            level = "" if len(path) == 1 else ("column" if "columns" in path[:-1] else "table")
            allowed = _FIELDS[level]
            message = _unknown("mapping key here", path[-1], allowed)
        elif kind == "missing":
            message = "required"
        elif kind in ("dict_type", "model_type"):
            message = "expected a mapping of keys to values"
            if len(path) >= 4 and path[2] == "columns":
                message = 'expected a source column name or {sql: "expression"}'
        elif kind in ("list_type", "tuple_type"):
            message = "expected a list of text values"
        elif kind == "string_type":
            message = "expected text"
        elif kind == "value_error":
            message = str(error["msg"]).removeprefix("Value error, ")
        else:
            message = str(error["msg"])
        problems.append((path, message))
    return problems


def mapping_from_data(data: Any, origin: str = "") -> SourceMapping:
    """A :class:`SourceMapping` from parsed YAML (or an equivalent dict), every problem of it
    reported at once in a :class:`MappingError` naming ``origin``."""
    return _validated(data, origin, _Lines({}, []))


def _validated(data: Any, origin: str, lines: _Lines) -> SourceMapping:
    problems: list[tuple[Path_, str]] = [
        (path, f"'{path[-1]}' is given twice (the second one would silently win)")
        for path, _ in lines.repeated
    ]
    if data is None:
        data = {}
    if isinstance(data, Mapping) and isinstance(data.get("tables"), Mapping):
        problems += _key_problems(data["tables"])
    elif isinstance(data, Mapping) and data.get("tables") is None and "tables" in data:
        data = {**data, "tables": {}}
    if not isinstance(data, Mapping):
        problems.append(((), "expected a mapping with one key, tables"))
        mapping = None
    else:
        try:
            mapping = SourceMapping.model_validate(data, context={"keys_checked": True})
            mapping._origin = origin
        except ValidationError as exc:
            problems += _pydantic_problems(exc)
            mapping = None
    if problems or mapping is None:
        raise MappingError(_problems_message(origin, problems, lines))
    return mapping


def _problems_message(origin: str, problems: list[tuple[Path_, str]], lines: _Lines) -> str:
    def where(path: Path_) -> str:
        line = lines.of(path)
        return (f"line {line}, " if line else "") + _dotted(path)

    ordered = sorted(problems, key=lambda p: (lines.of(p[0]) or 0, p[0]))
    listed = "; ".join(f"{where(path)}: {message}" for path, message in ordered)
    return (
        f"The source mapping{_from(origin)} is not valid: {listed}. Fix the file (its keys are "
        f"described in {_DOCS}) and run again; nothing was read or published."
    )


def load_mapping(path: str | Path) -> SourceMapping:
    """Read and check the YAML mapping file at ``path``.

    Raises :class:`MappingError` (one paragraph) for a missing or unreadable file, YAML that
    does not parse (with the line), and every key, table, column or value the schema refuses
    (with the key path, the line, what was expected and close matches).
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(
            f"The source mapping file '{path}' does not exist. Check the path given with "
            f"--mapping or STAFFCAST_SOURCE_MAPPING (an example: docs/mapping-example.yaml)."
        ) from None
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"The source mapping file '{path}' is not UTF-8 text (byte offset {exc.start}); "
            "save it as UTF-8 and run again."
        ) from None
    except OSError as exc:
        raise MappingError(
            f"The source mapping file '{path}' cannot be read ({exc.strerror or exc})."
        ) from None
    try:
        node = yaml.compose(text, Loader=_TextLoader)
        data = yaml.load(text, Loader=_TextLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MappingError(
            f"The source mapping file '{path}' is not valid YAML{at}: {problem}. Check the "
            "indentation and quote values holding ':' or '#' (an example: "
            "docs/mapping-example.yaml)."
        ) from None
    return _validated(data, str(path), _key_lines(node))
