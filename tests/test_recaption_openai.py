"""The OpenAI-compatible back end against a chat-completions server started on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.synthetic import Shot
from recaption.backend_openai import OpenAIBackend, retry_after_s
from recaption.base import CaptionRequest
from recaption.config import RecaptionConfig
from recaption.pipeline import run_recaption
from recaption.testing import write_clips

CAPTION = "A red ball rolls to the left across a grey floor while the camera stays still."


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _send(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path != "/v1/models":
            return self._send(404, {"error": "not found"})
        served = ["by-duration", "flaky-429", "fail-500", "slow", "refuse", "ok"]
        self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in served]})

    def do_POST(self):  # noqa: N802 - http.server API
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body["model"]
        with srv.lock:
            srv.calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization"),
                              "t": time.monotonic()})  # fmt: skip
            n = sum(1 for c in srv.calls if c["body"]["model"] == model)
        text = body["messages"][-1]["content"][-1]["text"]
        if model == "by-duration":
            model = {"1.0": "ok", "1.5": "fail-500", "2.0": "refuse"}[
                re.search(r"(\d\.\d)-second", text)[1]
            ]
        if model == "flaky-429" and n == 1:
            return self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
        if model == "fail-500":
            return self._send(500, {"error": "boom"})
        if model == "slow":
            time.sleep(1.5)
        content = (
            "I'm sorry, I cannot describe this."
            if model == "refuse"
            else "The video shows " + CAPTION
        )
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}],
                         "usage": {"completion_tokens": 17}})  # fmt: skip


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.calls, srv.lock = [], threading.Lock()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _cfg(srv, model, **kw):
    base = {"backend": "openai", "model": model, "base_url": f"http://127.0.0.1:{srv.server_port}/v1",
            "max_retries": 2, "backoff_s": 0.01, "request_timeout_s": 5.0, "num_frames": 3,
            "api_key_env": "SPACETIME_TEST_KEY"}  # fmt: skip
    return RecaptionConfig(**{**base, **kw})


def _req(i=0):
    frames = np.random.default_rng(i).integers(0, 255, (3, 32, 48, 3), dtype=np.uint8)
    return CaptionRequest(f"clip{i}", frames, {"start_s": 0.0, "end_s": 2.0})


def test_success_sends_frames_as_jpeg_data_urls(server, monkeypatch):
    monkeypatch.setenv("SPACETIME_TEST_KEY", "sk-test")
    be = OpenAIBackend(_cfg(server, "ok"))
    res = be.caption([_req(0), _req(1)])
    assert [r.text for r in res] == ["The video shows " + CAPTION] * 2
    assert res[0].tokens == 17 and res[0].error is None
    call = server.calls[0]
    assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer sk-test"
    parts = call["body"]["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 3 and all(u.startswith("data:image/jpeg;base64,") for u in urls)
    assert base64.b64decode(urls[0].split(",", 1)[1])[:2] == b"\xff\xd8"  # a JPEG
    assert "3 frames" in parts[-1]["text"] and "2.0-second" in parts[-1]["text"]


def test_429_then_success_honours_retry_after(server):
    be = OpenAIBackend(_cfg(server, "flaky-429"))
    (res,) = be.caption([_req()])
    assert res.text and res.error is None
    assert len(server.calls) == 2
    assert server.calls[1]["t"] - server.calls[0]["t"] >= 0.9  # waited Retry-After: 1


def test_500_becomes_server_error_after_retries(server):
    be = OpenAIBackend(_cfg(server, "fail-500"))
    (res,) = be.caption([_req()])
    assert res.text is None and res.error == "server_error"
    assert "HTTP 500" in res.detail and "2 retries" in res.detail
    assert len(server.calls) == 3


def test_timeout_becomes_server_error(server):
    be = OpenAIBackend(_cfg(server, "slow", request_timeout_s=0.3, max_retries=1))
    (res,) = be.caption([_req()])
    assert res.error == "server_error" and "timeout" in res.detail


def test_retry_after_parsing():
    assert retry_after_s("3") == 3.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_job_with_openai_backend(ray_session, server, tmp_path):
    """Through Ray: one clip captioned, one server_error, one refusal: a row per clip."""
    out = tmp_path / "out"
    rows = write_clips(
        out, [Shot(seconds=1.0), Shot(seconds=1.5), Shot(seconds=2.0), Shot(seconds=1.0)]
    )
    clips = next((out / "clips").glob("*.parquet"))
    tbl = pq.read_table(clips)
    videos = tbl.column("video").to_pylist()
    videos[3] = b"not an mp4"  # a clip whose video cannot be decoded
    tbl = tbl.set_column(
        tbl.schema.get_field_index("video"), "video", pa.array(videos, pa.binary())
    )
    pq.write_table(tbl, clips)
    summary = run_recaption(out, _cfg(server, "by-duration", max_retries=1, batch_size=3))
    assert summary["rejects_by_reason"] == {"decode_error": 1, "refusal": 1, "server_error": 1}
    pairs = pq.read_table(next((out / "pairs").glob("*.parquet"))).to_pylist()
    assert len(pairs) == 1 and pairs[0]["clip_id"] == rows[0]["clip_id"]
    assert pairs[0]["caption"] == CAPTION  # boilerplate stripped
    assert (
        pairs[0]["caption_source"] == "by-duration" and pairs[0]["caption_prompt_version"] == "v1"
    )
    rej = pq.read_table(next((out / "rejects").glob("caption-*.parquet"))).to_pylist()
    err = next(r for r in rej if r["reason"] == "server_error")
    assert err["clip_id"] == rows[1]["clip_id"] and "HTTP 500" in err["detail"]
    bad = next(r for r in rej if r["reason"] == "decode_error")
    assert bad["clip_id"] == rows[3]["clip_id"] and bad["detail"]
    assert len(server.calls) == 1 + 2 + 1  # ok, 500 + one retry, refusal; none for the bad clip


def test_job_refuses_a_server_that_does_not_serve_the_model(server, tmp_path):
    """A mistyped model or URL fails at start, naming it: not one server_error per clip."""
    from common.config import ConfigError

    out = tmp_path / "out"
    write_clips(out, [Shot(seconds=1.0)])
    with pytest.raises(ConfigError, match=r"does not serve model 'goood-model'; it serves \['by"):
        run_recaption(out, _cfg(server, "goood-model"))
    with pytest.raises(
        ConfigError, match="cannot reach the caption server at http://127.0.0.1:9/v1"
    ):
        run_recaption(out, _cfg(server, "ok", base_url="http://127.0.0.1:9/v1"))
    assert not (out / "pairs").exists() or not list((out / "pairs").glob("*.parquet"))


def test_a_rerun_retries_clips_that_failed_on_the_server(ray_session, server, tmp_path):
    """server_error is not a final verdict: the rerun captions the clip again and its old
    reject row goes; a QA reject (refusal) stays done."""
    out = tmp_path / "out"
    rows = write_clips(out, [Shot(seconds=1.0), Shot(seconds=1.5), Shot(seconds=2.0)])
    first = run_recaption(out, _cfg(server, "by-duration", max_retries=0, batch_size=3))
    assert first["rejects_by_reason"] == {"refusal": 1, "server_error": 1}
    second = run_recaption(out, _cfg(server, "ok", batch_size=3))
    assert second["last_run"]["captioned"] == 1 and second["last_run"]["skipped_done"] == 2
    assert second["rejects_by_reason"] == {"refusal": 1}
    assert second["counts"] == {"clips_seen": 3, "pairs": 2, "caption_rejected": 1, "pending": 0}
    pairs = [r for f in (out / "pairs").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert sorted(r["clip_id"] for r in pairs) == sorted([rows[0]["clip_id"], rows[1]["clip_id"]])
