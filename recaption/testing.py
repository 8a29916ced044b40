"""Tiny random models for tests and benchmarks (never used by a real run)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def tiny_model_dir(path: str | os.PathLike, seed: int = 0) -> str:
    """Write a tiny randomly initialised Qwen2-VL (hidden 32, one layer) with an offline
    word-level tokenizer to ``path`` and return it: for tests and benchmarks only (its
    captions are gibberish)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
    words = ("a the red green blue object moves left right up down camera pans scene dark bright "
             "slowly quickly across frame and is of on in with . , user assistant system").split()  # fmt: skip
    vocab = {t: i for i, t in enumerate([*special, "[UNK]", *sorted(set(words))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(
        pattern=r"(<\|[a-z_]+\|>|\s+|[.,])", behavior="isolated"
    )
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}"
        "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
        "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'video' %}"
        "<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=special[1:], chat_template=template,
    )  # fmt: skip
    sizes = {"min_pixels": 28 * 28, "max_pixels": 56 * 56, "patch_size": 14, "merge_size": 2,
             "temporal_patch_size": 2}  # fmt: skip
    proc = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        tokenizer=fast,
        video_processor=Qwen2VLVideoProcessor(**sizes),
        chat_template=template,
    )
    ids = {k: vocab[k] for k in special}
    cfg = Qwen2VLConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 2048, "bos_token_id": ids["<|im_start|>"],
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2,
                       "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "in_channels": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|im_start|>"],
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|im_start|>"]
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


def tiny_clip_config(path: str | os.PathLike) -> str:
    """Write a tiny open_clip model config (``tiny-align.json``) for tests; returns its path."""
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "patch_size": 16,
            "head_width": 16,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    p = Path(path) / "tiny-align.json"
    p.write_text(json.dumps(cfg))
    return str(p)


def tiny_clip_checkpoint(path: str | os.PathLike, seed: int = 0) -> tuple[str, str]:
    """Write the tiny open_clip config and random weights for it; returns (config, checkpoint)."""
    import open_clip
    import torch

    config = tiny_clip_config(path)
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(Path(config).stem, pretrained=None)
    ckpt = Path(path) / "tiny-align.pt"
    torch.save(model.state_dict(), ckpt)
    return config, str(ckpt)


def truth_scores(shot: Any) -> dict[str, Any]:
    """Score values that state a synthetic shot's truth (what ideal scorers would measure)."""
    s = shot if isinstance(shot, dict) else dataclasses.asdict(shot)
    row: dict[str, Any] = {"luma_mean": 70.0, "dark_frac": 0.0, "bright_frac": 0.0}
    if s["kind"] == "shape":
        row.update(dominant_colors=["gray", s["color"]], motion_direction=s["direction"],
                   camera_motion="static", motion=1.0, colorfulness=20.0)  # fmt: skip
    elif s["kind"] == "pan":
        cam = {"left": "pan_left", "right": "pan_right", "up": "tilt_up", "down": "tilt_down"}
        row.update(camera_motion=cam[s["direction"]], motion=2.0, colorfulness=40.0)
    elif s["kind"] == "black":
        row.update(luma_mean=0.0, dark_frac=1.0, dominant_colors=["black"], motion=0.0)
    return row


def write_clips(
    out: str | os.PathLike,
    shots: Sequence[Any],
    size: tuple[int, int] = (96, 64),
    fps: float = 12.0,
    scores: str = "truth",
) -> list[dict[str, Any]]:
    """Render each synthetic ``Shot`` as one clip row in ``OUT/clips/part-00000.parquet``.

    ``scores="truth"`` fills the score columns from the shot (``truth_scores``);
    ``scores="scorers"`` runs ``curate.scoring.score_frames`` on the frames. Returns the rows
    (without video bytes).
    """
    import hashlib

    import numpy as np

    from common.video import encode_mp4
    from curate.synthetic import render_shot
    from schemas.validate import rows_to_table, write_table

    rows = []
    for i, shot in enumerate(shots):
        frames = np.stack(list(render_shot(shot, size[0], size[1], fps)))
        video = encode_mp4(frames, fps)
        cid = hashlib.sha256(f"{i}-{shot}".encode()).hexdigest()[:32]
        row = {"clip_id": cid, "source_id": "synthetic", "source_path": f"synthetic/{i}.mp4",
               "scene_index": i, "start_s": 0.0, "end_s": len(frames) / fps, "fps": fps,
               "num_frames": len(frames), "width": size[0], "height": size[1], "video": video}  # fmt: skip
        if scores == "scorers":
            from curate.score_config import ScoreConfig
            from curate.scoring import score_frames

            row.update(score_frames(frames, fps, ScoreConfig()))
        else:
            row.update(truth_scores(shot))
        rows.append(row)
    clips = Path(out) / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    write_table(rows_to_table(rows, "clips"), str(clips / "part-00000.parquet"), "clips")
    return [{k: v for k, v in r.items() if k != "video"} for r in rows]
