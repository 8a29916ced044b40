"""Caption back end: an OpenAI-compatible chat-completions server (vLLM, SGLang, hosted).

Frames go as base64 JPEG data URLs in one user message; up to ``max_concurrency`` requests
are in flight per replica; 429 and 5xx answers and timeouts are retried with exponential
backoff (honouring Retry-After) up to ``max_retries`` times, then the clip becomes a
``server_error`` reject. The API key comes from the environment variable ``api_key_env``.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from recaption.base import CaptionBackend, CaptionRequest, CaptionResult, Kind
from recaption.prompts import get_prompts, render

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429}


def jpeg_data_url(frame: np.ndarray, quality: int = 90) -> str:
    """An RGB uint8 frame as a ``data:image/jpeg;base64,…`` URL."""
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def check_server(cfg: Any, api_key: str | None = None) -> None:
    """Before any work: the server at ``base_url`` answers and serves ``model``.

    ``GET {base_url}/models`` (OpenAI, vLLM, SGLang): no answer, a refused API key or a model
    the server does not list is a ``ValueError`` naming it, so a typo does not turn every clip
    into a ``server_error`` reject. A server without the endpoint (404/405/501) only warns.
    """
    import httpx

    url = cfg.base_url.rstrip("/") + "/models"
    key = api_key if api_key is not None else os.environ.get(cfg.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.get(url, headers=headers, timeout=min(30.0, cfg.request_timeout_s))
    except (httpx.HTTPError, ValueError) as e:  # ValueError: a URL httpx cannot use
        raise ValueError(
            f"cannot reach the caption server at {cfg.base_url} ({type(e).__name__}: {e}); "
            "check recaption.base_url (e.g. http://host:8000/v1) and that the server is up"
        ) from e
    if resp.status_code in (401, 403):
        raise ValueError(
            f"the caption server at {cfg.base_url} refused the request (HTTP "
            f"{resp.status_code}): check the API key in ${cfg.api_key_env}"
        )
    if resp.status_code in (404, 405, 501):
        log.warning("%s answered HTTP %d: cannot check that it serves %r", url,
                    resp.status_code, cfg.model)  # fmt: skip
        return
    if resp.status_code != 200:
        raise ValueError(f"the caption server at {url} answered HTTP {resp.status_code}: "
                         f"{resp.text[:200]}")  # fmt: skip
    try:
        served = [m["id"] for m in resp.json().get("data", [])]
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("%s sent no model list: cannot check that it serves %r", url, cfg.model)
        return
    if cfg.model not in served:
        raise ValueError(
            f"the caption server at {cfg.base_url} does not serve model {cfg.model!r}; it "
            f"serves {served}"
        )


class OpenAIBackend(CaptionBackend):
    """Chat-completions client with bounded concurrency, retries and timeouts."""

    def __init__(self, cfg: Any, api_key: str | None = None):
        import httpx

        if not cfg.model:
            raise ValueError("recaption backend 'openai' needs --model (the served model name)")
        self.cfg = cfg
        key = api_key if api_key is not None else os.environ.get(cfg.api_key_env)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=max(1, cfg.max_concurrency))
        self.client = httpx.Client(
            base_url=cfg.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(cfg.request_timeout_s),
            limits=limits,
        )
        self.pool = ThreadPoolExecutor(max_workers=max(1, cfg.max_concurrency))
        self.source = cfg.model
        self.revision = None
        self.prompt_version = get_prompts(cfg.prompt_version).version

    def _payload(self, req: CaptionRequest, kind: Kind) -> dict[str, Any]:
        row = req.row
        duration = float(row.get("end_s", 0.0) - row.get("start_s", 0.0))
        frames = [] if req.frames is None else list(req.frames)
        prompt = render(self.cfg.prompt_version, kind, len(frames), duration)
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": jpeg_data_url(f, self.cfg.jpeg_quality)}}
            for f in frames
        ]
        content.append({"type": "text", "text": prompt})
        messages: list[dict[str, Any]] = []
        system = get_prompts(self.cfg.prompt_version).system
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        limit = (
            self.cfg.max_new_tokens if kind == "dense" else max(16, self.cfg.max_new_tokens // 4)
        )
        return {
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": limit,
            "temperature": self.cfg.temperature,
        }

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            delay = self.cfg.backoff_s * (2**attempt) * (0.5 + random.random())
        time.sleep(min(delay, self.cfg.backoff_max_s))

    def _one(self, req: CaptionRequest, kind: Kind) -> CaptionResult:
        import httpx

        try:
            payload = self._payload(req, kind)
        except Exception as e:  # noqa: BLE001 - a frame that cannot be encoded
            return CaptionResult(None, "model_error", f"request not built: {e}")
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                resp = self.client.post("/chat/completions", json=payload)
            except httpx.TimeoutException as e:
                last = f"timeout after {self.cfg.request_timeout_s:g}s ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection error: {type(e).__name__}: {e}"
            except httpx.HTTPError as e:  # e.g. a body that does not decode: this clip only
                last = f"{type(e).__name__}: {e}"
            else:
                if resp.status_code == 200:
                    return self._parse(resp)
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code not in _RETRY_STATUS and resp.status_code < 500:
                    return CaptionResult(None, "server_error", last)
                retry_after = retry_after_s(resp.headers.get("retry-after"))
            if attempt < self.cfg.max_retries:
                log.info(
                    "clip %s: %s; retry %d/%d", req.clip_id, last, attempt + 1, self.cfg.max_retries
                )
                self._wait(attempt, retry_after)
        return CaptionResult(None, "server_error", f"{last} (after {self.cfg.max_retries} retries)")

    @staticmethod
    def _parse(resp: Any) -> CaptionResult:
        try:
            body = resp.json()
            choice = body["choices"][0]
            text = choice["message"]["content"]
            if isinstance(text, list):  # content parts
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
            tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
            hit = choice.get("finish_reason") == "length"
            return CaptionResult(text or "", tokens=tokens, hit_limit=hit)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return CaptionResult(
                None, "server_error", f"malformed response: {e}: {resp.text[:200]}"
            )

    def caption(self, requests: list[CaptionRequest], kind: Kind = "dense") -> list[CaptionResult]:
        """All requests concurrently (at most ``max_concurrency`` in flight), in order."""
        return list(self.pool.map(lambda r: self._one(r, kind), requests))

    def close(self) -> None:
        """Close connections and threads."""
        self.pool.shutdown(wait=False)
        self.client.close()
