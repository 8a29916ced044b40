"""Config of ``spacetime recaption`` (YAML section ``recaption:``); defaults are the offline demo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RecaptionConfig:
    """How clips become text–video pairs: back end, frames, prompts, QA, alignment, Ray resources."""

    backend: Literal["attributes", "transformers", "openai"] = "attributes"
    """Caption back end: `attributes` (offline, captions built from the measured scores),
    `transformers` (a vision-language model loaded with AutoModelForImageTextToText, run as a
    Ray Data actor pool) or `openai` (any OpenAI-compatible chat-completions server: vLLM,
    SGLang, a hosted API)."""
    model: str = ""
    """transformers: a hub id (Qwen/Qwen2.5-VL-7B-Instruct) or a local directory; openai: the
    model name the server serves. Ignored by `attributes`."""
    revision: str = ""
    """Hub revision (branch, tag or commit) of a transformers model; empty means the default."""
    allow_download: bool = False
    """Let transformers fetch a hub id that is not in the local Hugging Face cache. Off by
    default: a missing model stops the job at start with a message naming it."""
    num_frames: int = 8
    """Frames sampled uniformly from each clip and shown to the model (and to alignment)."""
    frame_size: int = 448
    """Longest side in pixels of the sampled frames (resized on CPU workers, never upscaled)."""
    video_input: bool = False
    """Pass the frames as the model's native video input (Qwen2-VL family, LLaVA-OneVision, …)
    instead of as a sequence of images."""
    prompt_version: str = "v1"
    """Key of the prompt templates in recaption/prompts.py; written to caption_prompt_version."""
    short_caption: Literal["first_sentence", "generate", "none"] = "first_sentence"
    """How caption_short is made: the first sentence of the dense caption, a second request with
    the one-sentence prompt, or not at all (null)."""
    max_new_tokens: int = 320
    """Most tokens generated for a dense caption (the short caption gets a quarter)."""
    temperature: float = 0.0
    """Sampling temperature; 0 means greedy decoding."""
    batch_size: int = 8
    """Clips per batch handed to a caption replica (one batched generate, or one burst of
    concurrent requests)."""
    replicas: int = 1
    """Caption actors (model replicas, or request pools for openai) in the Ray Data actor pool."""
    num_gpus: float = 0.0
    """GPUs per transformers replica (1 for a 7B model on one GPU; 0 runs on CPU)."""
    actor_num_cpus: float = 0.5
    """CPUs reserved per caption actor."""
    prep_num_cpus: float = 0.5
    """CPUs per frame-preparation task (decode, sample, resize run there, not in the GPU actor)."""
    prep_batch_size: int = 8
    """Clips per frame-preparation task."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights dtype of a transformers model; auto is bfloat16 on GPU and float32 on CPU."""
    attn_implementation: str = ""
    """transformers attention kernel (sdpa, flash_attention_2, eager); empty: the library's choice."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """openai: base URL of the chat-completions server (…/v1)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: name of the environment variable holding the API key (no key: no Authorization
    header, as a local vLLM server expects)."""
    max_concurrency: int = 8
    """openai: requests in flight per replica (total = replicas × max_concurrency)."""
    request_timeout_s: float = 120.0
    """openai: seconds one request may take before it counts as failed (and is retried)."""
    max_retries: int = 4
    """openai: retries of a request answered 429 / 5xx, or timed out, before the clip becomes a
    `server_error` reject."""
    backoff_s: float = 1.0
    """openai: first retry delay; doubled each retry (with jitter), unless the server sends
    Retry-After."""
    backoff_max_s: float = 60.0
    """openai: longest wait between retries (Retry-After included)."""
    jpeg_quality: int = 90
    """openai: JPEG quality of the frames sent as base64 data URLs."""
    min_words: int = 8
    """Caption QA: fewer words than this is a `too_short` reject."""
    max_words: int = 400
    """Caption QA: more words than this is a `too_long` reject."""
    trim_truncated: bool = True
    """Caption QA: a caption cut mid-sentence keeps its complete sentences (when any remain)
    instead of becoming a `truncated` reject."""
    alignment: bool = False
    """Score each caption against its frames with open_clip (column `alignment`); off: null."""
    alignment_model: str = "ViT-B-32"
    """open_clip model name for alignment."""
    alignment_pretrained: str = "openai"
    """open_clip pretrained tag for alignment (ignored when alignment_checkpoint is set)."""
    alignment_checkpoint: str = ""
    """Local open_clip checkpoint file for alignment (offline); overrides alignment_pretrained."""
    alignment_num_gpus: float = 0.0
    """GPUs per alignment actor."""
    min_alignment: float | None = None
    """Drop pairs whose alignment is below this (`low_alignment` reject); null keeps every pair.
    Needs alignment: true."""
    shard_max_rows: int = 1000
    """Most rows per OUT/pairs shard."""
