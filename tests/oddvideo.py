"""Small videos of real-world shapes for the split's tests: frame ``i`` carries its index as a
7-bit strip, so a clip's frames can be read back to source frame numbers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern(w: int, h: int, i: int) -> np.ndarray:
    """Frame ``i``: a white band at the left, a green ramp, the index in a bottom strip."""
    f = np.zeros((h, w, 3), np.uint8)
    f[:, :, 1] = 60 + (np.arange(w)[None, :] * 100 // w)
    f[:, : w // 4] = 255
    x0, bw, y0 = w / 4, (w - w / 4) / 7, h - max(2, h // 6)
    f[y0:, int(x0) :] = 0
    for b in range(7):
        if (i >> b) & 1:
            f[y0:, int(x0 + b * bw) : int(x0 + (b + 1) * bw)] = 255
    return f


def frame_index(g: np.ndarray) -> int:
    """The index :func:`pattern` wrote into a (decoded, resized) frame."""
    hh, ww = g.shape[:2]
    x0, bw, yy = ww / 4, (ww - ww / 4) / 7, hh - max(1, hh // 12)
    return sum(1 << b for b in range(7) if g[yy, int(x0 + (b + 0.5) * bw)].mean() > 128)


def write(path: Path, w: int, h: int, n: int, rate: int = 12, fmt: str | None = None,
          sar: Fraction | None = None, options: dict | None = None,
          second: tuple[int, int] | None = None, x264: dict | None = None) -> Path:  # fmt: skip
    """H.264 video of ``n`` pattern frames; ``options``: the muxer's, ``x264``: the encoder's;
    ``second``: a second video stream of noise."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if x264:
            s.options = x264
        if sar:
            s.codec_context.sample_aspect_ratio = sar
        s2 = None
        if second:
            s2 = c.add_stream("libx264", rate=rate)
            s2.width, s2.height, s2.pix_fmt = second[0], second[1], "yuv420p"
        for i in range(n):
            for pk in s.encode(av.VideoFrame.from_ndarray(pattern(w, h, i % 128), "rgb24")):
                c.mux(pk)
            if s2:
                noise = rng.integers(0, 255, (second[1], second[0], 3), dtype=np.uint8)
                for pk in s2.encode(av.VideoFrame.from_ndarray(noise, "rgb24")):
                    c.mux(pk)
        for st in (s, s2) if s2 else (s,):
            for pk in st.encode():
                c.mux(pk)
    return path


def damage_packet(src: Path, dst: Path, index: int) -> Path:
    """A copy of ``src`` whose ``index``-th video packet (in file order; -1: the last) has its
    first 8 bytes scrambled: the decoder rejects it (an invalid NAL unit size)."""
    with av.open(str(src)) as c:
        pos = [p.pos for p in c.demux(c.streams.video[0]) if p.size][index]
    b = bytearray(src.read_bytes())
    b[pos : pos + 8] = bytes((x * 7 + 13) % 256 for x in b[pos : pos + 8])
    dst.write_bytes(bytes(b))
    return dst


def write_offset(path: Path, w: int, h: int, n: int, start_s: float, rate: int = 12) -> Path:
    """A video whose first frame is shown at ``start_s`` (timestamps not starting at 0)."""
    tb = Fraction(1, rate * 100)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = tb
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(w, h, i), "rgb24")
            f.pts, f.time_base = int(start_s / tb) + 100 * i, tb
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path


def write_timed(path: Path, w: int, h: int, times: list[float], rate: int | Fraction = 24,
                fmt: str | None = None, first: int = 0) -> Path:  # fmt: skip
    """A video whose frame ``i`` (pattern ``first + i``) is shown at ``times[i]`` seconds (a
    variable frame rate, a pause, a start before 0 that MP4 writes as an edit list)."""
    tb = Fraction(1, 24000)
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = s.codec_context.time_base = tb
        for i, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(pattern(w, h, (first + i) % 128), "rgb24")
            f.pts, f.time_base = round(t / tb), tb
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path
