"""Sources: listing (files, dirs, globs, URIs), content ids, duplicates."""

from __future__ import annotations

import shutil

import pytest

from curate.sources import content_id, hash_sources, list_inputs, local_copy, split_duplicates


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "one.mp4").write_bytes(b"one" * 100)
    (tmp_path / "a" / "deep" / "two.MOV").write_bytes(b"two" * 100)
    (tmp_path / "a" / "notes.txt").write_text("not a video")
    (tmp_path / "b.mkv").write_bytes(b"one" * 100)  # same content as a/one.mp4
    return tmp_path


def names(found):
    return sorted(p.rsplit("/", 1)[-1] for p, _ in found)


def test_directory_is_recursive_and_by_extension(tree):
    assert names(list_inputs([str(tree / "a")])) == ["one.mp4", "two.MOV"]


def test_glob_and_explicit_file(tree):
    assert names(list_inputs([str(tree / "**" / "*.mp4")])) == ["one.mp4"]
    # a file named explicitly is taken whatever its extension (the probe rejects it)
    assert names(list_inputs([str(tree / "a" / "notes.txt")])) == ["notes.txt"]
    # the same file reached twice is listed once
    assert len(list_inputs([str(tree / "a"), str(tree / "a" / "one.mp4")])) == 2


def test_missing_input_is_an_error(tree):
    with pytest.raises(FileNotFoundError, match="nope"):
        list_inputs([str(tree / "nope")])


def test_uri_through_pyarrow_fs(tree):
    found = list_inputs([f"file://{tree}/a"])
    assert names(found) == ["one.mp4", "two.MOV"] and all(p.startswith("file://") for p, _ in found)
    uri, size = next(x for x in found if x[0].endswith("one.mp4"))
    assert content_id(uri, size) == content_id(str(tree / "a" / "one.mp4"), size)
    copy = local_copy(uri, tree / "scratch", "x")
    assert open(copy, "rb").read() == b"one" * 100


def test_content_id_is_stable_and_content_based(tree):
    p = tree / "a" / "one.mp4"
    a = content_id(str(p), p.stat().st_size)
    shutil.copy(p, tree / "renamed.mp4")
    assert content_id(str(tree / "renamed.mp4"), p.stat().st_size) == a
    assert content_id(str(tree / "a" / "deep" / "two.MOV"), 300) != a
    # big files hash their size plus sampled chunks; a change in the middle still shows
    big = tree / "big.bin"
    data = bytearray(b"x" * (3 << 20))
    big.write_bytes(bytes(data))
    h1 = content_id(str(big), len(data), full_max_bytes=1 << 20)
    data[len(data) // 2] = ord("y")
    big.write_bytes(bytes(data))
    assert content_id(str(big), len(data), full_max_bytes=1 << 20) != h1


def test_duplicates_first_path_wins(tree):
    (tree / "e1.mp4").write_bytes(b"")
    (tree / "e2.mp4").write_bytes(b"")
    srcs = hash_sources(list_inputs([str(tree)]))
    unique, dups = split_duplicates(srcs)
    assert [(d.path.rsplit("/", 1)[-1], o.path.rsplit("/", 1)[-1]) for d, o in dups] == [
        ("b.mkv", "one.mp4")
    ]
    # empty files are never "duplicates" of each other: the probe names them empty_file
    assert sum(1 for s in unique if s.size == 0) == 2


def test_an_input_with_no_video_is_an_error_naming_it(tree):
    """A mistyped or empty directory must not finish as an empty, successful run."""
    (tree / "empty").mkdir()
    for item in (tree / "empty", tree / "a" / "*.txt"):
        with pytest.raises(FileNotFoundError, match="no video files under input") as e:
            list_inputs([str(tree / "a"), str(item)])
        assert str(item) in str(e.value)


def test_a_dangling_link_is_listed_and_becomes_unreadable(tree):
    """One broken link in a folder does not stop the listing: it is hashed as unreadable (an
    unreadable_source row), the other files go on."""
    (tree / "a" / "gone.mp4").symlink_to(tree / "nowhere.mp4")
    found = list_inputs([str(tree / "a")])
    assert names(found) == ["gone.mp4", "one.mp4", "two.MOV"]
    by_name = {s.path.rsplit("/", 1)[-1]: s for s in hash_sources(found)}
    assert (
        by_name["gone.mp4"].error.startswith("FileNotFoundError") and by_name["gone.mp4"].size == 0
    )
    assert not by_name["one.mp4"].error


def test_an_unlistable_uri_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="cannot list input http://example.com/v.mp4"):
        list_inputs(["http://example.com/v.mp4"])
