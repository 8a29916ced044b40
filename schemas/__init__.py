"""Arrow schemas of every spacetime table, with validation on write and on read."""

from schemas.tables import (
    CLIPS,
    MANIFEST_COUNTS,
    PAIRS,
    REJECTS,
    SCHEMA_VERSION,
    SCORES,
    SOURCES,
    TABLES,
    schema_for,
)
from schemas.validate import (
    SchemaError,
    check_file,
    check_files,
    check_schema,
    check_table,
    conform,
    read_table,
    rows_to_table,
    write_table,
)

__all__ = [
    "CLIPS",
    "MANIFEST_COUNTS",
    "PAIRS",
    "REJECTS",
    "SCHEMA_VERSION",
    "SCORES",
    "SOURCES",
    "TABLES",
    "SchemaError",
    "check_file",
    "check_files",
    "check_schema",
    "check_table",
    "conform",
    "read_table",
    "rows_to_table",
    "schema_for",
    "write_table",
]
