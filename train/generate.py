"""Text-to-video generation from a training run's EMA weights.

``generate(run_dir, prompts, frames, size, steps, cfg_scale, seed)`` rebuilds the DiT, the
text encoder and the latent codec from the latest checkpoint's ``state.json``
(``train.checkpoint``), samples with Euler + classifier-free guidance
(``train.flow.euler_sample``, with the training timestep shift for the output's token count)
and returns ``uint8`` videos ``(T, H, W, 3)``. ``write_videos`` writes them as MP4.

CLI glue for ``spacetime generate`` (the parser lives in ``train/cli.py``):
``add_generate_arguments(parser)`` adds the flags and ``generate_cli(args) -> int`` runs them.
Prompt ``i`` uses noise seeded with ``seed + i``, so a prompt's video does not depend on
the other prompts in the batch; with ``same_noise`` every prompt starts from the noise of
``seed``, so two prompts' videos differ only by what their text does.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from common.video import encode_mp4
from train.checkpoint import load_for_generation
from train.flow import FlowConfig, euler_sample, prior_noise, shift_for_tokens
from train.latents import LatentConfig, build_latent_codec
from train.text import TextConfig, build_text_encoder

log = logging.getLogger(__name__)


def _config(cls, data: dict | None):
    """Dataclass from a state.json section, ignoring keys this version does not know."""
    if not data:
        return cls()
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"size must look like WIDTHxHEIGHT (e.g. 32x32), got {text!r}") from e
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return w, h


def _size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


@torch.no_grad()
def generate(
    run_dir: str | Path,
    prompts: list[str],
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    steps: int | None = None,
    cfg_scale: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 8,
    shift: float | None = None,
    same_noise: bool = False,
) -> list[np.ndarray]:
    """Videos (T, H, W, 3) uint8, one per prompt, from the run's latest EMA weights.

    ``frames``/``size=(width, height)`` default to the training shape recorded in the
    checkpoint; ``steps``/``cfg_scale`` to its flow config; ``shift`` (the sampling timestep
    shift) to the training shift for this token count. Prompt ``i`` starts from noise seeded
    with ``seed + i``, or with ``seed`` for every prompt when ``same_noise``.
    """
    if not prompts:
        return []
    model, state = load_for_generation(run_dir, device=device)
    flow = _config(FlowConfig, state.get("flow"))
    text_cfg = dataclasses.replace(
        _config(TextConfig, state.get("text")), cache_dir=None, device=device
    )
    latent_cfg = dataclasses.replace(_config(LatentConfig, state.get("latent")), device=device)
    video = state.get("video") or {}
    if frames is not None and int(frames) < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if size is not None and min(size) < 1:
        raise ValueError(f"size must be positive, got {size[0]}x{size[1]}")
    frames = int(frames if frames is not None else video.get("frames") or 0)
    if size is None:
        size = (int(video.get("width") or 0), int(video.get("height") or 0))
    width, height = size
    if not frames or not width or not height:
        raise ValueError(
            "the checkpoint records no default video shape; pass frames and size (--frames, --size WxH)"
        )
    steps = int(steps or flow.sample_steps)
    cfg_scale = float(flow.cfg_scale if cfg_scale is None else cfg_scale)

    encoder = build_text_encoder(text_cfg)
    if encoder.dim != model.config.text_dim:
        raise ValueError(
            f"text encoder {encoder.name!r} gives {encoder.dim}-d embeddings but the model was "
            f"trained with {model.config.text_dim}-d text"
        )
    codec = build_latent_codec(latent_cfg)
    lshape = codec.latent_shape(frames, height, width)  # (C, t, h, w)
    if lshape[0] != model.config.in_channels:
        raise ValueError(
            f"codec {codec.name} has {lshape[0]} channels, model expects {model.config.in_channels}"
        )
    tokens = model.num_tokens(*lshape[1:])  # ValueError if not divisible by the patch
    if shift is not None and shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    shift = shift_for_tokens(tokens, flow) if shift is None else float(shift)
    log.info(
        "generating %d video(s) %dx%dx%d (%d tokens), %d steps, cfg %.2f, shift %.2f",
        len(prompts),
        frames,
        height,
        width,
        tokens,
        steps,
        cfg_scale,
        shift,
    )
    out: list[np.ndarray] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        text, mask = encoder.encode(chunk)
        noise = torch.stack(
            [
                prior_noise(
                    lshape,
                    flow.frame_noise_share,
                    torch.Generator().manual_seed(seed if same_noise else seed + start + i),
                )
                for i in range(len(chunk))
            ]
        ).to(device)
        x0 = euler_sample(
            model,
            noise.shape,
            text.to(device),
            mask.to(device),
            steps=steps,
            cfg_scale=cfg_scale,
            shift=shift,
            noise=noise,
        )
        vids = codec.decode(x0)  # (B, T, H, W, 3) uint8
        out.extend(np.ascontiguousarray(v[:frames]) for v in vids)
    return out


def write_videos(
    videos: list[np.ndarray], outputs: list[str | Path], fps: float = 8.0
) -> list[Path]:
    """Write each (T, H, W, 3) uint8 video as H.264 MP4 to the matching output path."""
    if len(videos) != len(outputs):
        raise ValueError(f"{len(videos)} videos but {len(outputs)} output paths")
    paths = []
    for vid, path in zip(videos, outputs, strict=True):
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(encode_mp4(vid, fps=fps))
        paths.append(p)
    return paths


def output_paths(output: str | Path, count: int) -> list[Path]:
    """One output path, or ``stem_000.mp4``, ``stem_001.mp4`` … for several prompts."""
    out = Path(output)
    if count == 1:
        return [out]
    suffix = out.suffix or ".mp4"
    return [out.with_name(f"{out.stem}_{i:03d}{suffix}") for i in range(count)]


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``spacetime generate``."""
    parser.add_argument("run", help="run directory (latest checkpoint) or a checkpoint directory")
    parser.add_argument("prompt", nargs="?", default=None, help="the text prompt")
    parser.add_argument(
        "--output",
        "-o",
        default="video.mp4",
        help="output MP4; with several prompts, NAME_000.mp4, NAME_001.mp4, …",
    )
    parser.add_argument(
        "--prompts-file",
        default=None,
        help="a text file with one prompt per line (added after PROMPT)",
    )
    parser.add_argument(
        "--frames",
        type=_positive_int,
        default=None,
        help="frames to generate (default: the training clip length)",
    )
    parser.add_argument(
        "--size", type=_size_arg, default=None, help="WIDTHxHEIGHT (default: the training size)"
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="Euler steps (default: flow.sample_steps of the run)",
    )
    parser.add_argument(
        "--cfg",
        type=float,
        default=None,
        help="classifier-free guidance scale, 1 = off (default: flow.cfg_scale)",
    )
    parser.add_argument(
        "--shift",
        type=float,
        default=None,
        help="sampling timestep shift, > 1 spends more steps at high noise (default: the "
        "training shift for this many tokens, from flow.base_shift)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (prompt i uses seed+i)")
    parser.add_argument(
        "--same-noise",
        action="store_true",
        help="start every prompt from the noise of --seed, so the videos differ only by their "
        "prompts (compare what a word changes)",
    )
    parser.add_argument(
        "--fps", type=float, default=None, help="frame rate of the MP4 (default: the training fps)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")


def generate_cli(args: argparse.Namespace) -> int:
    """Run ``spacetime generate``; returns the exit code."""
    prompts = [args.prompt] if getattr(args, "prompt", None) else []
    pf = getattr(args, "prompts_file", None)
    if pf:
        lines = Path(pf).read_text(encoding="utf-8").splitlines()
        prompts += [ln.strip() for ln in lines if ln.strip()]
    if not prompts:
        log.error("no prompt: give PROMPT or --prompts-file")
        return 2
    size = getattr(args, "size", None)
    if isinstance(size, str):  # a Namespace built without this parser
        try:
            size = parse_size(size)
        except ValueError as e:
            log.error("%s", e)
            return 2
    try:
        videos = generate(
            args.run,
            prompts,
            frames=getattr(args, "frames", None),
            size=size,
            steps=getattr(args, "steps", None),
            cfg_scale=getattr(args, "cfg", None),
            seed=int(getattr(args, "seed", 0) or 0),
            device=getattr(args, "device", "cpu") or "cpu",
            shift=getattr(args, "shift", None),
            same_noise=bool(getattr(args, "same_noise", False)),
        )
    except (FileNotFoundError, ValueError, ImportError) as e:
        log.error("%s", e)
        return 1
    _, state = _state_only(args.run)
    fps = getattr(args, "fps", None) or (state.get("video") or {}).get("fps") or 8.0
    paths = write_videos(
        videos, output_paths(getattr(args, "output", "video.mp4"), len(videos)), fps
    )
    for prompt, path, vid in zip(prompts, paths, videos, strict=True):
        t, h, w = vid.shape[:3]
        print(f"{path}  {t} frames {w}x{h}  {prompt!r}")
    return 0


def _state_only(run_dir) -> tuple[Path, dict]:
    import json

    from train.checkpoint import STATE_FILE, latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    return ckpt, json.loads((ckpt / STATE_FILE).read_text())
