"""Read the source tables from a folder of files, or open any source by name (SPEC §2).

A folder source holds one file per table: ``facilities``, ``shift_requests`` and ``nurses``
(required) and ``shift_offers`` (optional), each as ``<table>.csv`` or ``<table>.parquet``.
Only the columns of :data:`staffcast.source.SOURCE_COLUMNS` are read, never names, phone numbers
or notes (minimum necessary), and the rows are handed to validation as read: the exact as_of cut
happens in :func:`data_contracts.validate.validate_extract` after parsing, as for a database.

Decisions, all of them stops (``ValidationFailed``, nothing published) with one paragraph that
names the file, the rule and an example:

- **One file per table** (rule ``one_file_per_table``): when both ``shift_requests.csv`` and
  ``shift_requests.parquet`` exist staffcast does not pick one; the data owner removes the stale
  export. File names are exact and case-sensitive; other forms (``.xlsx``, ``.csv.gz``) are not
  read, and the message lists what the folder holds (rule ``required_tables``).
- **Columns** are matched by name after stripping surrounding blanks (``request_id, role``
  exports); a missing one stops the run (rule ``required_columns``, the database's wording).
  Extra columns are never read.
- **CSV is text in UTF-8** (a UTF-8 byte-order mark is fine). staffcast does not guess other
  encodings: a wrong guess (Windows-1252 read as Latin-1, say) silently turns one facility or
  region into another, which is worse than stopping. A value that is not UTF-8 in a column
  staffcast reads stops the run (rule ``utf8_encoding``) with the line and byte offset of the
  file's first bad byte; re-save the file as "CSV UTF-8". Bytes in columns staffcast never reads
  are not inspected. UTF-16 files (Excel's "Unicode text") are named as such.
- **CSV values are text**: every column is read as a string, nothing is inferred; an empty field
  is missing, ``NA`` or ``null`` stay text (the contracts quarantine what they cannot parse).
  Quoted fields may hold commas and line breaks.
- **Not a CSV / not Parquet** (rule ``file_format``): a binary file, a Parquet file or Excel
  workbook named ``.csv``, a compressed file, an empty file, or a row with more or fewer fields
  than the header (reported with its row number, never its text: it may hold names). Typed
  Parquet columns (timestamps, dates, booleans, numbers) are passed on as typed values, like a
  database driver's, and parsed by the same code.

Speed: CSV files are read with pyarrow's multi-threaded reader, only the needed columns and all
as strings (about 10 million shift_requests rows in a few seconds); the slower single-threaded
pass that finds the row number of a malformed line runs only after an error.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from staffcast.errors import SourceUnavailable, ValidationFailed
from staffcast.source import (
    OPTIONAL_TABLES,
    SOURCE_COLUMNS,
    SourceExtract,
    _missing_columns_error,
    as_of_instant,
    connect_source,
    read_source,
)

__all__ = ["FILE_SUFFIXES", "open_source", "read_folder"]

logger = logging.getLogger(__name__)

FILE_SUFFIXES = (".csv", ".parquet")
"""The file forms a folder source may hold, one per table."""

_SNIFF_BYTES = 64 * 1024
_NOTHING_PUBLISHED = "The run stopped before publishing anything."
# Leading bytes of files that are often exported by mistake under a .csv name.
_MAGIC = (
    (b"PAR1", "a Parquet file, not a CSV text file; rename it to {table}.parquet"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?), not a CSV text file"),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook, not a CSV text file"),
    (b"\x1f\x8b", "a gzip-compressed file; decompress it to a plain CSV file"),
)


def open_source(source: str, as_of: date, agency_timezone: str) -> SourceExtract:
    """Read the extract from a folder of files or from a database URL.

    ``source`` is an existing folder (read with :func:`read_folder`) or a SQLAlchemy URL
    (``sqlite:///ops.db``, ``postgresql+psycopg://...``), read with
    :func:`staffcast.source.read_source` on an engine that is disposed afterwards. Anything else
    raises :class:`SourceUnavailable` with a message saying what was expected.
    """
    path = Path(source).expanduser()
    if "://" not in source:
        if path.is_dir():
            return read_folder(path, as_of, agency_timezone)
        if path.exists():
            raise SourceUnavailable(
                f"The source '{source}' is a file, not a folder or a database URL. Pass a folder "
                "holding facilities, shift_requests and nurses as .csv or .parquet files, or a "
                f"SQLAlchemy URL (for a SQLite file: sqlite:///{path})."
            )
        raise SourceUnavailable(
            f"The source '{source}' is neither an existing folder nor a database URL. Pass a "
            "folder holding facilities, shift_requests and nurses as .csv or .parquet files, or "
            "a SQLAlchemy URL such as sqlite:///path/to/ops.db or "
            "postgresql+psycopg://user@host/dbname."
        )
    engine = connect_source(source)
    try:
        with engine.connect() as conn:
            return read_source(conn, as_of, agency_timezone)
    finally:
        engine.dispose()


def read_folder(folder: Path, as_of: date, agency_timezone: str) -> SourceExtract:
    """Read the needed columns of each table file in ``folder``, as strings (CSV) or typed
    values (Parquet); rows are not cut at as_of here (validation does the exact cut).

    Raises :class:`ValidationFailed` for a missing table or column, two files for one table, a
    file that is not CSV or Parquet, or a CSV that is not UTF-8; :class:`SourceUnavailable` when
    the folder or a file cannot be read at all.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceUnavailable(f"The source folder '{folder}' does not exist or is not a folder.")
    try:
        present = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise SourceUnavailable(f"Could not list the source folder '{folder}' ({exc}).") from exc

    tables = {table: _read_table(folder, table, present) for table in SOURCE_COLUMNS}
    logger.info("read folder %s: %s", folder, ", ".join(f"{t}={len(f)}" for t, f in tables.items()))
    return SourceExtract(
        as_of=as_of,
        as_of_utc=as_of_instant(as_of, agency_timezone),
        tables=dict(tables.items()),  # a fresh dict typed as SourceExtract.tables wants
    )


def _read_table(folder: Path, table: str, present: list[str]) -> pd.DataFrame:
    path = _table_file(folder, table, present)
    if path is None:  # an optional table without a file: no rows
        return pd.DataFrame({c: pd.Series(dtype="string[pyarrow]") for c in SOURCE_COLUMNS[table]})
    if path.suffix == ".csv":
        return _read_csv(path, table)
    return _read_parquet(path, table)


def _table_file(folder: Path, table: str, present: list[str]) -> Path | None:
    """The one file of ``table`` in ``folder``; None for a missing optional table."""
    found = [f"{table}{suffix}" for suffix in FILE_SUFFIXES if f"{table}{suffix}" in present]
    if len(found) > 1:
        raise ValidationFailed(
            f"Source table '{table}' has two files in '{folder}': {' and '.join(found)} (rule: "
            "one_file_per_table). staffcast reads one file per table and will not guess which "
            f"is current; remove or rename the stale one. {_NOTHING_PUBLISHED}"
        )
    if found:
        return folder / found[0]
    if table in OPTIONAL_TABLES:
        return None
    raise ValidationFailed(
        f"Source table '{table}' has no file in '{folder}' (rule: required_tables): expected "
        f"{table}.csv or {table}.parquet. The folder holds: {_listing(present)}. staffcast "
        "needs facilities, shift_requests and nurses (shift_offers is optional); file names "
        f"are case-sensitive. {_NOTHING_PUBLISHED}"
    )


def _listing(names: Iterable[str], limit: int = 20) -> str:
    names = list(names)
    if not names:
        return "no files"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _format_error(path: Path, table: str, problem: str) -> ValidationFailed:
    return ValidationFailed(
        f"The file '{path}' of source table '{table}' is {problem} (rule: file_format). Export "
        f"the table as a UTF-8 CSV file or as Parquet and run again. {_NOTHING_PUBLISHED}"
    )


def _missing_columns(path: Path, table: str, header: list[str]) -> ValidationFailed | None:
    missing = [c for c in SOURCE_COLUMNS[table] if c not in header]
    if not missing:
        return None
    message = str(_missing_columns_error(table, missing, header))
    named = message.replace(f"'{table}'", f"'{table}' (file '{path}')", 1)
    return ValidationFailed(named if named != message else f"File '{path}': {message}")


# --- CSV ---------------------------------------------------------------------------------------


def _read_csv(path: Path, table: str) -> pd.DataFrame:
    """The needed columns of a CSV file, every value a string, empty fields missing."""
    _check_is_text(path, table)
    raw_header = _csv_header(path, table)
    header = [name.strip() for name in raw_header]
    error = _missing_columns(path, table, header)
    if error is not None:
        raise error
    wanted = SOURCE_COLUMNS[table]
    repeated = sorted({c for c in wanted if header.count(c) > 1})
    if repeated:
        raise _format_error(path, table, f"ambiguous: column(s) {', '.join(repeated)} appear twice")
    raw_names = [raw_header[header.index(c)] for c in wanted]
    try:
        data = _arrow_csv(path, raw_names, use_threads=True)
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, table, raw_names, exc) from None
    except OSError as exc:
        raise SourceUnavailable(f"Could not read the source file '{path}' ({exc}).") from exc
    frame = data.to_pandas(types_mapper=_string_dtype)
    frame.columns = list(wanted)
    return frame


def _arrow_csv(
    path: Path, raw_names: list[str], use_threads: bool, on_bad_row: object = None
) -> pa.Table:
    return pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(use_threads=use_threads, block_size=16 << 20),
        parse_options=pa_csv.ParseOptions(
            newlines_in_values=True,
            invalid_row_handler=on_bad_row,  # type: ignore[arg-type]
        ),
        convert_options=pa_csv.ConvertOptions(
            include_columns=raw_names,
            column_types={name: pa.string() for name in raw_names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _string_dtype(arrow_type: pa.DataType) -> pd.StringDtype | None:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype("pyarrow")
    return None


def _check_is_text(path: Path, table: str) -> None:
    """Stop on files that are not text at all, before any decoding error can mislead."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise SourceUnavailable(f"Could not read the source file '{path}' ({exc}).") from exc
    if not head:
        raise _format_error(path, table, "empty (not even a header line)")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise _format_error(path, table, what.format(table=table))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValidationFailed(
            f"The file '{path}' of source table '{table}' is UTF-16 encoded, not UTF-8 (rule: "
            "utf8_encoding): its first bytes are a UTF-16 byte-order mark. staffcast does not "
            'guess encodings; save the file as "CSV UTF-8" and run again. '
            f"{_NOTHING_PUBLISHED}"
        )
    if b"\x00" in head:
        offset = head.index(b"\x00")
        raise _format_error(
            path, table, f"binary data, not CSV text (a NUL byte at byte offset {offset})"
        )


def _csv_header(path: Path, table: str) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise _utf8_error(path, table, None) from None
    except csv.Error as exc:
        raise _format_error(path, table, f"not readable as CSV ({exc})") from None
    if not header or not any(name.strip() for name in header):
        raise _format_error(path, table, "without a header line naming its columns")
    return header


def _csv_error(path: Path, table: str, raw_names: list[str], exc: pa.ArrowInvalid) -> Exception:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text:
        return _utf8_error(path, table, text)
    if "CSV parse error" in text:
        bad_rows: list[pa_csv.InvalidRow] = []

        def remember(row: pa_csv.InvalidRow) -> str:
            bad_rows.append(row)
            return "error"

        with contextlib.suppress(pa.ArrowInvalid):
            _arrow_csv(path, raw_names, use_threads=False, on_bad_row=remember)
        if bad_rows:
            row = bad_rows[0]
            where = f"row {row.number}" if row.number is not None else "a row"
            return _format_error(
                path,
                table,
                f"not a valid CSV file: {where} (counting the header as row 1) has "
                f"{row.actual_columns} fields where the header has {row.expected_columns} (an "
                "unquoted comma or an unclosed quote?)",
            )
    # Never echo pyarrow's copy of the offending row: it may hold names or notes.
    return _format_error(path, table, f"not a valid CSV file ({text.split(': ', 2)[0][:200]})")


def _utf8_error(path: Path, table: str, detail: str | None) -> ValidationFailed:
    bad = _first_bad_utf8(path)
    if bad is None:  # pragma: no cover - pyarrow and Python agree on UTF-8
        where = f"({detail})" if detail else ""
    else:
        line, offset, byte = bad
        where = f"the first bad byte, 0x{byte:02X}, is on line {line} at byte offset {offset}"
    return ValidationFailed(
        f"The file '{path}' of source table '{table}' is not UTF-8 text (rule: utf8_encoding): "
        f"{where}. staffcast does not guess encodings (a wrong guess silently changes ids and "
        'names); save the file as "CSV UTF-8" and run again. ' + _NOTHING_PUBLISHED
    )


def _first_bad_utf8(path: Path) -> tuple[int, int, int] | None:
    """(line number, byte offset, byte) of the first byte of ``path`` that is not UTF-8."""
    offset = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, offset + exc.start, line[exc.start]
            offset += len(line)
    return None


# --- Parquet -----------------------------------------------------------------------------------


def _read_parquet(path: Path, table: str) -> pd.DataFrame:
    """The needed columns of a Parquet file, with the file's own types."""
    wanted = list(SOURCE_COLUMNS[table])
    try:
        with pq.ParquetFile(path) as parquet:
            error = _missing_columns(path, table, parquet.schema_arrow.names)
            if error is not None:
                raise error
            data = parquet.read(columns=wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _format_error(
            path, table, f"not a valid Parquet file ({_parquet_hint(path, exc)})"
        ) from None
    except OSError as exc:
        raise SourceUnavailable(f"Could not read the source file '{path}' ({exc}).") from exc
    return data.to_pandas(types_mapper=_string_dtype)


def _parquet_hint(path: Path, exc: Exception) -> str:
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head and b"\x00" not in head:
        return f"it looks like text; if it is a CSV file, name it {path.stem}.csv"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
