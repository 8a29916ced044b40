"""Reading a job's output tables in the tests, each file validated against its schema."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from schemas.validate import check_files


def read(out: Path, table: str) -> list[dict]:
    """Every row of ``out/table/*.parquet``; every file must validate against ``table``'s schema."""
    files = sorted(str(p) for p in (out / table).glob("*.parquet"))
    check_files(files, table)
    return [r for f in files for r in pq.read_table(f).to_pylist()]
