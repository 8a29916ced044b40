"""Broken footage for the curate tests: each file is made here, with the reason it must get."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from curate.synthetic import Shot, write_video


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An MP4 holding one AAC audio stream and no video (PyAV)."""
    import av

    rate = 44100
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=rate)
        n = int(seconds * rate)
        t = np.arange(n) / rate
        pcm = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for k in range(0, n, 1024):
            fr = av.AudioFrame.from_ndarray(
                pcm[:, k : k + 1024].copy(), format="fltp", layout="mono"
            )
            fr.sample_rate = rate
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _box(data: bytes, name: bytes) -> tuple[int, int]:
    """(offset, size) of a top-level MP4 box."""
    off = 0
    while off + 8 <= len(data):
        size = int.from_bytes(data[off : off + 4], "big")
        if data[off + 4 : off + 8] == name:
            return off, size
        if size < 8:
            break
        off += size
    raise ValueError(f"no {name!r} box")


def undecodable(path: Path, good: Path) -> Path:
    """``good`` with its media data zeroed: the index is intact, no frame decodes."""
    data = bytearray(good.read_bytes())
    off, size = _box(bytes(data), b"mdat")
    data[off + 8 : off + size] = bytes(size - 8)
    path.write_bytes(bytes(data))
    return path


def truncated(path: Path, good: Path) -> Path:
    """The first half of ``good`` (PyAV writes the index at the end, so it is lost)."""
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_corpus(root: Path, real_video: Path) -> dict[str, str | None]:
    """Write every broken case under ``root``; returns {file name: expected reject reason}
    (None for the sources that must be split fine)."""
    root.mkdir(parents=True, exist_ok=True)
    good = root / "good clip ünïcode.mp4"
    write_video(good, [Shot(kind="shape", seconds=1.5, background=1),
                       Shot(kind="shape", seconds=1.5, color="blue", background=2)],
                width=96, height=64, fps=12)  # fmt: skip
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("this is a text file, not a video\n")
    audio_only(root / "audio_only.mp4")
    truncated(root / "truncated.mp4", good)
    undecodable(root / "undecodable.mp4", good)
    shutil.copy(good, root / "same content, other name.mp4")
    shutil.copy(real_video, root / "real.mp4")
    return {
        "good clip ünïcode.mp4": None,
        "real.mp4": None,
        "empty.mp4": "empty_file",
        "notes.mp4": "not_a_video",
        "audio_only.mp4": "no_video_stream",
        "truncated.mp4": "truncated_file",
        "undecodable.mp4": "undecodable_first_frame",
        "same content, other name.mp4": "duplicate_source",
    }
