"""Model-backed scores: open_clip frame embeddings, the LAION aesthetic score and NSFW.

``ModelScorer`` is the callable class of a Ray Data actor-pool stage::

    ds.map_batches(ModelScorer, fn_constructor_kwargs={"cfg": score_cfg}, batch_format="pyarrow",
                   compute=ActorPoolStrategy(size=n), num_gpus=score_cfg.num_gpus, ...)

Models load once in ``__init__``; each batch's ``_key_frames`` (JPEG key frames, written by
``curate.scoring.key_frames`` from the frames decoded once in the split stage) are embedded
in one forward pass. Added columns: ``clip_embedding`` (the L2-normalised mean of the
L2-normalised frame embeddings), ``aesthetic``, ``nsfw`` and ``_score_error`` (null, or the
reason a row could not be scored: its scores are then null and the pipeline makes it a
``stage=score`` reject). Weights are never invented: ``check_weights`` fails at start naming
missing weights and how to supply them, and nothing downloads unless ``allow_download``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from common.config import ConfigError
from common.openclip import is_weights_file, needs_quick_gelu
from curate.score_config import ScoreConfig

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("clip_embedding", "aesthetic", "nsfw", "_score_error")
"""Columns ModelScorer sets on every batch."""

CLIP_HELP = (
    "give a local checkpoint (curate.score.clip_pretrained=/path/open_clip_model.safetensors, "
    "e.g. from huggingface-cli download timm/vit_large_patch14_clip_224.openai, with "
    "curate.score.clip_model=ViT-L-14-quickgelu: OpenAI's weights were trained with QuickGELU), "
    "pre-cache the tag in the Hugging Face cache, set curate.score.allow_download=true, or set "
    "curate.score.clip_model='' to turn the model scorers off"
)


def register_model_config(cfg: ScoreConfig) -> None:
    """Register ``clip_model_config`` (an open_clip model config JSON) with open_clip."""
    if cfg.clip_model_config:
        import open_clip

        p = Path(cfg.clip_model_config)
        if not p.is_file():
            raise FileNotFoundError(f"curate.score.clip_model_config {p} does not exist")
        open_clip.add_model_config(p)


def check_head_sizes(cfg: ScoreConfig) -> None:
    """ConfigError when a head on CLIP embeddings (aesthetic, NSFW) takes another embedding size
    than the open_clip model's config gives: found at start, not in the actors after the split."""
    import open_clip

    from curate.score_aesthetic import load_head
    from curate.score_nsfw import is_head

    heads = [cfg.aesthetic_head] if cfg.aesthetic_head else []
    heads += [cfg.nsfw_model] if cfg.nsfw_model and is_head(cfg.nsfw_model) else []
    if not cfg.clip_model or not heads:
        return
    register_model_config(cfg)
    config = open_clip.get_model_config(cfg.clip_model) or {}
    dim, vision = config.get("embed_dim"), config.get("vision_cfg") or {}
    if dim is None or (vision.get("timm_model_name") and vision.get("timm_proj") in (None, "none")):
        return  # a timm trunk without projection gives its own width: ModelScorer checks it built
    for h in heads:
        try:
            load_head(h, int(dim))
        except ValueError as e:
            raise ConfigError(f"{e} (curate.score.clip_model={cfg.clip_model})") from None


def check_clip_weights(cfg: ScoreConfig) -> None:
    """Raise FileNotFoundError naming the open_clip weights when they are not available."""
    import open_clip

    register_model_config(cfg)
    name, tag = cfg.clip_model, cfg.clip_pretrained
    if name not in open_clip.list_models():
        raise FileNotFoundError(
            f"unknown open_clip model {name!r} (curate.score.clip_model); see open_clip.list_models(), "
            "or register a config with curate.score.clip_model_config=/path/NAME.json"
        )
    if not tag:
        raise FileNotFoundError(
            f"open_clip model {name} has no weights configured (curate.score.clip_pretrained); {CLIP_HELP}"
        )
    if is_weights_file(tag):
        if not Path(tag).is_file():
            raise FileNotFoundError(
                f"open_clip checkpoint {tag} for {name} does not exist; {CLIP_HELP}"
            )
        return
    from open_clip.pretrained import _get_safe_alternatives, get_pretrained_cfg

    pcfg = get_pretrained_cfg(name, tag)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise FileNotFoundError(
            f"open_clip has no pretrained tag {tag!r} for {name} (known: {tags})"
        )
    if cfg.allow_download:
        return
    hub = pcfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = hub.rstrip("/").rsplit("/", 1) if not hub.endswith("/") else (hub[:-1], "")
        filename = filename or "open_clip_pytorch_model.bin"
        for fn in [*_get_safe_alternatives(filename), filename]:
            if isinstance(try_to_load_from_cache(repo, fn), str):
                return
    raise FileNotFoundError(
        f"open_clip weights {name}/{tag} (hf_hub {hub or pcfg.get('url')}) are not in the local "
        f"cache; {CLIP_HELP}"
    )


def _device(cfg: ScoreConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _column(batch: Any, name: str) -> list[Any]:
    if isinstance(batch, pa.Table):
        return batch.column(name).to_pylist()
    return list(batch[name])


def _set(batch: Any, name: str, values: list[Any], typ: pa.DataType) -> Any:
    if isinstance(batch, pa.Table):
        arr = pa.array(values, type=typ)
        i = batch.schema.get_field_index(name)
        field = pa.field(name, typ)
        return batch.set_column(i, field, arr) if i >= 0 else batch.append_column(field, arr)
    if hasattr(batch, "assign"):  # pandas
        batch[name] = values
        return batch
    out = dict(batch)
    out[name] = np.array(values, dtype=object)
    return out


class ModelScorer:
    """Ray Data callable class: open_clip embeddings, aesthetic and NSFW for a batch of clips."""

    def __init__(self, cfg: ScoreConfig):
        import open_clip
        import torch

        self.check_weights(cfg)
        self.cfg = cfg
        self.device = _device(cfg)
        self.model = self.preprocess = self.aesthetic = self.nsfw = None
        embed_dim = None
        if cfg.clip_model:
            register_model_config(cfg)
            model, _, preprocess = open_clip.create_model_and_transforms(
                cfg.clip_model, pretrained=cfg.clip_pretrained, device=self.device,
                force_quick_gelu=needs_quick_gelu(cfg.clip_model, cfg.clip_pretrained),
            )  # fmt: skip
            self.model, self.preprocess = model.eval(), preprocess
            with torch.no_grad():
                size = preprocess.transforms[0].size if hasattr(preprocess, "transforms") else 224
                side = size if isinstance(size, int) else size[0]
                embed_dim = int(
                    model.encode_image(torch.zeros(1, 3, side, side, device=self.device)).shape[-1]
                )
            log.info("open_clip %s (%s) on %s, %d-d", cfg.clip_model, cfg.clip_pretrained,
                     self.device, embed_dim)  # fmt: skip
        if cfg.aesthetic_head:
            from curate.score_aesthetic import AestheticScorer

            tag = cfg.clip_pretrained
            if tag and not is_weights_file(tag) and tag != "openai":
                log.warning(
                    "the LAION aesthetic heads were fit on OpenAI ViT-L/14 embeddings; with "
                    "open_clip %s:%s their scores are not calibrated",
                    cfg.clip_model,
                    tag,
                )

            self.aesthetic = AestheticScorer(cfg.aesthetic_head, embed_dim, self.device)
        if cfg.nsfw_model:
            from curate.score_nsfw import NsfwScorer

            self.nsfw = NsfwScorer(cfg, self.device, embed_dim)

    @staticmethod
    def check_weights(cfg: ScoreConfig) -> None:
        """Fail fast (FileNotFoundError naming the weights and how to supply them) when any
        configured model's weights are not available locally; never downloads."""
        from curate.score_nsfw import check_nsfw_weights

        if cfg.clip_model:
            check_clip_weights(cfg)
        if cfg.aesthetic_head and not Path(cfg.aesthetic_head).is_file():
            from curate.score_aesthetic import AESTHETIC_HELP

            raise FileNotFoundError(
                f"aesthetic head {cfg.aesthetic_head} does not exist: {AESTHETIC_HELP}"
            )
        check_nsfw_weights(cfg)
        check_head_sizes(cfg)

    def _score_rows(self, frames: list[list[bytes]]) -> dict[str, list[Any]]:
        """Scores of clips given as lists of JPEG key frames (raises on any failure)."""
        import torch
        from PIL import Image

        from curate.scoring import decode_key_frame

        images, owner = [], []
        for i, fr in enumerate(frames):
            if not fr:
                raise ValueError("no key frames")
            for jpeg in fr:
                images.append(Image.fromarray(decode_key_frame(jpeg)))
                owner.append(i)
        owner_t = torch.tensor(owner)
        n = len(frames)

        def per_clip(values: torch.Tensor) -> list[float]:
            sums = torch.zeros(n, dtype=torch.float64).index_add_(0, owner_t, values.double().cpu())
            counts = torch.bincount(owner_t, minlength=n).double()
            return (sums / counts).tolist()

        out: dict[str, list[Any]] = {
            "clip_embedding": [None] * n,
            "aesthetic": [None] * n,
            "nsfw": [None] * n,
        }
        emb = None
        if self.model is not None:
            with torch.no_grad():
                x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
                emb = self.model.encode_image(x).float()
                emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            mean = torch.zeros(n, emb.shape[-1], device=emb.device).index_add_(
                0, owner_t.to(emb.device), emb
            )
            mean = mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            out["clip_embedding"] = [row.tolist() for row in mean.cpu().numpy().astype(np.float32)]
        if self.aesthetic is not None:
            out["aesthetic"] = per_clip(self.aesthetic(emb))
        if self.nsfw is not None:
            if self.nsfw.uses_embeddings:
                vals = self.nsfw.score_embeddings(emb)
            else:
                vals = self.nsfw.score_images(images)
            out["nsfw"] = per_clip(torch.from_numpy(np.asarray(vals)))
        return out

    def __call__(self, batch: Any) -> Any:
        """Add the model score columns to a batch (pyarrow Table, pandas or dict of arrays)."""
        frames = [list(f) if f is not None else [] for f in _column(batch, "_key_frames")]
        n = len(frames)
        errors: list[str | None] = [None] * n
        try:
            out = self._score_rows(frames)
        except Exception as e:  # noqa: BLE001 - isolate the failing rows, one at a time
            log.warning("model scoring of a batch of %d failed (%s); scoring rows one by one", n, e)
            out = {"clip_embedding": [None] * n, "aesthetic": [None] * n, "nsfw": [None] * n}
            for i in range(n):
                try:
                    one = self._score_rows([frames[i]])
                    for k in out:
                        out[k][i] = one[k][0]
                except Exception as e1:  # noqa: BLE001 - a row failure becomes a named reject
                    errors[i] = f"model_error: {type(e1).__name__}: {e1}"
        batch = _set(batch, "clip_embedding", out["clip_embedding"], pa.list_(pa.float32()))
        batch = _set(batch, "aesthetic", out["aesthetic"], pa.float32())
        batch = _set(batch, "nsfw", out["nsfw"], pa.float32())
        return _set(batch, "_score_error", errors, pa.string())
