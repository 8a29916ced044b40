"""NSFW scorer (pluggable): the probability that a clip is not safe for work.

Two kinds of model, chosen by what ``curate.score.nsfw_model`` names:

- a head file (``.pth``/``.pt``/``.bin``/``.safetensors``): a linear-stack head (see
  ``curate.score_aesthetic``) on the clip's L2-normalised open_clip frame embeddings; one
  output is a logit (sigmoid), two outputs are (safe, nsfw) logits (softmax);
- anything else: a transformers image-classification model id or local directory (e.g.
  ``Falconsai/nsfw_image_detection``); the score is the summed probability of the classes
  named in ``nsfw_labels``, averaged over the key frames.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.score_aesthetic import load_head
from curate.score_config import ScoreConfig

log = logging.getLogger(__name__)

HEAD_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def is_head(spec: str) -> bool:
    """Whether ``nsfw_model`` names a head file on CLIP embeddings (else a transformers model)."""
    return Path(spec).suffix in HEAD_SUFFIXES


def nsfw_help(spec: str) -> str:
    """How to supply the NSFW weights."""
    return (
        f"NSFW weights {spec!r} are not available locally: give a local directory "
        "(huggingface-cli download Falconsai/nsfw_image_detection --local-dir DIR; "
        "curate.score.nsfw_model=DIR), pre-cache the model id in the Hugging Face cache, set "
        "curate.score.allow_download=true, or set curate.score.nsfw_model='' to turn NSFW off"
    )


def check_nsfw_weights(cfg: ScoreConfig) -> None:
    """Raise FileNotFoundError naming the weights when the NSFW model cannot be loaded offline."""
    spec = cfg.nsfw_model
    if not spec:
        return
    p = Path(spec)
    if is_head(spec):
        if not p.is_file():
            raise FileNotFoundError(nsfw_help(spec))
        if not cfg.clip_model:
            raise FileNotFoundError(
                f"NSFW head {spec} scores open_clip embeddings: set curate.score.clip_model"
            )
        return
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{spec} has no config.json: not a transformers model dir")
        return
    # a path (not an ``org/name`` model id) that is not there: nothing to download either
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or p.exists():
        raise FileNotFoundError(f"{spec} is not a directory. " + nsfw_help(spec))
    if cfg.allow_download:
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(spec, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not a valid model id either
        cached = None
    if not isinstance(cached, str):
        raise FileNotFoundError(nsfw_help(spec))


class NsfwScorer:
    """Scores clips' key frames (or their embeddings) for NSFW content."""

    def __init__(self, cfg: ScoreConfig, device: str = "cpu", embed_dim: int | None = None):
        self.cfg, self.device = cfg, device
        spec = cfg.nsfw_model
        self.head = None
        if is_head(spec):
            self.head = load_head(spec, embed_dim).to(device)
            if self.head.out_features not in (1, 2):
                raise ValueError(
                    f"NSFW head {spec} must have 1 or 2 outputs, has {self.head.out_features}"
                )
            return
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        local = not cfg.allow_download
        self.processor = AutoImageProcessor.from_pretrained(spec, local_files_only=local)
        self.model = AutoModelForImageClassification.from_pretrained(spec, local_files_only=local)
        self.model.to(device).eval()
        labels = {int(i): str(n).lower() for i, n in self.model.config.id2label.items()}
        wanted = {str(n).lower() for n in cfg.nsfw_labels}  # "Porn" in a config is "porn"
        self.nsfw_ids = sorted(i for i, n in labels.items() if n in wanted)
        if not self.nsfw_ids:
            raise ValueError(
                f"NSFW model {spec} has labels {sorted(labels.values())}, none of which is in "
                f"curate.score.nsfw_labels={list(cfg.nsfw_labels)}"
            )

    @property
    def uses_embeddings(self) -> bool:
        """True when the scorer reads CLIP embeddings rather than pixels."""
        return self.head is not None

    @torch.no_grad()
    def score_embeddings(self, frame_embeddings: torch.Tensor) -> np.ndarray:
        """(frames, dim) normalised embeddings → (frames,) probabilities (head mode)."""
        out = self.head(frame_embeddings.to(self.device, torch.float32))
        p = torch.sigmoid(out[:, 0]) if out.shape[-1] == 1 else out.softmax(-1)[:, 1]
        return p.cpu().numpy()

    @torch.no_grad()
    def score_images(self, images: list[Any]) -> np.ndarray:
        """PIL images → (images,) probabilities (classifier mode)."""
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        probs = self.model(**inputs).logits.float().softmax(-1)[:, self.nsfw_ids].sum(-1)
        return probs.cpu().numpy()
