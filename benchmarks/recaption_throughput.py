"""Recaption throughput: frame preparation vs captioning, per back end. Prints one table.

    python benchmarks/recaption_throughput.py [--clips 24] [--ray]

Rows:
  prep                  decode + sample + resize on one CPU (recaption.frames.prepare_batch)
  transformers bs=B     a tiny random Qwen2-VL (recaption.testing.tiny_model_dir) on this
                        machine's device, one batched generate per B clips
  openai conc=C         OpenAIBackend against a local chat-completions server that answers
                        after --latency-ms (a stand-in for a vLLM server), C requests in flight
  ray end-to-end        (with --ray) the whole job: read → prep tasks → caption actor → write

The GPU stage is not starved while prep clips/s × prep workers ≥ caption clips/s per replica:
the last column says how many 1-CPU prep workers one caption replica needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.parquet as pq  # noqa: E402

from curate.synthetic import COLORS, DIRECTIONS, Shot  # noqa: E402
from recaption.base import CaptionRequest  # noqa: E402
from recaption.config import RecaptionConfig  # noqa: E402
from recaption.frames import frames_from_row, prepare_batch  # noqa: E402
from recaption.testing import tiny_model_dir, write_clips  # noqa: E402

log = logging.getLogger("bench")


def _shots(n: int) -> list[Shot]:
    colors = list(COLORS)
    return [
        Shot(color=colors[i % len(colors)], direction=DIRECTIONS[i % 4], seconds=2.0)
        for i in range(n)
    ]


def _requests(table) -> list[CaptionRequest]:
    rows = table.to_pylist()
    return [
        CaptionRequest(r["clip_id"], frames_from_row(r["_frames"], r["_frames_shape"]),
                       {"start_s": r["start_s"], "end_s": r["end_s"]})
        for r in rows
    ]  # fmt: skip


def _serve(latency_s: float) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency_s)
            text = "A red object moves to the left across a dim grey frame while the camera stays still."
            body = json.dumps({"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                               "usage": {"completion_tokens": 20}}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=4, help="frames per clip")
    ap.add_argument("--size", type=int, default=224, help="longest side of the prepared frames")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument(
        "--model", default="", help="a real VLM directory instead of the tiny random one"
    )
    ap.add_argument("--ray", action="store_true", help="also time the whole Ray Data job")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="recap-bench-"))
    write_clips(work / "out", _shots(args.clips), size=(320, 240), fps=12.0)
    clips = pq.read_table(next((work / "out" / "clips").glob("*.parquet")))
    rows: list[tuple[str, float, float | None, str]] = []

    t = time.perf_counter()
    prepared = prepare_batch(clips, args.frames, args.size)
    prep_s = time.perf_counter() - t
    prep_rate = clips.num_rows / prep_s
    rows.append(("prep (1 CPU)", prep_rate, None, ""))
    reqs = _requests(prepared)

    from recaption.backend_transformers import TransformersBackend

    model = args.model or tiny_model_dir(work / "tiny-vlm")
    for bs in (1, 8):
        cfg = RecaptionConfig(backend="transformers", model=model, max_new_tokens=args.new_tokens,
                              num_gpus=1.0, num_frames=args.frames)  # fmt: skip
        be = TransformersBackend(cfg)
        be.caption(reqs[:bs])  # warm-up
        t, tokens = time.perf_counter(), 0
        for i in range(0, len(reqs), bs):
            tokens += sum(r.tokens for r in be.caption(reqs[i : i + bs]))
        dt = time.perf_counter() - t
        rows.append((f"transformers bs={bs} ({be.device})", len(reqs) / dt, tokens / dt, ""))

    from recaption.backend_openai import OpenAIBackend

    srv = _serve(args.latency_ms / 1000)
    for conc in (1, 8, 32):
        cfg = RecaptionConfig(backend="openai", model="bench", max_concurrency=conc, num_frames=args.frames,
                              base_url=f"http://127.0.0.1:{srv.server_port}/v1")  # fmt: skip
        be = OpenAIBackend(cfg)
        t = time.perf_counter()
        res = be.caption(reqs)
        dt = time.perf_counter() - t
        be.close()
        rows.append((f"openai conc={conc} ({args.latency_ms:g} ms/request)", len(reqs) / dt,
                     sum(r.tokens for r in res) / dt, ""))  # fmt: skip
    srv.shutdown()

    if args.ray:
        import ray

        from common.raylib import init_ray
        from recaption.pipeline import run_recaption

        init_ray(num_cpus=4)
        ray.data.DataContext.get_current().enable_progress_bars = False
        cfg = RecaptionConfig(backend="transformers", model=model, max_new_tokens=args.new_tokens,
                              num_frames=args.frames, frame_size=args.size, batch_size=8,
                              min_words=1)  # fmt: skip
        t = time.perf_counter()
        summary = run_recaption(work / "out", cfg)
        dt = time.perf_counter() - t
        last = summary["last_run"]
        n = last["captioned"] + last["rejected"]
        rows.append(("ray end-to-end (incl. start)", n / dt, last["tokens"] / dt, ""))

    print(f"\nclips: {clips.num_rows} x 2 s at 320x240, {args.frames} frames/clip at <= {args.size} px, "
          f"<= {args.new_tokens} new tokens\n")  # fmt: skip
    print(f"{'stage':44s} {'clips/s':>9s} {'tokens/s':>9s} {'prep workers per replica':>25s}")
    for name, rate, tok, _ in rows:
        need = "" if name.startswith("prep") else f"{rate / prep_rate:.2f}"
        print(f"{name:44s} {rate:9.1f} {'' if tok is None else f'{tok:9.0f}':>9s} {need:>25s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
