"""DiT training-step and sampling throughput for the size presets, printed as one table.

Usage: python benchmarks/bench_dit.py [--preset tiny] [--shapes 8x32x32,16x32x32,1x32x32]
       [--batch 8] [--steps 5] [--device cpu] [--sample-steps 10]

Columns: parameters, tokens per sample, forward+backward+AdamW step time, samples/s, the
achieved model TFLOP/s (3 x forward FLOPs from ``model_flops``), and the time to sample one
batch with CFG (2 forward passes per step).
"""

from __future__ import annotations

import argparse
import time

import torch

from train.flow import FlowConfig, euler_sample, flow_loss
from train.model import DiT, ModelConfig, count_params, model_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--shapes", default="8x32x32,16x32x32,1x32x32", help="TxHxW list")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps (after 1 warm-up)")
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--text-len", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    dev = torch.device(args.device)
    cfg = ModelConfig(preset=args.preset)
    model = DiT.from_config(cfg, args.text_dim, in_channels=args.channels).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    flow = FlowConfig()
    params = count_params(model)
    rows = []
    for spec in args.shapes.split(","):
        t, h, w = (int(v) for v in spec.lower().split("x"))
        b = args.batch
        x0 = torch.randn(b, args.channels, t, h, w, device=dev)
        text = torch.randn(b, args.text_len, args.text_dim, device=dev)
        mask = torch.ones(b, args.text_len, dtype=torch.bool, device=dev)
        tokens = model.num_tokens(t, h, w)
        times = []
        model.train()
        for i in range(args.steps + 1):
            t0 = time.perf_counter()
            loss, _, _ = flow_loss(model, x0, text, mask, flow)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
        step = sum(times) / len(times)
        flops = 3 * model_flops(model.config, tokens, args.text_len) * b
        model.eval()
        t0 = time.perf_counter()
        euler_sample(model, x0.shape, text, mask, steps=args.sample_steps, cfg_scale=5.0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        sample = time.perf_counter() - t0
        rows.append((spec, tokens, step, b / step, flops / step / 1e12, sample))

    print(f"preset={args.preset} params={params / 1e6:.2f}M batch={args.batch} device={dev}")
    print(
        f"{'shape TxHxW':>12} {'tokens':>7} {'step s':>8} {'samples/s':>10} "
        f"{'TFLOP/s':>8} {f'sample {args.sample_steps} steps s':>20}"
    )
    for spec, tokens, step, sps, tf, sample in rows:
        print(f"{spec:>12} {tokens:>7} {step:>8.3f} {sps:>10.1f} {tf:>8.3f} {sample:>20.2f}")


if __name__ == "__main__":
    main()
