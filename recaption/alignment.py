"""Text–video alignment: mean open_clip cosine similarity between a caption and its frames.

The short caption is scored when there is one (CLIP's text tower reads 77 tokens; a dense
paragraph would be cut), else the dense caption. The model comes from an open_clip name plus
a pretrained tag, or a local checkpoint file; ``alignment_model`` may also be the path of an
open_clip model-config JSON (a custom architecture). Missing weights stop the job at start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from common.openclip import needs_quick_gelu
from recaption.base import WeightsMissing

log = logging.getLogger(__name__)

_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _model_name(model: str) -> str:
    """Register a model-config JSON path with open_clip; return the model name to create."""
    import open_clip

    p = Path(model)
    if p.suffix == ".json":
        if not p.is_file():
            raise WeightsMissing(f"open_clip model config {model} does not exist")
        open_clip.add_model_config(p)
        return p.stem
    return model


def check_weights(model: str, pretrained: str, checkpoint: str) -> None:
    """Fail fast (:class:`WeightsMissing`) when the alignment weights are not on this machine."""
    import open_clip

    name = _model_name(model)
    if name not in open_clip.list_models():
        raise WeightsMissing(f"unknown open_clip model {model!r} (see open_clip.list_models())")
    if checkpoint:
        if not Path(checkpoint).expanduser().is_file():
            raise WeightsMissing(f"alignment checkpoint {checkpoint} does not exist")
        return
    how = (
        f'download once with python -c "import open_clip; open_clip.create_model_and_transforms('
        f"'{name}', pretrained='{pretrained}')\" on a machine with network, or set "
        "recaption.alignment_checkpoint to a local file"
    )
    pcfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise WeightsMissing(
            f"open_clip {name} has no pretrained tag {pretrained!r} (known: {tags})"
        )
    if "file" in pcfg and Path(pcfg["file"]).is_file():
        return
    hub = pcfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        if hub.endswith("/"):
            repo, files = hub[:-1], _HF_FILES
        else:
            repo, fname = os.path.split(hub)
            files = (fname,)
        if any(isinstance(try_to_load_from_cache(repo, f), str) for f in files):
            return
    url = pcfg.get("url", "")
    if url and (Path.home() / ".cache" / "clip" / os.path.basename(url)).is_file():
        return
    raise WeightsMissing(f"alignment weights open_clip {name}/{pretrained} are not cached; {how}")


class AlignmentScorer:
    """An open_clip model that scores (frames, caption) pairs."""

    def __init__(
        self, model: str, pretrained: str = "", checkpoint: str = "", device: str | None = None
    ):
        import open_clip
        import torch

        check_weights(model, pretrained, checkpoint)
        name = _model_name(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        weights = str(Path(checkpoint).expanduser()) if checkpoint else pretrained
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            name, pretrained=weights, device=self.device,
            force_quick_gelu=needs_quick_gelu(name, weights),
        )  # fmt: skip
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)

    def score(self, frames: list[np.ndarray | None], texts: list[str | None]) -> list[float | None]:
        """Mean cosine similarity of each text with each of its frames (None where either is
        missing)."""
        import torch
        from PIL import Image

        keep = [
            i for i, (f, t) in enumerate(zip(frames, texts, strict=True)) if f is not None and t
        ]
        out: list[float | None] = [None] * len(texts)
        if not keep:
            return out
        pix, owner = [], []
        for i in keep:
            for f in frames[i]:
                pix.append(self.preprocess(Image.fromarray(f)))
                owner.append(i)
        with torch.inference_mode():
            img = self.model.encode_image(torch.stack(pix).to(self.device))
            txt = self.model.encode_text(self.tokenizer([texts[i] for i in keep]).to(self.device))
            img = torch.nn.functional.normalize(img.float(), dim=-1)
            txt = torch.nn.functional.normalize(txt.float(), dim=-1)
        pos = {i: k for k, i in enumerate(keep)}
        sims: dict[int, list[float]] = {}
        for row, i in enumerate(owner):
            sims.setdefault(i, []).append(float(img[row] @ txt[pos[i]]))
        for i, s in sims.items():
            out[i] = float(np.mean(s))
        return out


def describe_weights(cfg: Any) -> str:
    """Human name of the alignment weights a config asks for."""
    return (
        f"open_clip {cfg.alignment_model} ({cfg.alignment_checkpoint or cfg.alignment_pretrained})"
    )
