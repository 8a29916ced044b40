"""Clips: size (never upscaled, even), frame rate, rotation, encoded bytes match the row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.video import decode_mp4, video_info
from curate.clips import clip_id, output_size, process_source, resample_slot, split_source
from curate.config import CurateConfig
from curate.decode import choose_decoder
from curate.probe import probe
from curate.synthetic import Shot, write_video


def test_output_size():
    assert output_size(640, 272, 128) == (300, 128)
    assert output_size(1280, 720, 480) == (852, 480)
    assert output_size(100, 60, 128) == (100, 60)  # never upscaled
    assert output_size(101, 61, 128) == (100, 60)  # even
    assert output_size(272, 640, 128) == (128, 300)  # portrait


def test_clip_id_is_stable_and_distinct():
    a = clip_id("s", 0, 10, "h")
    assert a == clip_id("s", 0, 10, "h") and len(a) == 32
    assert (
        len({a, clip_id("s", 0, 11, "h"), clip_id("t", 0, 10, "h"), clip_id("s", 0, 10, "g")}) == 4
    )


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_bikes_rows_describe_their_bytes(bikes_mp4, decoder):
    cfg = CurateConfig(decoder=decoder, short_side=64, fps=10)
    rows = split_source(str(bikes_mp4), "b", str(bikes_mp4), probe(str(bikes_mp4)), cfg)
    kept = [r for r in rows if r["_kind"] == "clip"]
    assert kept
    for r in kept:
        info = video_info(r["video"])
        assert (info["width"], info["height"]) == (r["width"], r["height"]) == (150, 64)
        assert info["num_frames"] == r["num_frames"]
        assert info["fps"] == pytest.approx(10.0) and r["fps"] == 10.0
        assert r["num_frames"] == pytest.approx((r["end_s"] - r["start_s"]) * 10, abs=1.01)
        assert info["codec"] == "h264"


@pytest.mark.parametrize("src_fps", [12.0, 24.0, 25.0, 29.97, 30.0])
def test_resample_keeps_one_frame_per_output_tick(src_fps):
    """Every output tick gets exactly one source frame, the first one at or just before it,
    with timestamps rounded as the decoders give them (decord: 6 decimals)."""
    times = [round(k / src_fps, 6) for k in range(int(src_fps * 10))]
    slots = [resample_slot(t, times[0], 12.0, src_fps) for t in times]
    kept = [k for k in range(len(slots)) if k == 0 or slots[k] > slots[k - 1]]
    assert [slots[k] for k in kept] == list(range(len(kept)))  # no tick skipped or repeated
    assert len(kept) == pytest.approx(10 * 12, abs=1)
    steps = set(np.diff(kept).tolist())
    ratio = src_fps / 12.0
    assert steps <= {math.floor(ratio), math.ceil(ratio)}  # evenly spaced, never a gap


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_source_at_the_output_rate_keeps_every_frame(tmp_path, decoder):
    path = tmp_path / "twelve.mp4"
    write_video(path, [Shot(seconds=2.0, kind="shape", direction="left")], width=64, height=64,
                fps=12)  # fmt: skip
    cfg = CurateConfig(decoder=decoder, fps=12, min_seconds=0.5)
    rows = split_source(str(path), "s", "s", probe(str(path)), cfg)
    kept = [r for r in rows if r["_kind"] == "clip"]
    assert kept
    for r in kept:
        assert r["num_frames"] == round((r["end_s"] - r["start_s"]) * 12)  # was 2/3 of it


def test_slow_source_keeps_its_rate(tmp_path):
    path = tmp_path / "slow.mp4"
    write_video(path, [Shot(seconds=2.0)], width=64, height=48, fps=8)
    rows = split_source(str(path), "s", "s", probe(str(path)), CurateConfig(fps=12))
    kept = [r for r in rows if r["_kind"] == "clip"]
    assert kept and all(r["fps"] == 8.0 for r in kept)  # frames are never duplicated


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_rotation_is_applied(tmp_path, decoder):
    import av

    path = tmp_path / "rot.mp4"
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :16] = 255  # a white band on the stored frame's left edge
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)  # shown rotated 90° counter-clockwise
        for _ in range(24):
            for p in s.encode(av.VideoFrame.from_ndarray(frame, "rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    rows = split_source(str(path), "r", "r", probe(str(path)), CurateConfig(decoder=decoder))
    kept = [r for r in rows if r["_kind"] == "clip"]
    assert kept and (kept[0]["width"], kept[0]["height"]) == (32, 64)
    img = decode_mp4(kept[0]["video"])[0].mean(axis=(1, 2))  # per displayed row
    assert img[-16:].mean() > 200 and img[:40].mean() < 50  # left edge turned to the bottom


def test_downscaled_detection_finds_the_same_cuts(bikes_mp4):
    """Scene detection on frames downscaled to ``detect_width`` (300 -> 128 px wide, bilinear)
    cuts bikes.mp4's six shots where detection on the full 300 px frames does."""
    info = probe(str(bikes_mp4))

    def pieces(detect_width: int) -> list[tuple]:
        cfg = CurateConfig(short_side=128, fps=10, detect_width=detect_width)
        rows = split_source(str(bikes_mp4), "b", str(bikes_mp4), info, cfg)
        return [(r["_kind"], r.get("scene_index"), r.get("reason"), r["start_s"], r["end_s"])
                for r in rows]  # fmt: skip

    full, small = pieces(1000), pieces(128)
    # five shots become clips of scenes 0-4; the sixth lasts 0.24 s, under min_seconds
    assert [p[1] for p in full if p[0] == "clip"] == [0, 1, 2, 3, 4]
    assert [p[2] for p in full if p[0] == "reject"] == ["scene_too_short"]
    assert small == full


def _clips(path, **kw):
    from common.video import decode_mp4
    from curate.clips import split_source
    from curate.config import CurateConfig
    from curate.probe import probe

    info = probe(str(path))
    rows = split_source(str(path), "s", str(path), info, CurateConfig(short_side=64, **kw))
    clips = [(r, decode_mp4(r["video"])) for r in rows if r["_kind"] == "clip"]
    return info, rows, clips


def test_mpeg_ts_and_two_stream_sources_give_their_own_frames(tmp_path):
    """decord read an MPEG-TS from the wrong place (the clip started 16 frames late, its end
    repeated one frame) and decoded the other stream of a two-stream file: both go to PyAV."""
    from oddvideo import frame_index, write

    for name, kw in (("a.ts", {"fmt": "mpegts"}), ("two.mp4", {"second": (128, 96)})):
        path = write(tmp_path / name, 64, 48, 36, **kw)
        _, _, clips = _clips(path)
        [(row, frames)] = clips
        idx = [frame_index(f) for f in frames]
        assert row["start_s"] == 0.0 and idx[0] <= 2, name
        assert idx == sorted(idx) and len(set(idx)) == len(idx), name


def test_non_square_pixels_and_late_timestamps(tmp_path):
    """A 64x48 stream with 2:1 pixels shows as 128x48: the clips keep that shape. A stream
    whose timestamps start at 10 s has clips timed from its first frame with either decoder."""
    from fractions import Fraction

    from oddvideo import write, write_offset

    info, _, clips = _clips(write(tmp_path / "sar.mp4", 64, 48, 36, sar=Fraction(2, 1)))
    assert (info["width"], info["height"]) == (128, 48)
    assert all(r["width"] / r["height"] == 128 / 48 for r, _ in clips)
    for decoder in ("decord", "pyav"):
        _, _, clips = _clips(write_offset(tmp_path / "late.mp4", 64, 48, 36, 10.0), decoder=decoder)
        assert [r["start_s"] for r, _ in clips] == [0.0], decoder


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_variable_frame_rate_clips_play_at_their_real_speed(tmp_path, decoder):
    """2 s at 24 fps, 4 s at 4 fps (a phone in low light), 2 s at 24 fps: 14 fps on average.
    Counting frames at the average rate made a 5 s clip (max_seconds 3) that played in 2.4 s;
    now every clip lasts at most max_seconds and holds (end - start) x fps frames, the slow
    part's frames held for the slots they are shown in."""
    from oddvideo import frame_index, write_timed

    times = [i / 24 for i in range(48)] + [2 + i / 4 for i in range(16)]
    times += [6 + i / 24 for i in range(48)]
    path = write_timed(tmp_path / "vfr.mp4", 96, 64, times)
    kw = {"fps": 12, "min_seconds": 1.0, "max_seconds": 3.0, "decoder": decoder}
    info, rows, clips = _clips(path, **kw)
    assert info["variable_fps"] is True and info["fps"] == 14.0
    assert [r["_kind"] for r in rows] == ["clip"] * 3, rows
    for row, frames in clips:
        seconds = row["end_s"] - row["start_s"]
        assert seconds <= 3.0 + 1e-3 and len(frames) == row["num_frames"]
        assert abs(row["num_frames"] / row["fps"] - seconds) < 1.5 / 14, (row, seconds)
    slow = [frame_index(f) for f in clips[1][1]]
    assert slow == [i for i in range(52, 64) for _ in range(3)]  # 4 fps source, 12 fps clip


def test_a_pause_in_the_timestamps_is_a_cut(tmp_path):
    """Two takes spliced with 5 s between them: no clip holds the pause (as one frame held for
    60 slots), the clip before it ends at its last frame, and the pause is a row of its own
    (a paused recording or a stretch the demuxer dropped: the timeline stays accounted for)."""
    from oddvideo import frame_index, write_timed

    times = [i / 12 for i in range(24)] + [7 + i / 12 for i in range(24)]
    _, rows, clips = _clips(write_timed(tmp_path / "pause.mp4", 96, 64, times, rate=12),
                            fps=12, min_seconds=1.0, max_seconds=4.0, trim_frames=0)  # fmt: skip
    [gap] = [r for r in rows if r["_kind"] == "reject"]
    assert (gap["reason"], gap["start_s"], gap["end_s"]) == (
        "timestamp_gap",
        pytest.approx(2.0),
        7.0,
    )
    assert [[frame_index(f) for f in frames] for _, frames in clips] == [
        list(range(24)),
        list(range(24, 48)),
    ]
    assert [(r["start_s"], r["num_frames"], r["scene_index"]) for r, _ in clips] == [
        (0.0, 24, 0),
        (7.0, 24, 1),
    ]
    assert clips[0][0]["end_s"] == pytest.approx(2.0)


def test_timestamps_that_mislead_a_decoder(tmp_path):
    """Sources whose clocks misled the split: MKV's millisecond timestamps (29.97 fps read as
    30.3), two MPEG-TS takes joined with the clock restarting at 0 (take two's frames were lost
    without a row), AVI with B-frames (no timestamps: PyAV's guesses jumped back and forth,
    decord's were -3.7e17 s), an MP4 trimmed by an edit list (decord's times were 12 frames off
    its frames)."""
    from fractions import Fraction

    from oddvideo import frame_index, write, write_timed

    ntsc = Fraction(30000, 1001)
    mkv = write_timed(tmp_path / "a.mkv", 64, 48, [i / ntsc for i in range(60)], rate=ntsc)
    info = probe(str(mkv))
    assert info["fps"] == info["_frame_rate"] == pytest.approx(29.97, abs=0.01)

    take = [i / 12 for i in range(36)]
    a = write_timed(tmp_path / "a.ts", 64, 48, take, rate=12, fmt="mpegts")
    b = write_timed(tmp_path / "b.ts", 64, 48, take, rate=12, fmt="mpegts", first=36)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    no_detector = {"detector": "content", "content_threshold": 255.0, "trim_frames": 0}
    _, rows, clips = _clips(joined, fps=12, max_seconds=3.0, **no_detector)
    assert [r["_kind"] for r in rows] == ["clip", "clip"], rows
    assert [[frame_index(f) for f in fr] for _, fr in clips] == [
        list(range(36)),
        list(range(36, 72)),
    ]
    assert [(r["start_s"], r["end_s"], r["scene_index"]) for r, _ in clips] == [
        (0.0, pytest.approx(3.0), 0),
        (pytest.approx(3.0), pytest.approx(6.0), 1),
    ]

    # the sources row: the container declares the first take's 3 s; the rows run to 6 s
    cfg = CurateConfig(short_side=64, fps=12, max_seconds=3.0, **no_detector)
    src = process_source(str(joined), "s", str(joined), joined.stat().st_size, cfg)[0]
    assert (src["duration_s"], src["frame_count"]) == (pytest.approx(6.0), 72)

    avi = write(tmp_path / "b.avi", 64, 48, 48, fmt="avi")
    for decoder in ("decord", "pyav"):
        _, rows, clips = _clips(avi, decoder=decoder, fps=12, max_seconds=4.0, **no_detector)
        [(row, frames)] = clips
        assert [frame_index(f) for f in frames] == list(range(48)), decoder
        assert (row["start_s"], row["end_s"]) == (0.0, pytest.approx(4.0)), decoder

    trimmed = write_timed(tmp_path / "trim.mp4", 64, 48, [i / 12 - 0.5 for i in range(36)], rate=12)
    info = probe(str(trimmed))
    assert info["_start_s"] < 0 and choose_decoder(info, "decord") == "pyav"
    _, _, clips = _clips(trimmed, fps=12, max_seconds=4.0, **no_detector)
    assert [frame_index(f) for f in clips[0][1]] == list(range(6, 36))
    # decord's float32 seconds are too coarse past DECORD_MAX_S
    assert choose_decoder({**info, "_start_s": 40000.0}, "decord") == "pyav"
    assert choose_decoder({**info, "_start_s": 0.0}, "decord") == "decord"


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
@pytest.mark.parametrize("packet", [0, 5, 120])
def test_a_damaged_stretch_costs_its_group_of_pictures_not_the_rest(tmp_path, decoder, packet):
    """Scrambled bytes in a file with a key frame each second ended the split at the first bad
    packet (the rest of the file lost) with a row overlapping the last clip. Now the bad packets are a
    decode_error row from the end of the last good frame to the next whole key frame, the clips
    after it hold the frames shown at their times (no smeared frame built on the lost data),
    and no row overlaps another."""
    from oddvideo import damage_packet, frame_index, write

    full = write(tmp_path / "gop.mp4", 64, 48, 240,
                 x264={"g": "12", "keyint_min": "12", "sc_threshold": "0", "x264-params": "mbtree=0"})  # fmt: skip
    bad = damage_packet(full, tmp_path / "bad.mp4", packet)
    info, rows, clips = _clips(bad, decoder=decoder, fps=12)
    [bad] = [r for r in rows if r.get("reason") == "decode_error"]
    assert "undecodable packet" in bad["detail"]
    assert 0 <= bad["start_s"] < bad["end_s"] < info["duration_s"]
    assert any(r["start_s"] >= bad["end_s"] for r, _ in clips)  # footage after it is kept
    for row, frames in clips:
        first = round(row["start_s"] * 12)
        assert [frame_index(f) for f in frames] == [(first + k) % 128 for k in range(len(frames))]
    spans = sorted((r["start_s"], r["end_s"]) for r in rows if r.get("end_s") is not None)
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:], strict=False)), spans


def test_damage_at_the_end_or_in_an_untimed_file_is_reported(tmp_path):
    """A damaged last packet: its error was swallowed in the decoder's flush and the last
    frames vanished without a row. A damaged AVI (no clock to place frames after the damage)
    gave the later clips wrong times: the rest of it is one decode_error row now."""
    from oddvideo import damage_packet, frame_index, write

    full = write(tmp_path / "m.mp4", 64, 48, 120, x264={"g": "12", "bf": "2"})
    bad = damage_packet(full, tmp_path / "tail.mp4", -1)
    info, rows, clips = _clips(bad, decoder="pyav", fps=12)
    [lost] = [r for r in rows if r["_kind"] == "reject" and r["stage"] == "clip"]
    assert lost["reason"] == "decode_error" and lost["end_s"] == info["duration_s"] == 10.0
    assert max(r["end_s"] for r, _ in clips) <= lost["start_s"] + 1e-6 < 10.0

    # no key frame after the damage: the rest is the damage's row, not a truncation's too
    one = write(tmp_path / "one.mp4", 64, 48, 96, x264={"g": "1000", "sc_threshold": "0"})
    info, rows, _ = _clips(damage_packet(one, tmp_path / "one_bad.mp4", 40), fps=12)
    lost = [r for r in rows if r["_kind"] == "reject" and r["stage"] == "clip"]
    assert [(r["reason"], r["end_s"]) for r in lost] == [("decode_error", 8.0)], lost

    avi = write(tmp_path / "a.avi", 64, 48, 120, fmt="avi")
    info, rows, clips = _clips(damage_packet(avi, tmp_path / "bad.avi", 60), fps=12)
    [lost] = [r for r in rows if r.get("reason") == "decode_error"]
    assert lost["end_s"] == info["duration_s"] and lost["start_s"] > 0
    for row, frames in clips:
        first = round(row["start_s"] * 12)
        assert [frame_index(f) for f in frames] == [(first + k) % 128 for k in range(len(frames))]


def test_a_clock_restart_after_damage_keeps_the_second_take(tmp_path, monkeypatch):
    """Two MPEG-TS takes joined, a packet of the first one damaged: once a packet had failed,
    every frame timed before the latest one was dropped as stale, so the whole second take
    (its clock restarting at 0) was lost without a row. A bad packet is simulated (a real TS
    demuxer drops damaged packets silently)."""
    import av
    from oddvideo import frame_index, write_timed

    take = [i / 12 for i in range(36)]
    a = write_timed(tmp_path / "a.ts", 64, 48, take, rate=12, fmt="mpegts")
    b = write_timed(tmp_path / "b.ts", 64, 48, take, rate=12, fmt="mpegts", first=36)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    info = probe(str(joined))
    real_open = av.open

    class Packet:
        def __init__(self, packet, bad):
            self.packet, self.bad = packet, bad

        def __getattr__(self, name):
            return getattr(self.packet, name)

        def decode(self):
            if self.bad:
                raise av.InvalidDataError(1094995529, "simulated bad packet")
            return self.packet.decode()

    class Container:
        def __init__(self, c):
            self.c, self.n = c, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.c.close()

        def __getattr__(self, name):
            return getattr(self.c, name)

        def demux(self, *a):
            for p in self.c.demux(*a):
                self.n += 1
                if self.n == 54 and demux_error:
                    raise av.InvalidDataError(1094995529, "simulated demux error")
                yield Packet(p, self.n == 20)

    demux_error = False
    monkeypatch.setattr(av, "open", lambda *a, **k: Container(real_open(*a, **k)))
    cfg = CurateConfig(short_side=64, fps=12, decoder="pyav", detector="content",
                       content_threshold=255.0, trim_frames=0, max_seconds=3.0)  # fmt: skip
    rows = split_source(str(joined), "s", str(joined), info, cfg)
    # take one's 4 frames after the damage are too short for a clip
    assert [r["reason"] for r in rows if r["_kind"] == "reject"] == [
        "decode_error",
        "scene_too_short",
    ]
    second = [frame_index(f) for r in rows if r["_kind"] == "clip" and r["start_s"] >= 3.0
              for f in decode_mp4(r["video"])]  # fmt: skip
    assert second == list(range(36, 72))
    # an error that ends decoding in take two: its row, though the container's duration (one
    # take's, 3 s) is behind the timeline (it was logged as "after the last frame")
    demux_error = True
    rows = split_source(str(joined), "s", str(joined), info, cfg)
    [end] = [r for r in rows if r.get("reason") == "decode_error" and r["end_s"] is None]
    assert end["start_s"] > 3.0 and "simulated demux error" in end["detail"]


def test_a_stream_starting_mid_group_reports_its_lead_not_a_lost_end(tmp_path):
    """An MPEG-TS cut in mid-stream (its first 6 packets before the first key frame): the
    decoder drops those frames silently; they were counted as frames lost at the end (a
    decode_error row there, nothing damaged), and the missing lead had no row."""
    import av
    from oddvideo import write

    full = write(tmp_path / "full.ts", 64, 48, 120, fmt="mpegts",
                 x264={"g": "24", "keyint_min": "24", "sc_threshold": "0"})  # fmt: skip
    cut = tmp_path / "cut.ts"
    with av.open(str(full)) as src, av.open(str(cut), "w", format="mpegts") as dst:
        s = src.streams.video[0]
        o = dst.add_stream_from_template(s)
        for n, p in enumerate(src.demux(s)):
            if p.dts is not None and n >= 6:
                p.stream = o
                dst.mux(p)
    _, rows, _ = _clips(cut, fps=12)
    lost = [r for r in rows if r["_kind"] == "reject" and r["stage"] == "clip"]
    assert [(r["reason"], r["start_s"]) for r in lost] == [("timestamp_gap", 0.0)], lost
    assert lost[0]["end_s"] == pytest.approx(1.5)


def test_a_stream_cut_short_without_an_error_is_reported(tmp_path):
    """A faststart MP4 cut in half decodes to the cut without an error: the rest is a
    truncated_stream reject, not silently missing footage."""
    from oddvideo import write

    full = write(tmp_path / "full.mp4", 64, 48, 240, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    info, rows, clips = _clips(cut)
    [lost] = [r for r in rows if r.get("reason") == "truncated_stream"]
    assert lost["stage"] == "clip" and lost["end_s"] == info["duration_s"] == 20.0
    assert (
        clips and lost["start_s"] < 15 and "of the 20.00s the container declares" in lost["detail"]
    )
    _, rows, _ = _clips(full)
    assert not [r for r in rows if r.get("reason") == "truncated_stream"]
    # a small loss at the end of a longer file (the last 2 s of 50 s: under the 5% once
    # allowed), cut where frame 576's packet starts
    import av

    full = write(tmp_path / "long.mp4", 64, 48, 600, options={"movflags": "faststart"})
    with av.open(str(full)) as c:
        at = sorted(p.pos for p in c.demux(c.streams.video[0]) if p.size)[576]
    cut.write_bytes(full.read_bytes()[:at])
    _, rows, clips = _clips(cut)
    [lost] = [r for r in rows if r.get("reason") == "truncated_stream"]
    assert 1.0 < lost["end_s"] - lost["start_s"] < 2.5, lost
    assert max(r["end_s"] for r, _ in clips) <= lost["start_s"] + 1e-6
