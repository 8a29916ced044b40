"""Training throughput: samples/s and tokens/s of a real run, loader headroom, and MFU on GPU.

    python benchmarks/train_throughput.py [--steps 30] [--clips 48] [--batch-size 4]

1. ``loader``: the Ray Data pipeline of one rank alone (plan -> decode -> bucket -> embeddings),
   batches/s after the first batch.
2. ``trainer``: the same model's train step alone on an in-memory batch of the same shape.
3. ``run``: ``train.loop.train`` end to end (1 worker), samples/s and tokens/s from its metrics.
   headroom = loader batches/s / trainer batches/s (target >= 3: the loader is never the limit).
4. ``mfu``: on a GPU, a realistic latent-space preset in bf16 (model FLOPs from
   ``train.model.model_flops`` x3 for forward+backward, over the GPU's dense bf16 peak);
   without a GPU prints 'pending (no GPU)'.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.raylib import init_ray  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.data import build_rank_dataset, make_plan_dataset, plan_rows, unpack_batch  # noqa: E402
from train.embeddings import embed_captions  # noqa: E402
from train.flow import flow_loss  # noqa: E402
from train.index import pair_files, scan_pairs, unique_captions  # noqa: E402
from train.model import DiT, ModelConfig, model_flops  # noqa: E402
from train.synthetic_pairs import make_synthetic_pairs  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
"""Dense bf16 peak FLOP/s by GPU name fragment."""


def loader_rate(index, cfg: TrainConfig, emb: str, n: int) -> float:
    """Batches/s one rank's Ray Data pipeline delivers (first batch excluded)."""
    ds = build_rank_dataset(
        make_plan_dataset(list(plan_rows(index, cfg, 1, 0, n))), 0, emb, cfg.loader_cpus
    )
    it = iter(ds.iter_batches(batch_size=1, prefetch_batches=cfg.prefetch_batches))
    unpack_batch(next(it))
    t0, k = time.perf_counter(), 0
    for raw in it:
        unpack_batch(raw)
        k += 1
    return k / (time.perf_counter() - t0)


def trainer_rate(cfg: TrainConfig, text_dim: int, n: int, device: str = "cpu") -> float:
    """Train steps/s on one in-memory batch of the run's shape (no loader), one thread
    like a 1-CPU Ray Train worker (Ray sets OMP_NUM_THREADS to the worker's CPUs)."""
    torch.set_num_threads(1)
    h, w = cfg.bucket_sizes()[0]
    model = DiT.from_config(cfg.model, text_dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    x = torch.randn(cfg.batch_size, 3, cfg.num_frames, h, w, device=device)
    text = torch.randn(cfg.batch_size, 12, text_dim, device=device)
    mask = torch.ones(cfg.batch_size, 12, dtype=torch.bool, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    for i in range(n + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss, _, _ = flow_loss(model, x, text, mask, cfg.flow, generator=gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return n / (time.perf_counter() - t0)


def mfu(preset: str = "B", batch: int = 8, frames: int = 9, size: int = 256) -> str:
    """MFU of a bf16 train step of a latent-space preset (Wan VAE shapes), or 'pending'."""
    if not torch.cuda.is_available():
        return "pending (no GPU)"
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    cfg = ModelConfig(preset=preset, in_channels=16)
    model = DiT.from_config(cfg, 4096, in_channels=16).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    t_lat, hw = 1 + (frames - 1) // 4, size // 8
    x = torch.randn(batch, 16, t_lat, hw, hw, device="cuda")
    text = torch.randn(batch, 128, 4096, device="cuda")
    mask = torch.ones(batch, 128, dtype=torch.bool, device="cuda")
    from train.flow import FlowConfig

    steps = 10
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _, _ = flow_loss(model, x, text, mask, FlowConfig())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    tokens = model.num_tokens(t_lat, hw, hw)
    flops = 3 * model_flops(model.config, tokens, 128) * batch
    achieved = flops / dt
    pct = f"{100 * achieved / peak:.1f}%" if peak else "n/a (unknown peak)"
    return (
        f"{pct} ({name}, DiT-{preset}, {tokens} tokens x {batch}, "
        f"{achieved / 1e12:.1f} TFLOP/s, {batch / dt:.1f} samples/s)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="steps of the end-to-end run")
    ap.add_argument("--clips", type=int, default=48, help="synthetic pairs to train on")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--mfu-preset", default="B", help="model preset for the GPU MFU line")
    ap.add_argument("--skip-run", action="store_true", help="skip the end-to-end train() run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    init_ray(num_cpus=4)
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    from train.loop import train

    cfg = TrainConfig(
        num_frames=8,
        buckets=("32x32",),
        image_fraction=0.0,
        batch_size=args.batch_size,
        steps=args.steps,
        checkpoint_every=10**6,
        sample_every=-1,
        log_every=max(1, args.steps // 3),
        loader_cpus=0.5,
    ).resolved()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_synthetic_pairs(data, n=args.clips, sizes=((32, 32), (48, 48)), seconds=1.5, fps=12)
        index = scan_pairs(pair_files([data]))
        emb = str(Path(tmp) / "emb.arrow")
        text_dim = embed_captions(unique_captions(index), cfg.text, emb)
        lr = loader_rate(index, cfg, emb, n=24)
        tr = trainer_rate(cfg, text_dim, n=10)
        tokens = DiT.from_config(cfg.model, text_dim).num_tokens(cfg.num_frames, 32, 32)
        rows.append(
            (
                "loader (1 rank, Ray Data)",
                f"{lr:.2f} batches/s",
                f"{lr * cfg.batch_size:.1f} samples/s",
            )
        )
        rows.append(
            (
                "trainer step alone (CPU)",
                f"{tr:.2f} batches/s",
                f"{tr * cfg.batch_size:.1f} samples/s, {tr * cfg.batch_size * tokens:.0f} tok/s",
            )
        )
        consumed, how = tr, "vs trainer step alone"
        if not args.skip_run:
            summary = train([str(data)], Path(tmp) / "run", cfg)
            m = summary["metrics"]
            rows.append(
                (
                    "train() end to end, 1 worker",
                    f"{m['samples_per_s']:.1f} samples/s",
                    f"{m['tokens_per_s']:.0f} tokens/s, data wait {m['data_wait_frac']:.1%}",
                )
            )
            consumed, how = m["samples_per_s"] / cfg.batch_size, "vs batches/s train() consumed"
        rows.append(("loader headroom", f"{lr / consumed:.1f}x", f"target >= 3 ({how})"))
    rows.append((f"MFU bf16 DiT-{args.mfu_preset}", mfu(args.mfu_preset), ""))
    print(
        f"\nmodel tiny ({tokens} tokens/sample: {cfg.num_frames}x32x32, patch 1x4x4), "
        f"batch {cfg.batch_size}, {args.clips} synthetic clips"
    )
    print(f"{'measure':34s} {'value':24s} detail")
    for a, b, c in rows:
        print(f"{a:34s} {b:24s} {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
