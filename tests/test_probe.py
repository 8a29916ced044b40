"""Probe: facts of real footage, a named reason for every kind of broken file, isolation."""

from __future__ import annotations

import ctypes
import json
import time

import pytest
from corpus import corrupt_corpus

from curate.clips import process_source
from curate.config import CurateConfig
from curate.isolation import DecoderCrashed, DecodeTimeout, IsolatedRunner
from curate.probe import ProbeError, probe
from curate.synthetic import Shot, write_video


def test_probe_bikes(bikes_mp4):
    info = probe(str(bikes_mp4))
    assert (info["width"], info["height"], info["fps"], info["frame_count"]) == (
        640,
        272,
        25.0,
        250,
    )
    assert info["duration_s"] == pytest.approx(10.0)
    assert info["codec"] == "h264" and info["rotation"] == 0
    assert info["variable_fps"] is False


def test_probe_reports_rotation(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)
        for _ in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 64, 3), np.uint8), "rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = probe(str(path))
    assert info["rotation"] == 90
    assert (info["width"], info["height"]) == (32, 64)  # as displayed


def test_every_broken_file_gets_its_reason(tmp_path, bikes_mp4):
    expected = corrupt_corpus(tmp_path, bikes_mp4)
    for name, reason in expected.items():
        if reason in (None, "duplicate_source"):
            assert probe(str(tmp_path / name))["frame_count"] > 0
            continue
        with pytest.raises(ProbeError) as e:
            probe(str(tmp_path / name))
        assert e.value.reason == reason, (name, e.value)
        assert e.value.detail  # the decoder's own words are kept


def test_isolated_timeout_and_crash_are_named():
    run = IsolatedRunner()
    try:
        assert run.call(sum, [1, 2, 3], timeout=60) == 6
        t = time.monotonic()
        with pytest.raises(DecodeTimeout):
            run.call(time.sleep, 30, timeout=1)  # a decoder that hangs
        assert time.monotonic() - t < 15
        with pytest.raises(DecoderCrashed):
            run.call(ctypes.string_at, 0, timeout=60)  # a decoder that segfaults
        assert run.call(sum, [4, 5], timeout=60) == 9  # a fresh child takes over
    finally:
        run.close()


def test_a_child_that_died_while_idle_is_replaced_not_blamed():
    """The warm child killed between calls (the OOM killer): the next call gets a fresh one
    instead of a decoder_crashed for a healthy source."""
    import os
    import signal

    run = IsolatedRunner()
    try:
        assert run.call(sum, [1, 2], timeout=60) == 3
        pid = run._proc.pid
        os.kill(pid, signal.SIGKILL)
        run._proc.join(timeout=10)
        assert run.call(sum, [4, 5], timeout=60) == 9
        assert run._proc.pid != pid
    finally:
        run.close()


def test_timeout_becomes_a_reject_row(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, [Shot(seconds=1.0)], width=64, height=48, fps=10)
    rows = process_source(str(path), "sid", str(path), path.stat().st_size,
                          CurateConfig(probe_timeout_s=0.001))  # fmt: skip
    src = [r for r in rows if r["_kind"] == "source"]
    rej = [r for r in rows if r["_kind"] == "reject"]
    assert len(src) == 1 and src[0]["status"] == "failed"
    assert [(r["stage"], r["reason"]) for r in rej] == [("probe", "decode_timeout")]


def test_isolated_runner_holds_no_tracked_semaphores(monkeypatch):
    # A Ray worker kills its children (multiprocessing's resource tracker among them) before
    # Python's teardown; semaphores registered with the tracker then log a traceback each.
    from multiprocessing import resource_tracker

    registered = []
    monkeypatch.setattr(resource_tracker, "register", lambda name, rtype: registered.append(rtype))
    run = IsolatedRunner()
    try:
        assert run.call(sum, [1, 2], timeout=60) == 3
        with pytest.raises(json.JSONDecodeError) as e:
            run.call(json.loads, "{", timeout=60)  # fn's own exception comes back unchanged
        assert "json/decoder.py" in str(e.value.__cause__)  # the child's traceback as cause
    finally:
        run.close()
    assert registered == []


def test_isolated_child_start_is_not_counted_against_the_call(tmp_path, monkeypatch):
    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned child inherits sys.path
    run = IsolatedRunner(preload=("slow_to_import",))
    try:
        assert run.call(sum, [1, 2], timeout=1) == 3  # the 3 s start is not the call's second
    finally:
        run.close()
    broken = IsolatedRunner(preload=("no_such_module_here",), start_timeout=60)
    with pytest.raises(DecoderCrashed, match="did not start"):
        broken.call(sum, [1], timeout=60)


def test_a_damaged_first_packet_is_looked_past(tmp_path):
    """The first key frame damaged and the next 250 frames away (x264's default): the probe
    gave up after 64 packets and the whole source failed; the split keeps what follows."""
    import av
    from oddvideo import write

    full = write(tmp_path / "k.mp4", 64, 48, 300, x264={"sc_threshold": "0"})
    with av.open(str(full)) as c:
        first = next(p for p in c.demux(c.streams.video[0]) if p.size)
    b = bytearray(full.read_bytes())
    b[first.pos : first.pos + 40] = bytes((x * 7 + 13) % 256 for x in b[first.pos : first.pos + 40])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(b))
    info = probe(str(bad))
    assert (info["width"], info["height"], info["duration_s"]) == (64, 48, 25.0)
