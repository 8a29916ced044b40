"""Caption back end: any vision-language model AutoModelForImageTextToText + AutoProcessor load.

Qwen2-VL / Qwen2.5-VL / Qwen3-VL, SmolVLM2, LLaVA-OneVision, … by hub id or local directory.
Frames go through the processor's chat template as several images (or as the model's native
video input with ``video_input``); one batched, left-padded ``generate`` per batch; bfloat16
on GPU. Weights load once per Ray actor (``__init__``).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from recaption.base import CaptionBackend, CaptionRequest, CaptionResult, Kind, WeightsMissing
from recaption.prompts import get_prompts, render

log = logging.getLogger(__name__)


def _how_to(model: str) -> str:
    return (
        f"download it once on a machine with network (huggingface-cli download {model} "
        "--local-dir /models/NAME) and pass --model /models/NAME, or set "
        "recaption.allow_download=true to let transformers fetch it"
    )


_WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json",
                 "pytorch_model.bin.index.json")  # fmt: skip
"""Files one of which a local model directory must hold besides config.json."""


def check_weights(model: str, revision: str = "", allow_download: bool = False) -> None:
    """Fail fast (:class:`WeightsMissing`) when ``model`` is neither a local model directory
    nor in the Hugging Face cache (unless downloads are allowed)."""
    if not model:
        raise WeightsMissing(
            "recaption backend 'transformers' needs a model: --model ID_OR_DIR "
            "(e.g. Qwen/Qwen2.5-VL-7B-Instruct or a local directory)"
        )
    p = Path(model).expanduser()
    if p.exists() or model.startswith(("/", "./", "../", "~")):
        if not p.is_dir():
            raise WeightsMissing(f"caption model directory {model} does not exist")
        if not (p / "config.json").is_file():
            raise WeightsMissing(
                f"caption model directory {model} has no config.json: not a transformers model "
                "directory (save one with model.save_pretrained / processor.save_pretrained)"
            )
        if not any(next(p.glob(pattern), None) for pattern in _WEIGHT_FILES):
            raise WeightsMissing(
                f"caption model directory {model} holds no weights ({', '.join(_WEIGHT_FILES)}): "
                "copy the model's weight files next to its config.json"
            )
        return
    if allow_download:
        return
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(model, "config.json", revision=revision or None)
    if not isinstance(hit, str):
        raise WeightsMissing(
            f"caption model {model!r} (revision {revision or 'main'}) is not in the local "
            f"Hugging Face cache; {_how_to(model)}"
        )


def _revision(model: str, revision: str, config: Any) -> str:
    if revision:
        return revision
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return str(commit)
    cfg_file = Path(model) / "config.json"
    if cfg_file.is_file():
        return "local:" + hashlib.sha256(cfg_file.read_bytes()).hexdigest()[:12]
    return "unknown"


class TransformersBackend(CaptionBackend):
    """A VLM on one device; ``caption`` runs one batched generate (per-clip retry on error)."""

    def __init__(self, cfg: Any):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        check_weights(cfg.model, cfg.revision, cfg.allow_download)
        use_cuda = torch.cuda.is_available() and cfg.num_gpus > 0
        self.device = torch.device("cuda" if use_cuda else "cpu")
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "bfloat16" if use_cuda else "float32"
        self.dtype = getattr(torch, dtype)
        kw: dict[str, Any] = {"local_files_only": not cfg.allow_download}
        if cfg.revision:
            kw["revision"] = cfg.revision
        local = Path(cfg.model).expanduser()
        name = str(local) if local.exists() else cfg.model
        try:
            self.processor = AutoProcessor.from_pretrained(name, **kw)
            mkw = dict(kw, dtype=self.dtype, output_loading_info=True)
            if cfg.attn_implementation:
                mkw["attn_implementation"] = cfg.attn_implementation
            self.model, info = AutoModelForImageTextToText.from_pretrained(name, **mkw)
        except OSError as e:
            raise WeightsMissing(
                f"caption model {cfg.model!r} could not be loaded ({e}); {_how_to(cfg.model)}"
            ) from e
        missing = list(info.get("missing_keys") or [])
        if missing:  # transformers fills them with random values: captions would be made up
            raise WeightsMissing(
                f"caption model {cfg.model!r}: {len(missing)} weight(s) missing from its files "
                f"(e.g. {', '.join(missing[:3])}); the checkpoint is incomplete"
            )
        self.model.to(self.device).eval()
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"
            if tok.pad_token is None and tok.eos_token is not None:
                tok.pad_token = tok.eos_token
        self.tokenizer = tok
        self.source = cfg.model
        self.revision = _revision(name, cfg.revision, self.model.config)
        self.prompt_version = get_prompts(cfg.prompt_version).version
        log.info("caption model %s (%s) on %s, %s", cfg.model, self.revision, self.device, dtype)

    # -- building inputs ---------------------------------------------------------------
    def _messages(self, req: CaptionRequest, kind: Kind) -> list[dict[str, Any]]:
        row = req.row
        duration = float(row.get("end_s", 0.0) - row.get("start_s", 0.0))
        n = 0 if req.frames is None else len(req.frames)
        prompt = render(self.cfg.prompt_version, kind, n, duration)
        visual = [{"type": "video"}] if self.cfg.video_input else [{"type": "image"}] * n
        msgs = []
        system = get_prompts(self.cfg.prompt_version).system
        if system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": system}]})
        msgs.append({"role": "user", "content": [*visual, {"type": "text", "text": prompt}]})
        return msgs

    def _inputs(self, reqs: list[CaptionRequest], kind: Kind) -> Any:
        from PIL import Image

        texts = [
            self.processor.apply_chat_template(
                self._messages(r, kind), add_generation_prompt=True, tokenize=False
            )
            for r in reqs
        ]
        kw: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if self.cfg.video_input:
            kw["videos"] = [np.asarray(r.frames) for r in reqs]
        else:
            kw["images"] = [[Image.fromarray(f) for f in r.frames] for r in reqs]
        inputs = self.processor(**kw)
        return inputs.to(self.device, dtype=self.dtype) if hasattr(inputs, "to") else inputs

    def _generate(self, reqs: list[CaptionRequest], kind: Kind) -> list[CaptionResult]:
        import torch

        limit = (
            self.cfg.max_new_tokens if kind == "dense" else max(16, self.cfg.max_new_tokens // 4)
        )
        inputs = self._inputs(reqs, kind)
        gen: dict[str, Any] = {"max_new_tokens": limit, "do_sample": self.cfg.temperature > 0}
        if self.cfg.temperature > 0:
            gen["temperature"] = self.cfg.temperature
        if self.tokenizer is not None and self.tokenizer.pad_token_id is not None:
            gen["pad_token_id"] = self.tokenizer.pad_token_id
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen)
        new = out[:, inputs["input_ids"].shape[1] :]
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = gen.get("pad_token_id")
        results = []
        for seq, text in zip(new.tolist(), texts, strict=True):
            n = 0
            for t in seq:
                if t in eos_ids:
                    break
                n += 1
            if pad is not None and pad not in eos_ids:
                n -= sum(1 for t in seq[:n] if t == pad)
            results.append(CaptionResult(text.strip(), tokens=n, hit_limit=n >= limit))
        return results

    # -- the interface -------------------------------------------------------------------
    def caption(self, requests: list[CaptionRequest], kind: Kind = "dense") -> list[CaptionResult]:
        """One batched generate; on failure each clip is retried alone, so one bad clip is one
        ``model_error`` row."""
        if not requests:
            return []
        bad = [i for i, r in enumerate(requests) if r.frames is None or len(r.frames) == 0]
        ok = [r for r in requests if r.frames is not None and len(r.frames) > 0]
        results: list[CaptionResult | None] = [None] * len(requests)
        for i in bad:
            results[i] = CaptionResult(None, "model_error", "no frames")
        got: list[CaptionResult]
        try:
            got = self._generate(ok, kind) if ok else []
        except Exception as e:  # noqa: BLE001 - fall back to one clip at a time
            log.warning(
                "batched generate failed (%s: %s); retrying clip by clip", type(e).__name__, e
            )
            self._free()
            got = []
            for r in ok:
                try:
                    got.extend(self._generate([r], kind))
                except Exception as e1:  # noqa: BLE001 - a model error on one clip is a row
                    self._free()
                    got.append(
                        CaptionResult(None, "model_error", f"{type(e1).__name__}: {e1}"[:500])
                    )
        it = iter(got)
        return [r if r is not None else next(it) for r in results]

    def _free(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the model."""
        self.model = None
        self._free()
