"""Schema validation errors name the file and the column; curate's staged rows fit the tables."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.stages import STAGED, to_staged
from schemas.tables import CLIPS, REJECTS, SOURCES
from schemas.validate import SchemaError, check_file, rows_to_table, write_table


def clip_row(**kw):
    row = {"clip_id": "c", "source_id": "s", "source_path": "p", "start_s": 0.0, "end_s": 1.0,
           "fps": 12.0, "num_frames": 12, "width": 64, "height": 48, "video": b"x"}  # fmt: skip
    row.update(kw)
    return row


def test_missing_required_column_names_file_and_column(tmp_path):
    path = tmp_path / "bad.parquet"
    tbl = pa.Table.from_pylist([clip_row()]).drop(["clip_id"])
    pq.write_table(tbl, path)
    with pytest.raises(SchemaError) as e:
        check_file(str(path), "clips")
    assert str(path) in str(e.value) and "'clip_id'" in str(e.value)
    assert e.value.column == "clip_id"


def test_wrong_type_names_the_column(tmp_path):
    path = tmp_path / "bad.parquet"
    tbl = rows_to_table([clip_row()], "clips")
    tbl = tbl.set_column(tbl.schema.get_field_index("width"), "width", pa.array(["wide"]))
    pq.write_table(tbl, path)
    with pytest.raises(SchemaError, match=r"bad\.parquet.*'width'.*string"):
        check_file(str(path), "clips")


def test_null_in_required_column_is_refused_on_write(tmp_path):
    tbl = pa.Table.from_pylist(
        [clip_row(video=None)], schema=STAGED.remove(STAGED.get_field_index("_kind"))
    )
    with pytest.raises(SchemaError, match="'video'.*null"):
        write_table(tbl.select(CLIPS.names), str(tmp_path / "x.parquet"), "clips")


def test_unknown_column_in_rows_is_named():
    with pytest.raises(SchemaError, match="'colour'"):
        rows_to_table([{**clip_row(), "colour": "red"}], "clips")


def test_staged_rows_project_onto_every_table(tmp_path):
    t = to_staged([{"_kind": "clip", **clip_row()}])
    for schema in (CLIPS, REJECTS, SOURCES):
        assert set(schema.names) <= set(STAGED.names)
    write_table(t.select(CLIPS.names), str(tmp_path / "c.parquet"), "clips")
    check_file(str(tmp_path / "c.parquet"), "clips")
