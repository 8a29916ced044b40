"""Scoring of the text-faithfulness benchmark: oracle readings of generated clips against their
prompts, chance, and the flow-matching loss with each caption word kept or swapped (caption
sensitivity). Used by ``text_faithfulness.py``, ``text_faithfulness_tune.py`` and
``demo_prompts.py``."""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.synthetic import COLORS, DIRECTIONS, caption_for  # noqa: E402

Combo = tuple[str, str, str]
"""(colour, shape, direction)."""

T_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
AXIS = {"left": "horizontal", "right": "horizontal", "up": "vertical", "down": "vertical"}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of colour, direction and both, and mean presence, over oracle readings.

    Each row has ``color``/``direction`` (truth) and ``read_color``/``read_direction``/
    ``presence`` (the oracle's reading). ``axis``: the direction read on the right axis
    (horizontal / vertical) whatever its sign."""
    if not rows:
        return dict.fromkeys(("color", "direction", "axis", "both", "presence"), float("nan")) | {
            "n": 0
        }
    col = [r["read_color"] == r["color"] for r in rows]
    dirn = [r["read_direction"] == r["direction"] for r in rows]
    axis = [AXIS.get(r["read_direction"]) == AXIS[r["direction"]] for r in rows]
    return {
        "n": len(rows),
        "color": float(np.mean(col)),
        "direction": float(np.mean(dirn)),
        "axis": float(np.mean(axis)),
        "both": float(np.mean([a and b for a, b in zip(col, dirn, strict=True)])),
        "presence": float(np.mean([r["presence"] for r in rows])),
    }


def chance() -> dict[str, float]:
    """Accuracy of a uniform guess over the generator's vocabulary."""
    nc, nd = len(COLORS), len(DIRECTIONS)
    return {"color": 1 / nc, "direction": 1 / nd, "axis": 0.5, "both": 1 / (nc * nd)}


def read_generated(
    run: Path,
    combos: Sequence[Combo],
    seeds: int,
    steps: int | None,
    cfg: float | None,
    dev: str,
    shift: float | None = None,
) -> list[dict[str, Any]]:
    """Generate one clip per (combination, seed) and read it with the oracle."""
    from curate.oracle import read_clip
    from train.generate import generate

    prompts = [
        caption_for({"kind": "shape", "color": c, "shape": s, "direction": d}) for c, s, d in combos
    ]
    rows = []
    for seed in range(seeds):
        vids = generate(run, prompts, steps=steps, cfg_scale=cfg, seed=1000 * seed, device=dev,
                        shift=shift)  # fmt: skip
        for (c, s, d), p, v in zip(combos, prompts, vids, strict=True):
            r = read_clip(v)
            truth = dict(prompt=p, seed=seed, color=c, shape=s, direction=d)
            rows.append(truth | dict(read_color=r.color, read_direction=r.direction,
                                     presence=r.presence))  # fmt: skip
    return rows


def swap_attribute(caption: str, attr: str, k: int = 0) -> str:
    """``caption`` ("a <colour> <shape> moving <direction>") with its colour or direction
    replaced by the ``k``-th other value of the generator's vocabulary."""
    words = caption.split()
    pos, vocab = {"color": (1, COLORS), "direction": (-1, DIRECTIONS)}[attr]
    others = [v for v in vocab if v != words[pos]]
    words[pos] = others[k % len(others)]
    return " ".join(words)


def opposite_direction(caption: str) -> str:
    """``caption`` with its direction word (the last) replaced by the opposite one."""
    words = caption.split()
    words[-1] = OPPOSITE[words[-1]]
    return " ".join(words)


def caption_losses(
    model: Any,
    enc: Any,
    flow: Any,
    x0: Any,
    captions: Sequence[str],
    times: Iterable[float],
    variants: dict[str, list[str]] | None = None,
) -> dict[str, dict[float, float]]:
    """Flow-matching loss of ``model`` on clean clips ``x0`` (B, C, T, H, W) at each time in
    ``times`` (fixed noise, captions kept), with the clips' own ``captions`` (``"true"``) and
    with their colour / direction word swapped (``"wrong_color"`` / ``"wrong_direction"``)
    and with the opposite direction (``"opposite_direction"``: the same axis, the other sign):
    ``{variant: {t: loss}}``. Equal losses mean the model ignores that word. ``variants``
    replaces those four caption lists (for captions in other words)."""
    import torch

    from train.flow import flow_loss, prior_noise

    variants = variants or {
        "true": list(captions),
        "wrong_color": [swap_attribute(c, "color", i) for i, c in enumerate(captions)],
        "wrong_direction": [swap_attribute(c, "direction", i) for i, c in enumerate(captions)],
        "opposite_direction": [opposite_direction(c) for c in captions],
    }
    dev, b = x0.device, x0.shape[0]
    noise = prior_noise(
        tuple(x0.shape), flow.frame_noise_share, torch.Generator().manual_seed(0)
    ).to(dev)
    keep = torch.zeros(b, dtype=torch.bool, device=dev)
    times = list(times)
    out: dict[str, dict[float, float]] = {}
    with torch.no_grad():
        for name, texts in variants.items():
            text, mask = (v.to(dev) for v in enc.encode(texts))
            out[name] = {}
            for tv in times:
                t = torch.full((b,), tv, device=dev)
                loss, _, _ = flow_loss(
                    model, x0, text, mask, flow, drop_mask=keep, t=t, noise=noise
                )
                out[name][tv] = float(loss)
    return out


def loss_by_t(run: Path, pairs: Path, max_clips: int, device: str) -> dict[str, Any]:
    """Flow-matching loss of the run's EMA model on ``pairs`` clips at fixed timesteps (the
    centre of each bin of ``T_EDGES``), fixed noise, captions kept: ``{"true": {bin: loss}}``
    with the clips' own captions, and ``"wrong_color"`` / ``"wrong_direction"`` with that
    word swapped for another (caption sensitivity: how much the model relies on each word;
    equal losses mean the word is ignored)."""
    from common.config import from_dict
    from common.video import decode_mp4
    from schemas.validate import read_table
    from train.checkpoint import load_for_generation
    from train.config import TrainConfig
    from train.data import frame_indices, resize_crop
    from train.latents import pixels_to_unit
    from train.text import build_text_encoder

    model, state = load_for_generation(run, device=device)
    cfg = from_dict(TrainConfig, state["train_config"])
    enc = build_text_encoder(dataclasses.replace(cfg.text, cache_dir=None, device=device))
    h, w = cfg.bucket_sizes()[0]
    cols = ["video", "caption"]
    files = sorted(pairs.glob("*.parquet"))
    rows = [r for f in files for r in read_table(str(f), "pairs", columns=cols).to_pylist()]
    rows = rows[:max_clips]
    out: dict[str, Any] = {}
    if not rows:
        return out
    vids = []
    for r in rows:
        frames = decode_mp4(r["video"])
        idx = frame_indices(len(frames), cfg.num_frames, cfg.frame_stride, 0.5)
        vids.append(resize_crop(frames[idx], h, w))
    x0 = pixels_to_unit(np.stack(vids)).to(device)
    centres = {f"{a:.1f}-{b:.1f}": (a + b) / 2 for a, b in itertools.pairwise(T_EDGES)}
    losses = caption_losses(model, enc, cfg.flow, x0, [r["caption"] for r in rows],
                            centres.values())  # fmt: skip
    for name, by_t in losses.items():
        out[name] = {label: by_t[t] for label, t in centres.items()}
    return out
