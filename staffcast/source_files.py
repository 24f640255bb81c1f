"""Read the source tables from a folder of files, or open any source by name (SPEC §2).

A folder source holds one file per table: ``facilities``, ``shift_requests`` and ``nurses``
(required) and ``shift_offers`` (optional), each as ``<table>.csv`` or ``<table>.parquet``, or
under the name the source mapping gives (``file: "Shift Export.csv"``). Only the columns of
:data:`staffcast.source.SOURCE_COLUMNS` are read (under the mapped header names, if any), never
names, phone numbers or notes (minimum necessary), and the rows are handed to validation as read:
the exact as_of cut happens in :func:`data_contracts.validate.validate_extract` after parsing, as
for a database.

Decisions, all of them stops (``ValidationFailed``, nothing published) with one paragraph that
names the file, the rule and an example:

- **All missing files and columns at once** (rules ``required_tables``, ``required_columns``):
  every table's file is found and every header read before one stop lists each missing file
  (with what the folder holds and close matches) and each missing column (with the file's
  columns and close matches).
- **One file per table** (rule ``one_file_per_table``): when both ``shift_requests.csv`` and
  ``shift_requests.parquet`` exist staffcast does not pick one; the data owner removes the stale
  export. File names are exact and case-sensitive; other forms (``.xlsx``, ``.csv.gz``) are not
  read, and the message lists what the folder holds. A mapped ``file`` ending in ``.parquet`` is
  Parquet, any other a delimited text file.
- **Columns** are matched by name ignoring case and surrounding blanks (``Request_ID ``,
  ``REQUEST_ID`` and ``request_id`` are one column; two headers that match one name are
  ambiguous, rule ``file_format``). Extra columns are never read.
- **Delimiter**: the mapping's ``delimiter``, else sniffed from the header line among ``,``,
  ``;``, tab and ``|``: the one that splits the header into the most fields (at least two) with
  the same number of fields in the first data row, preferring one whose fields hold every column
  staffcast reads. When two delimiters are equally plausible staffcast does not guess (rule
  ``file_format``): set ``delimiter:`` in the mapping. The delimiter used is reported in
  ``SourceExtract.described``.
- **CSV is text in UTF-8** (a UTF-8 byte-order mark is fine). staffcast does not guess other
  encodings: a wrong guess (Windows-1252 read as Latin-1, say) silently turns one facility or
  region into another, which is worse than stopping. A value that is not UTF-8 in a column
  staffcast reads stops the run (rule ``utf8_encoding``) with the line and byte offset of the
  file's first bad byte; re-save the file as "CSV UTF-8". Bytes in columns staffcast never reads
  are not inspected. UTF-16 files (Excel's "Unicode text") are named as such.
- **CSV values are text**: every column is read as a string, nothing is inferred; an empty field
  is missing, ``NA`` or ``null`` stay text (the contracts quarantine what they cannot parse).
  Quoted fields may hold delimiters and line breaks.
- **Not a CSV / not Parquet** (rule ``file_format``): a binary file, a Parquet file or Excel
  workbook named ``.csv``, a compressed file, an empty file, or a row with more or fewer fields
  than the header (reported with its row number, never its text: it may hold names). Typed
  Parquet columns (timestamps, dates, booleans, numbers) are passed on as typed values, like a
  database driver's, and parsed by the same code.
- **No SQL on files**: a mapping with ``table``, ``query`` or SQL expressions on a folder source
  stops before reading (:class:`staffcast.mapping.MappingError`).

Speed and memory: CSV files are read with pyarrow's multi-threaded reader, only the needed
columns and all as strings (about 10 million shift_requests rows in a few seconds); the slower
single-threaded pass that finds the row number of a malformed line runs only after an error.
shift_requests and shift_offers are never held whole (:class:`StreamedFile`): a first read
through when the source is read counts the rows and stops on a malformed file as a whole read
would, then the contracts read the file chunk by chunk (a million rows of whole 16 MB text
blocks, or Parquet batches), as they read a database's stream.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from staffcast.errors import SourceUnavailable, ValidationFailed
from staffcast.mapping import DELIMITERS, IDENTITY, SourceMapping, TableMapping, close_matches
from staffcast.source import (
    OPTIONAL_TABLES,
    SOURCE_COLUMNS,
    STREAMED_TABLES,
    MissingColumn,
    RawTable,
    SourceExtract,
    as_of_instant,
    connect_source,
    missing_columns_text,
    read_source,
    shape_stop,
)

__all__ = ["FILE_SUFFIXES", "StreamedFile", "open_source", "read_folder"]

logger = logging.getLogger(__name__)

FILE_SUFFIXES = (".csv", ".parquet")
"""The file forms a folder source may hold, one per table."""

_SNIFF_BYTES = 64 * 1024
_CSV_BLOCK_BYTES = 16 << 20
_NOTHING_PUBLISHED = "The run stopped before publishing anything."
# Leading bytes of files that are often exported by mistake under a .csv name.
_MAGIC = (
    (b"PAR1", "a Parquet file, not a CSV text file; rename it to {table}.parquet"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?), not a CSV text file"),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook, not a CSV text file"),
    (b"\x1f\x8b", "a gzip-compressed file; decompress it to a plain CSV file"),
)


def open_source(
    source: str,
    as_of: date,
    agency_timezone: str,
    mapping: SourceMapping | None = None,
) -> SourceExtract:
    """Read the extract from a folder of files or from a database URL.

    ``source`` is an existing folder (read with :func:`read_folder`) or a SQLAlchemy URL
    (``sqlite:///ops.db``, ``postgresql+psycopg://...``), read with
    :func:`staffcast.source.read_source` on an engine that is disposed afterwards. ``mapping``
    says where staffcast's tables and columns are in it (default: staffcast's own names).
    Anything else raises :class:`SourceUnavailable` with a message saying what was expected.
    """
    path = Path(source).expanduser()
    if "://" not in source:
        if path.is_dir():
            return read_folder(path, as_of, agency_timezone, mapping)
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
            return read_source(conn, as_of, agency_timezone, mapping)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _TableFile:
    """One table's file and the header names staffcast reads from it."""

    table: str
    path: Path
    parquet: bool
    header: list[str]  # the file's column names, as written
    delimiter: str | None = None  # CSV only
    how: str = ""  # how the delimiter was chosen: sniffed or from the mapping
    names: tuple[str, ...] = ()  # the raw header name of each staffcast column, in order

    def words(self) -> str:
        """The file and its delimiter, for ``SourceExtract.described``."""
        if self.parquet:
            return f"{self.table} <- {self.path.name}"
        name = DELIMITERS.get(self.delimiter or ",", repr(self.delimiter))
        return f"{self.table} <- {self.path.name} ({name}-separated, {self.how})"


def read_folder(
    folder: Path,
    as_of: date,
    agency_timezone: str,
    mapping: SourceMapping | None = None,
) -> SourceExtract:
    """Read the needed columns of each table file in ``folder``, as strings (CSV) or typed
    values (Parquet), under staffcast's column names; rows are not cut at as_of here
    (validation does the exact cut).

    Raises :class:`ValidationFailed` for missing tables or columns (all of them in one
    message), two files for one table, a file that is not CSV or Parquet, a CSV that is not
    UTF-8 or whose delimiter is ambiguous; :class:`SourceUnavailable` when the folder or a file
    cannot be read at all; :class:`staffcast.mapping.MappingError` for SQL in the mapping.
    """
    mapping = mapping or IDENTITY
    mapping.check_kind("folder")
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceUnavailable(f"The source folder '{folder}' does not exist or is not a folder.")
    try:
        present = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise SourceUnavailable(f"Could not list the source folder '{folder}' ({exc}).") from exc

    problems: list[str] = []
    files: dict[str, _TableFile | None] = {}
    for table in SOURCE_COLUMNS:
        mapped = mapping.table(table)
        path = _table_file(folder, table, present, mapped, mapping.locates(table), problems)
        files[table] = (
            None if path is None else _matched(_header(path, table, mapped), mapped, problems)
        )
    if problems:
        raise shape_stop(problems, mapping)

    tables: dict[str, RawTable] = {}
    rows: dict[str, int] = {}
    for table, found in files.items():
        if found is not None and table in STREAMED_TABLES:
            streamed = StreamedFile(found)
            rows[table] = streamed.checked()
            tables[table] = streamed
        else:
            frame = _empty(table) if found is None else _read(found)
            rows[table] = len(frame)
            tables[table] = frame
    logger.info("read folder %s: %s", folder, ", ".join(f"{t}={n}" for t, n in rows.items()))
    described = [mapping.describe()] if mapping.tables else []
    used = [f.words() for f in files.values() if f is not None]
    described.append("Files: " + "; ".join(used))
    return SourceExtract(
        as_of=as_of,
        as_of_utc=as_of_instant(as_of, agency_timezone),
        tables=tables,
        options={table: mapping.parse_options(table) for table in SOURCE_COLUMNS},
        described="\n".join(described),
    )


def _empty(table: str) -> pd.DataFrame:
    """An optional table without a file: no rows."""
    return pd.DataFrame({c: pd.Series(dtype="string[pyarrow]") for c in SOURCE_COLUMNS[table]})


def _table_file(
    folder: Path,
    table: str,
    present: list[str],
    mapped: TableMapping,
    named: bool,
    problems: list[str],
) -> Path | None:
    """The one file of ``table`` in ``folder``; None for a missing optional table or after
    recording a problem."""
    if mapped.file is not None:
        if mapped.file in present:
            return folder / mapped.file
        close = close_matches(mapped.file, present)
        hint = f"close: {', '.join(repr(c) for c in close)}; " if close else ""
        problems.append(
            f"Source table '{table}' has no file '{mapped.file}' in '{folder}' (rule: "
            f"required_tables): {hint}the folder holds: {_listing(present)} (fix "
            f"tables.{table}.file; file names are case-sensitive)."
        )
        return None
    found = [f"{table}{suffix}" for suffix in FILE_SUFFIXES if f"{table}{suffix}" in present]
    if len(found) > 1:
        problems.append(
            f"Source table '{table}' has two files in '{folder}': {' and '.join(found)} (rule: "
            "one_file_per_table). staffcast reads one file per table and will not guess which "
            "is current; remove or rename the stale one."
        )
        return None
    if found:
        return folder / found[0]
    if table in OPTIONAL_TABLES and not named:
        return None
    close = close_matches(table, [Path(p).stem for p in present])
    hint = (
        f" (close: {', '.join(repr(p) for p in present if Path(p).stem in close)})" if close else ""
    )
    problems.append(
        f"Source table '{table}' has no file in '{folder}' (rule: required_tables): expected "
        f"{table}.csv or {table}.parquet, or the file named under tables.{table}.file in the "
        f"source mapping{hint}. The folder holds: {_listing(present)}. staffcast needs "
        "facilities, shift_requests and nurses (shift_offers is optional); file names are "
        "case-sensitive."
    )
    return None


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


def _header(path: Path, table: str, mapped: TableMapping) -> _TableFile:
    """The file's header (and, for CSV, its delimiter); format problems stop here."""
    if path.suffix.lower() == ".parquet":
        try:
            with pq.ParquetFile(path) as parquet:
                names = list(parquet.schema_arrow.names)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise _format_error(
                path, table, f"not a valid Parquet file ({_parquet_hint(path, exc)})"
            ) from None
        except OSError as exc:
            raise SourceUnavailable(f"Could not read the source file '{path}' ({exc}).") from exc
        return _TableFile(table, path, True, names)
    _check_is_text(path, table)
    wanted = [mapped.source(c).text() for c in SOURCE_COLUMNS[table]]
    if mapped.delimiter is not None:
        delimiter, how = mapped.delimiter, "from the mapping"
    else:
        delimiter, how = _sniff(path, table, wanted), "sniffed"
    header = _csv_header(path, table, delimiter)
    return _TableFile(table, path, False, header, delimiter, how)


def _fold(name: str) -> str:
    return name.strip().casefold()


def _matched(found: _TableFile, mapped: TableMapping, problems: list[str]) -> _TableFile | None:
    """``found`` with the raw header name of each staffcast column; None after recording the
    columns it lacks."""
    by_name: dict[str, list[str]] = {}
    for name in found.header:
        by_name.setdefault(_fold(name), []).append(name)
    names, missing, repeated = [], [], []
    for column in SOURCE_COLUMNS[found.table]:
        wanted = mapped.source(column).text()
        same = by_name.get(_fold(wanted), [])
        if not same:
            missing.append(MissingColumn(column, wanted if column in mapped.columns else None))
        elif len(same) > 1:
            repeated.append(wanted)
        else:
            names.append(same[0])
    if repeated:
        raise _format_error(
            found.path,
            found.table,
            f"ambiguous: column(s) {', '.join(repeated)} appear twice (names are compared "
            "without case and surrounding blanks)",
        )
    if missing:
        present = [name.strip() for name in found.header]
        where = f" (file '{found.path}')"
        problems.append(missing_columns_text(found.table, where, missing, present))
        return None
    return _TableFile(
        found.table,
        found.path,
        found.parquet,
        found.header,
        found.delimiter,
        found.how,
        tuple(names),
    )


def _read(found: _TableFile) -> pd.DataFrame:
    frame = _read_parquet(found) if found.parquet else _read_csv(found)
    frame.columns = list(SOURCE_COLUMNS[found.table])
    return frame


@dataclass(frozen=True)
class StreamedFile:
    """A large table's file read in chunks of about ``chunk_rows`` rows when iterated, under
    staffcast's column names (a national agency's shift_requests never all in memory: the
    contracts parse each chunk into compact typed columns, as for a database's stream).

    CSV is read by pyarrow's streaming reader with the same options as a whole read (every
    value text); Parquet by row groups and batches, with the file's own types.
    """

    found: _TableFile
    selected: tuple[str, ...] = ()  # staffcast's names of the columns read (default: all)
    chunk_rows: int = 1_000_000
    block_bytes: int = _CSV_BLOCK_BYTES  # CSV text parsed at a time (a chunk is whole blocks)

    @property
    def _columns(self) -> tuple[str, ...]:
        return self.selected or SOURCE_COLUMNS[self.found.table]

    @property
    def _raw(self) -> list[str]:
        """The file's header names of :attr:`_columns`, in their order."""
        raw_of = dict(zip(SOURCE_COLUMNS[self.found.table], self.found.names, strict=True))
        return [raw_of[c] for c in self._columns]

    def __iter__(self) -> Iterator[pd.DataFrame]:
        parts: list[pa.RecordBatch] = []
        held = 0
        empty = True
        for batch in self._batches():
            parts.append(batch)
            held += batch.num_rows
            if held >= self.chunk_rows:
                empty = False
                yield self._frame(parts)
                parts, held = [], 0
        if parts or empty:
            yield self._frame(parts)

    def narrowed(self, columns: tuple[str, ...]) -> StreamedFile:
        """The same rows with only ``columns`` (the first pass over the request ids)."""
        return replace(self, selected=columns)

    def checked(self) -> int:
        """Read the whole file once, keeping nothing, so that a file that is not valid CSV or
        Parquet, or not UTF-8 in a column staffcast reads, stops the run when the source is
        read, as a whole read would; returns its rows."""
        return sum(batch.num_rows for batch in self._batches())

    def _frame(self, parts: list[pa.RecordBatch]) -> pd.DataFrame:
        if parts:
            data = pa.Table.from_batches(parts)
        else:  # no rows: the columns as text
            data = pa.table({name: pa.array([], pa.string()) for name in self._raw})
        frame = data.to_pandas(types_mapper=_string_dtype)
        frame.columns = list(self._columns)
        return frame

    def _batches(self) -> Iterator[pa.RecordBatch]:
        found, raw = self.found, self._raw
        if found.parquet:
            yield from _parquet_batches(found, raw, self.chunk_rows)
            return
        delimiter = found.delimiter or ","
        with (
            _csv_errors(found, raw),
            _arrow_csv_stream(found.path, raw, delimiter, self.block_bytes) as reader,
        ):
            yield from reader


# --- CSV ---------------------------------------------------------------------------------------


def _read_csv(found: _TableFile) -> pd.DataFrame:
    """The needed columns of a CSV file, every value a string, empty fields missing."""
    names = list(found.names)
    with _csv_errors(found, names):
        data = _arrow_csv(found.path, names, found.delimiter or ",", use_threads=True)
    return data.to_pandas(types_mapper=_string_dtype)


@contextlib.contextmanager
def _csv_errors(found: _TableFile, raw_names: list[str]) -> Iterator[None]:
    """A malformed CSV or one that is not UTF-8 stops the run (with the row or byte); one that
    cannot be read is unavailable."""
    try:
        yield
    except pa.ArrowInvalid as exc:
        delimiter = found.delimiter or ","
        raise _csv_error(found.path, found.table, raw_names, delimiter, exc) from None
    except OSError as exc:
        raise SourceUnavailable(f"Could not read the source file '{found.path}' ({exc}).") from exc


def _csv_options(
    raw_names: list[str],
    delimiter: str,
    use_threads: bool,
    on_bad_row: object = None,
    block_bytes: int = _CSV_BLOCK_BYTES,
) -> dict[str, object]:
    return {
        "read_options": pa_csv.ReadOptions(use_threads=use_threads, block_size=block_bytes),
        "parse_options": pa_csv.ParseOptions(
            delimiter=delimiter,
            newlines_in_values=True,
            invalid_row_handler=on_bad_row,  # type: ignore[arg-type]
        ),
        "convert_options": pa_csv.ConvertOptions(
            include_columns=raw_names,
            column_types={name: pa.string() for name in raw_names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    }


def _arrow_csv(
    path: Path,
    raw_names: list[str],
    delimiter: str,
    use_threads: bool,
    on_bad_row: object = None,
) -> pa.Table:
    return pa_csv.read_csv(path, **_csv_options(raw_names, delimiter, use_threads, on_bad_row))


def _arrow_csv_stream(
    path: Path, raw_names: list[str], delimiter: str, block_bytes: int
) -> pa_csv.CSVStreamingReader:
    """The same read as :func:`_arrow_csv`, a block of text at a time."""
    options = _csv_options(raw_names, delimiter, use_threads=True, block_bytes=block_bytes)
    return pa_csv.open_csv(path, **options)


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


def _records(path: Path, table: str, delimiter: str, count: int) -> list[list[str]]:
    """The first ``count`` records of a CSV file split by ``delimiter`` (quotes honoured)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            records = []
            for record in reader:
                records.append(record)
                if len(records) == count:
                    break
            return records
    except UnicodeDecodeError:
        raise _utf8_error(path, table, None) from None
    except csv.Error as exc:
        raise _format_error(path, table, f"not readable as CSV ({exc})") from None


def _csv_header(path: Path, table: str, delimiter: str) -> list[str]:
    records = _records(path, table, delimiter, 1)
    header = records[0] if records else []
    if not header or not any(name.strip() for name in header):
        raise _format_error(path, table, "without a header line naming its columns")
    return header


def _sniff(path: Path, table: str, wanted: list[str]) -> str:
    """The delimiter among ``,``, ``;``, tab and ``|`` that splits the header into the most
    fields (two at least), with as many in the first data row; one whose fields hold every
    ``wanted`` name is preferred. A tie stops the run: staffcast does not guess."""
    plausible: dict[str, int] = {}
    complete: set[str] = set()
    for delimiter in DELIMITERS:
        records = _records(path, table, delimiter, 2)
        header = records[0] if records else []
        if len(header) < 2 or (len(records) > 1 and len(records[1]) != len(header)):
            continue
        plausible[delimiter] = len(header)
        if {_fold(w) for w in wanted} <= {_fold(h) for h in header}:
            complete.add(delimiter)
    if complete:
        plausible = {d: n for d, n in plausible.items() if d in complete}
    if not plausible:
        return ","  # one column at most: the missing columns are reported with the header
    most = max(plausible.values())
    best = [d for d, n in plausible.items() if n == most]
    if len(best) > 1:
        split = " and ".join(f"{DELIMITERS[d]} ({most} fields)" for d in best)
        raise ValidationFailed(
            f"The file '{path}' of source table '{table}' has a header line that splits as well "
            f"by {split} (rule: file_format), and staffcast does not guess the delimiter. Set "
            f'it under tables.{table}.delimiter in the source mapping (e.g. delimiter: ";") '
            f"and run again. {_NOTHING_PUBLISHED}"
        )
    return best[0]


def _csv_error(
    path: Path, table: str, raw_names: list[str], delimiter: str, exc: pa.ArrowInvalid
) -> Exception:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text:
        return _utf8_error(path, table, text)
    if "CSV parse error" in text:
        bad_rows: list[pa_csv.InvalidRow] = []

        def remember(row: pa_csv.InvalidRow) -> str:
            bad_rows.append(row)
            return "error"

        with contextlib.suppress(pa.ArrowInvalid):
            _arrow_csv(path, raw_names, delimiter, use_threads=False, on_bad_row=remember)
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


@contextlib.contextmanager
def _parquet_errors(found: _TableFile) -> Iterator[None]:
    """A file that is not Parquet stops the run (rule file_format); one that cannot be read is
    unavailable."""
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        hint = _parquet_hint(found.path, exc)
        raise _format_error(found.path, found.table, f"not a valid Parquet file ({hint})") from None
    except OSError as exc:
        raise SourceUnavailable(f"Could not read the source file '{found.path}' ({exc}).") from exc


def _read_parquet(found: _TableFile) -> pd.DataFrame:
    """The needed columns of a Parquet file, with the file's own types."""
    with _parquet_errors(found), pq.ParquetFile(found.path) as parquet:
        data = parquet.read(columns=list(found.names))
    return data.to_pandas(types_mapper=_string_dtype)


def _parquet_batches(found: _TableFile, raw: list[str], rows: int) -> Iterator[pa.RecordBatch]:
    """The columns ``raw`` of a Parquet file, ``rows`` at a time, with the file's own types."""
    with _parquet_errors(found), pq.ParquetFile(found.path) as parquet:
        yield from parquet.iter_batches(batch_size=rows, columns=raw)


def _parquet_hint(path: Path, exc: Exception) -> str:
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head and b"\x00" not in head:
        return f"it looks like text; if it is a CSV file, name it {path.stem}.csv"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
