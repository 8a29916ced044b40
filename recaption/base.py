"""The one interface every caption back end implements, and the errors they raise."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["dense", "short"]
"""Which caption is asked for: the dense description or the one-sentence caption."""


class WeightsMissing(RuntimeError):
    """Model weights (or a server) a back end needs are not available; the message names them."""


@dataclass
class CaptionRequest:
    """One clip to caption: its id, its sampled frames (None for back ends that need none),
    and its clips-table row without the video bytes (scores, duration, size)."""

    clip_id: str
    frames: np.ndarray | None
    row: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaptionResult:
    """A back end's answer for one request: the text, or a named failure."""

    text: str | None
    error: str | None = None
    """`model_error` or `server_error` when text is None."""
    detail: str | None = None
    """The failure's message."""
    tokens: int = 0
    """Tokens generated (0 where unknown)."""
    hit_limit: bool = False
    """Generation stopped at max_new_tokens (the text may be cut mid-sentence)."""


class CaptionBackend(abc.ABC):
    """A caption back end. Construct once per worker (weights load in ``__init__``)."""

    source: str = ""
    """Written to caption_source: the model id, or ``attributes``."""
    revision: str | None = None
    """Written to caption_model_revision."""
    prompt_version: str | None = None
    """Written to caption_prompt_version."""
    needs_frames: bool = True
    """Whether requests must carry frames."""

    @abc.abstractmethod
    def caption(self, requests: list[CaptionRequest], kind: Kind = "dense") -> list[CaptionResult]:
        """Caption every request (same order). A failure on one clip is a result with
        ``error`` set, never an exception that loses the batch."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or memory."""


def make_backend(cfg: Any, api_key: str | None = None) -> CaptionBackend:
    """The back end named by ``cfg.backend``."""
    if cfg.backend == "attributes":
        from recaption.backend_attributes import AttributesBackend

        return AttributesBackend(cfg)
    if cfg.backend == "transformers":
        from recaption.backend_transformers import TransformersBackend

        return TransformersBackend(cfg)
    if cfg.backend == "openai":
        from recaption.backend_openai import OpenAIBackend

        return OpenAIBackend(cfg, api_key=api_key)
    raise ValueError(
        f"unknown caption backend {cfg.backend!r}; known: attributes, transformers, openai"
    )
