"""The two model stages of ``spacetime recaption`` (callable classes Ray runs on actor pools)
and the staged rows they produce: pairs and caption rejects, told apart by ``_kind``."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pyarrow as pa

from recaption.base import CaptionRequest, CaptionResult, make_backend
from recaption.config import RecaptionConfig
from recaption.frames import FRAME_COLUMNS, frames_from_row
from recaption.qa import check_caption, first_sentence, words
from schemas.tables import PAIRS, REJECTS

log = logging.getLogger(__name__)


def _staged_schema() -> pa.Schema:
    fields: dict[str, pa.Field] = {"_kind": pa.field("_kind", pa.string())}
    for schema in (PAIRS, REJECTS):
        for f in schema:
            fields.setdefault(f.name, pa.field(f.name, f.type, nullable=True))
    fields["_tokens"] = pa.field("_tokens", pa.int64())
    return pa.schema(list(fields.values()))


STAGED = _staged_schema()
"""Rows between the caption stage and the final tables: pairs and rejects (``_kind``)."""
_WITH_FRAMES = pa.schema(
    [*STAGED, pa.field("_frames", pa.binary()), pa.field("_frames_shape", pa.list_(pa.int32()))]
)


def _reject(
    row: dict[str, Any], reason: str, detail: str | None, value: float | None = None
) -> dict:
    return {**row, "_kind": "reject", "stage": "caption", "reason": reason, "detail": detail,
            "value": value, "video": None, "_frames": None, "_frames_shape": None}  # fmt: skip


class CaptionStage:
    """Caption back end + QA over a batch of clip rows → staged pair / reject rows."""

    def __init__(self, cfg: RecaptionConfig, api_key: str | None = None, keep_frames: bool = False):
        self.cfg = cfg
        self.keep_frames = keep_frames
        self.backend = make_backend(cfg, api_key=api_key)

    def __call__(self, batch: pa.Table) -> pa.Table:
        cfg, be = self.cfg, self.backend
        rows = batch.to_pylist()
        out: list[dict[str, Any]] = []
        reqs: list[CaptionRequest] = []
        live: list[dict[str, Any]] = []
        for r in rows:
            if r.get("_prep_error"):
                out.append(_reject(r, "decode_error", r["_prep_error"]))
                continue
            frames = frames_from_row(r.get("_frames"), r.get("_frames_shape"))
            meta = {k: v for k, v in r.items() if k != "video" and k not in FRAME_COLUMNS}
            reqs.append(CaptionRequest(r["clip_id"], frames, meta))
            live.append(r)
        dense = self._caption(reqs, "dense")
        passed: list[tuple[dict, CaptionRequest, str, int]] = []
        for r, req, res in zip(live, reqs, dense, strict=True):
            if res.text is None:
                out.append(_reject(r, res.error or "model_error", res.detail))
                continue
            qa = check_caption(
                res.text, cfg.min_words, cfg.max_words, cfg.trim_truncated, res.hit_limit
            )
            if qa.reason:
                out.append({**_reject(r, qa.reason, qa.detail, qa.value), "_tokens": res.tokens})
                continue
            passed.append((r, req, qa.text, res.tokens))
        shorts: list[str | None] = [None] * len(passed)
        if cfg.short_caption == "first_sentence" or (
            cfg.short_caption == "generate" and not be.needs_frames
        ):
            shorts = [first_sentence(text) for _, _, text, _ in passed]
        elif cfg.short_caption == "generate" and passed:
            got = self._caption([req for _, req, _, _ in passed], "short")
            for i, ((r, req, text, tokens), res) in enumerate(zip(passed, got, strict=True)):
                qa = check_caption(res.text, 3, 60, True, res.hit_limit) if res.text else None
                shorts[i] = (
                    qa.text if qa is not None and qa.reason is None else first_sentence(text)
                )
                passed[i] = (r, req, text, tokens + res.tokens)
        now = dt.datetime.now(dt.timezone.utc)
        for (r, _, text, tokens), short in zip(passed, shorts, strict=True):
            row = {**r, "_kind": "pair", "caption": text, "caption_short": short,
                   "caption_source": be.source, "caption_model_revision": be.revision,
                   "caption_prompt_version": be.prompt_version, "captioned_at": now,
                   "caption_words": len(words(text)), "_tokens": tokens}  # fmt: skip
            if not self.keep_frames:
                row["_frames"] = row["_frames_shape"] = None
            out.append(row)
        schema = _WITH_FRAMES if self.keep_frames else STAGED
        return pa.Table.from_pylist(
            [{k: v for k, v in o.items() if k in schema.names} for o in out], schema=schema
        )

    def _caption(self, reqs: list[CaptionRequest], kind: str) -> list[CaptionResult]:
        """The back end's results; an unexpected exception fails these clips, not the job."""
        if not reqs:
            return []
        try:
            res = self.backend.caption(reqs, kind)  # type: ignore[arg-type]
            if len(res) != len(reqs):
                raise RuntimeError(f"back end returned {len(res)} results for {len(reqs)} clips")
            return res
        except Exception as e:  # noqa: BLE001 - one bad batch must not end the job
            log.exception("caption back end failed on a batch of %d clips", len(reqs))
            return [
                CaptionResult(None, "model_error", f"{type(e).__name__}: {e}"[:500]) for _ in reqs
            ]


class AlignmentStage:
    """open_clip caption–frame similarity for the pairs of a batch; ``min_alignment`` rule."""

    def __init__(self, cfg: RecaptionConfig):
        from recaption.alignment import AlignmentScorer

        self.cfg = cfg
        self.scorer = AlignmentScorer(
            cfg.alignment_model, cfg.alignment_pretrained, cfg.alignment_checkpoint
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        idx = [i for i, r in enumerate(rows) if r["_kind"] == "pair"]
        frames = [frames_from_row(rows[i]["_frames"], rows[i]["_frames_shape"]) for i in idx]
        texts = [rows[i]["caption_short"] or rows[i]["caption"] for i in idx]
        errors: list[str | None] = [None] * len(idx)
        try:
            scores = self.scorer.score(frames, texts)
        except Exception as e:  # noqa: BLE001 - one clip at a time then
            log.warning("alignment failed on a batch of %d (%s: %s); scoring clip by clip",
                        len(idx), type(e).__name__, e)  # fmt: skip
            scores = []
            for k in range(len(idx)):
                try:
                    scores.extend(self.scorer.score(frames[k : k + 1], texts[k : k + 1]))
                except Exception as e1:  # noqa: BLE001 - this clip's alignment is unknown
                    scores.append(None)
                    errors[k] = f"alignment: {type(e1).__name__}: {e1}"[:500]
        lo = self.cfg.min_alignment
        for i, s, err in zip(idx, scores, errors, strict=True):
            rows[i]["alignment"] = s
            if lo is not None and err is not None:  # the rule cannot be checked: not kept
                rows[i] = _reject(rows[i], "model_error", err)  # retried by a rerun
            elif lo is not None and s is not None and s < lo:
                rows[i] = _reject(
                    rows[i], "low_alignment", f"alignment {s:.4f} < min_alignment {lo:g}", s
                )
        return pa.Table.from_pylist(
            [{k: r.get(k) for k in STAGED.names} for r in rows], schema=STAGED
        )
