"""Validation of tables on write and on read, with errors that name the file and column."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tables import META_TABLE, META_VERSION, SCHEMA_VERSION, schema_for

log = logging.getLogger(__name__)


class SchemaError(ValueError):
    """A table does not match its spacetime schema."""

    def __init__(self, table: str, where: str, column: str | None, problem: str):
        self.table, self.where, self.column, self.problem = table, where, column, problem
        col = f", column {column!r}" if column else ""
        super().__init__(f"{table} table {where}{col}: {problem}")


def _types_compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected):
        return True
    if pa.types.is_null(actual):
        return True  # an all-null column written without type information
    if pa.types.is_large_binary(actual) and pa.types.is_binary(expected):
        return True
    if pa.types.is_large_string(actual) and pa.types.is_string(expected):
        return True
    if pa.types.is_list(expected) and (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
        return _types_compatible(actual.value_type, expected.value_type)
    if pa.types.is_timestamp(actual) and pa.types.is_timestamp(expected):
        return True
    return False


def check_schema(actual: pa.Schema, table: str, where: str = "(in memory)") -> None:
    """Raise :class:`SchemaError` if ``actual`` lacks a column of ``table`` or has a wrong type.

    Extra columns are allowed (schemas are extended by adding columns).
    """
    expected = schema_for(table)
    names = set(actual.names)
    for field in expected:
        if field.name not in names:
            if field.nullable:
                continue  # optional columns may be absent; readers fill nulls
            raise SchemaError(table, where, field.name, "required column is missing")
        got = actual.field(field.name).type
        if not _types_compatible(got, field.type):
            raise SchemaError(table, where, field.name, f"type is {got}, expected {field.type}")


def check_table(tbl: pa.Table, table: str, where: str = "(in memory)") -> None:
    """Check types and that required columns hold no nulls."""
    check_schema(tbl.schema, table, where)
    for field in schema_for(table):
        if not field.nullable and field.name in tbl.column_names:
            nulls = tbl.column(field.name).null_count
            if nulls:
                raise SchemaError(
                    table, where, field.name, f"{nulls} null value(s) in a required column"
                )


def conform(tbl: pa.Table, table: str, where: str = "(in memory)") -> pa.Table:
    """Validate ``tbl`` and return it cast to the table's schema (column order, types, metadata).

    Missing nullable columns are added as nulls; extra columns are kept after the schema's.
    """
    check_table(tbl, table, where)
    expected = schema_for(table)
    cols, fields = [], []
    for field in expected:
        if field.name in tbl.column_names:
            cols.append(tbl.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(tbl.num_rows, type=field.type))
        fields.append(field)
    for name in tbl.column_names:
        if name not in expected.names:
            cols.append(tbl.column(name))
            fields.append(tbl.schema.field(name))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields, metadata=expected.metadata))


def rows_to_table(rows: Sequence[Mapping[str, Any]], table: str) -> pa.Table:
    """Build a validated table from row dicts (missing nullable keys become nulls)."""
    schema = schema_for(table)
    extra: list[str] = []
    for r in rows:
        for k in r:
            if k not in schema.names and k not in extra:
                extra.append(k)
    if extra:
        raise SchemaError(table, "(rows)", extra[0], "column is not part of the schema")
    try:
        tbl = pa.Table.from_pylist([dict(r) for r in rows], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(table, "(rows)", None, str(e)) from e
    check_table(tbl, table)
    return tbl


def write_table(tbl: pa.Table, path: str, table: str, filesystem: Any = None) -> None:
    """Validate then write one Parquet file carrying the schema version."""
    tbl = conform(tbl, table, where=path)
    pq.write_table(tbl, path, filesystem=filesystem, compression="zstd")


def commit_table(tbl: pa.Table, path: str | os.PathLike, table: str) -> None:
    """:func:`write_table` to a hidden temporary name beside local ``path``, then rename: a
    reader (or a rerun after a crash) sees the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write_table(tbl, str(tmp), table)
    os.replace(tmp, path)


def filter_file(
    src: str | os.PathLike,
    keep: Callable[[pa.Table], Any],
    table: str,
    dst: str | os.PathLike | None = None,
) -> int:
    """Rewrite the local Parquet table ``src`` with only the rows where ``keep(tbl)`` is true,
    to ``dst`` (default: in place, atomically, untouched when nothing is dropped); no file is
    left or written when no row is kept. Returns the rows dropped."""
    src = Path(src)
    dst = src if dst is None else Path(dst)
    tbl = pq.read_table(src)
    kept = tbl.filter(keep(tbl))
    dropped = tbl.num_rows - kept.num_rows
    if dst == src and dropped == 0:
        return 0
    if kept.num_rows == 0:
        if dst == src:
            src.unlink()
        return dropped
    commit_table(kept, dst, table)
    return dropped


def read_table(path: str, table: str, filesystem: Any = None, **kwargs: Any) -> pa.Table:
    """Read one Parquet file and validate it against ``table``."""
    check_file(path, table, filesystem=filesystem)
    return pq.read_table(path, filesystem=filesystem, **kwargs)


def check_file(path: str, table: str, filesystem: Any = None) -> None:
    """Validate a Parquet file's footer (schema and version) without reading its data."""
    try:
        schema = pq.read_schema(path, filesystem=filesystem)
    except Exception as e:  # noqa: BLE001 - any unreadable footer is a schema error
        raise SchemaError(table, path, None, f"not a readable Parquet file ({e})") from e
    meta = schema.metadata or {}
    version = meta.get(META_VERSION)
    if version is not None and version.decode() != SCHEMA_VERSION:
        raise SchemaError(
            table,
            path,
            None,
            f"schema version {version.decode()}, this code reads {SCHEMA_VERSION}",
        )
    written_as = meta.get(META_TABLE)
    if written_as is not None and written_as.decode() not in (
        table,
        "pairs" if table == "clips" else table,
    ):
        raise SchemaError(table, path, None, f"file holds a {written_as.decode()!r} table")
    check_schema(schema, table, where=path)


def check_files(paths: Iterable[str], table: str, filesystem: Any = None) -> list[str]:
    """Validate many files; returns the list for chaining."""
    out = list(paths)
    for p in out:
        check_file(p, table, filesystem=filesystem)
    return out
