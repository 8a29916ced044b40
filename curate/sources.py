"""Sources: expand inputs (files, directories, globs, ``s3://`` and other pyarrow URIs) into
video files, give each a content-hash ``source_id``, and find identical content under two names.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)  # fmt: skip
"""File extensions picked up when a directory or remote prefix is listed."""

MIB = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input video: where it is, its size and (after hashing) its content id."""

    path: str
    """As found: an absolute local path, or a URI such as ``s3://bucket/key.mp4``."""
    size: int
    """Size in bytes."""
    source_id: str = ""
    """sha256 of the content (hex[:32]); see :func:`content_id`."""
    error: str = ""
    """Why the source could not be read for hashing (empty when fine)."""

    @property
    def is_remote(self) -> bool:
        return is_uri(self.path)


def is_uri(path: str) -> bool:
    """True for ``scheme://...`` paths (read through ``pyarrow.fs``; ``file://`` included)."""
    return "://" in path


def _filesystem(uri: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


def _list_remote(uri: str) -> list[tuple[str, int]]:
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, root = _filesystem(uri)
        scheme = uri.split("://", 1)[0]
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            return [(uri, info.size)]
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"no such input: {uri}")
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise FileNotFoundError(
            f"cannot list input {uri}: {type(e).__name__}: {e} (inputs are local paths, globs, "
            "or URIs of a file system pyarrow reads, e.g. s3://, gs://, hdfs://)"
        ) from e
    return sorted(
        (f"{scheme}://{i.path}", i.size)
        for i in infos
        if i.type == pafs.FileType.File and i.path.lower().endswith(VIDEO_EXTENSIONS)
    )


def _local_file(f: Path) -> tuple[str, int]:
    """(resolved path, size); a file that cannot be stat'ed (a dangling link, gone since the
    listing) is kept with size 0 and becomes an ``unreadable_source`` row when hashed."""
    try:
        return str(f.resolve()), f.stat().st_size
    except OSError:
        return str(f.absolute()), 0


def _list_local(item: str) -> list[tuple[str, int]]:
    p = Path(item).expanduser()
    if p.is_file():
        return [_local_file(p)]
    if p.is_dir():
        out = []
        for root, _dirs, files in os.walk(p):
            for name in files:
                if name.lower().endswith(VIDEO_EXTENSIONS):
                    out.append(_local_file(Path(root) / name))
        return sorted(out)
    matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
    if matches:
        out = []
        for m in matches:
            if Path(m).is_dir():
                out.extend(_list_local(m))
            elif m.lower().endswith(VIDEO_EXTENSIONS):
                out.append(_local_file(Path(m)))
        return out
    if p.is_symlink():
        return [_local_file(p)]  # named explicitly but dangling: an unreadable source
    raise FileNotFoundError(f"no such input file, directory or glob match: {item}")


def list_inputs(inputs: Sequence[str]) -> list[tuple[str, int]]:
    """Expand inputs into ``(path, size)`` pairs, each file once, in a stable order.

    A file named explicitly is taken whatever its extension (a non-video becomes a probe
    reject); directories and remote prefixes contribute files with a video extension. An input
    that contributes no file is an error naming it (a mistyped directory must not finish as an
    empty, successful run).
    """
    seen: dict[str, int] = {}
    for item in inputs:
        found = _list_remote(item) if is_uri(item) else _list_local(item)
        if not found:
            raise FileNotFoundError(
                f"no video files under input {item} (looked for {', '.join(VIDEO_EXTENSIONS)})"
            )
        for path, size in found:
            seen.setdefault(path, size)
    return sorted(seen.items())


def _read_ranges(path: str, size: int, full_max: int) -> Iterable[bytes]:
    """The bytes that enter the hash: all of them, or for big files the first, middle and
    last MiB."""
    if is_uri(path):
        fs, p = _filesystem(path)
        opener = fs.open_input_file(p)
    else:
        opener = open(path, "rb")
    with opener as f:
        if size <= full_max:
            while chunk := f.read(4 * MIB):
                yield chunk
            return
        for off in (0, size // 2, max(0, size - MIB)):
            f.seek(off)
            yield f.read(MIB)


def content_id(path: str, size: int, full_max_bytes: int = 64 * MIB) -> str:
    """sha256 over the size and the content (whole up to ``full_max_bytes``, else the first,
    middle and last MiB), hex[:32]. Stable across renames and reruns."""
    h = hashlib.sha256(f"spacetime-source:{size}:".encode())
    mode = b"full" if size <= full_max_bytes else b"sampled"
    h.update(mode)
    for chunk in _read_ranges(path, size, full_max_bytes):
        h.update(chunk)
    return h.hexdigest()[:32]


def hash_sources(
    found: Sequence[tuple[str, int]], full_max_bytes: int = 64 * MIB, threads: int = 8
) -> list[Source]:
    """Hash every source (threads; I/O bound). An unreadable source keeps ``error`` set."""

    def one(item: tuple[str, int]) -> Source:
        path, size = item
        try:
            return Source(path, size, content_id(path, size, full_max_bytes))
        except OSError as e:
            return Source(path, size, "", f"{type(e).__name__}: {e}")

    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        return list(ex.map(one, found))


def split_duplicates(sources: Sequence[Source]) -> tuple[list[Source], list[tuple[Source, Source]]]:
    """Unique sources (first path in sorted order wins) and ``(duplicate, original)`` pairs.

    Empty and unreadable files are never duplicates of each other: they stay in the unique
    list and are rejected by the probe.
    """
    first: dict[str, Source] = {}
    unique: list[Source] = []
    dups: list[tuple[Source, Source]] = []
    for s in sorted(sources, key=lambda s: s.path):
        if s.error or s.size == 0:
            unique.append(s)
            continue
        if s.source_id in first:
            dups.append((s, first[s.source_id]))
        else:
            first[s.source_id] = s
            unique.append(s)
    return unique, dups


def local_copy(path: str, scratch_dir: str | Path, name: str) -> str:
    """A local file for ``path``: itself when local, else a copy under ``scratch_dir``."""
    if not is_uri(path):
        return path
    fs, p = _filesystem(path)
    dst = Path(scratch_dir) / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    with fs.open_input_stream(p) as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out, 4 * MIB)
    return str(dst)
