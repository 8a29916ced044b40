"""Caption QA: clean a model's text and name the reason it cannot be used.

Reasons (reject ``reason`` values, checked in this order): ``empty``, ``refusal``,
``repetition_loop``, ``truncated``, ``too_short``, ``too_long``. Boilerplate openings
("The video shows…", "In this video,…") are stripped, not rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REASONS = ("empty", "refusal", "repetition_loop", "truncated", "too_short", "too_long")
"""Every QA reject reason."""

_BOILERPLATE = re.compile(
    r"^\s*(?:"
    r"(?:in|throughout)\s+(?:this|the)\s+(?:video|clip|footage|sequence)(?:\s+clip)?\s*,?\s*"
    r"|(?:this|the)\s+(?:video|clip|footage|sequence|image|frames?)(?:\s+clip)?\s+"
    r"(?:shows|depicts|features|captures|presents|displays|is showing|appears to show)"
    r"(?:\s+that)?\s*:?\s*"
    r"|(?:here is|here's)\s+(?:a|the)\s+(?:dense\s+)?(?:description|caption)[^:]*:\s*"
    r")",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i can not|i am unable|i'?m unable|"
    r"as an ai|i do not have the ability|i don'?t have the ability|unfortunately,? i)",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^\*{1,2}[^*\n]{0,40}?(?::\*{1,2}|\*{1,2}:)\s*")
_EMPHASIS = re.compile(r"\*{1,2}([^*\n]+?)\*{1,2}")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s*$")
_WORD = re.compile(r"\d+(?:[.,]\d+)+|[\w'’-]+", re.UNICODE)


@dataclass(frozen=True)
class QAResult:
    """The cleaned text, or a reject reason and its detail."""

    text: str
    reason: str | None = None
    detail: str | None = None
    value: float | None = None


def strip_boilerplate(text: str) -> str:
    """Drop quotes, markdown emphasis and openings like "The video shows"; capitalise."""
    t = text.strip().strip('"“”').strip()
    t = _LABEL.sub("", t, count=1)  # "**Caption:** …": a label, dropped
    t = _EMPHASIS.sub(r"\1", t)  # "**A red car** speeds …": the words stay, the stars go
    for _ in range(2):
        new = _BOILERPLATE.sub("", t, count=1)
        if new == t:
            break
        t = new
    t = re.sub(r"\s+", " ", t).strip()
    return t[:1].upper() + t[1:] if t else t


def words(text: str) -> list[str]:
    """The words of ``text`` (letters, digits, apostrophes and hyphens)."""
    return _WORD.findall(text)


def repetition(text: str) -> tuple[bool, str]:
    """Whether ``text`` loops: a 1–8 word phrase repeated 4+ times in a row, or fewer than a
    third of its word 4-grams distinct (over 20+ words)."""
    w = [x.lower() for x in words(text)]
    for n in range(1, 9):
        for i in range(0, max(0, len(w) - 4 * n + 1)):
            gram = w[i : i + n]
            if all(w[i + k * n : i + (k + 1) * n] == gram for k in range(1, 4)):
                return True, f"'{' '.join(gram)}' repeated 4+ times in a row"
    if len(w) >= 20:
        grams = [tuple(w[i : i + 4]) for i in range(len(w) - 3)]
        ratio = len(set(grams)) / len(grams)
        if ratio < 1 / 3:
            return True, f"only {ratio:.0%} of 4-grams distinct"
    return False, ""


def first_sentence(text: str) -> str:
    """The first complete sentence of ``text`` (all of it when there is no sentence end)."""
    m = re.search(r"^(.+?[.!?])(?:\s|$)", text.strip(), re.DOTALL)
    return m.group(1).strip() if m else text.strip()


def _trim_to_sentence(text: str) -> str | None:
    ends = [m.end() for m in re.finditer(r"[.!?][\"')\]]*(?=\s)", text)]
    return text[: ends[-1]].strip() if ends else None


def check_caption(
    text: str | None,
    min_words: int = 8,
    max_words: int = 400,
    trim_truncated: bool = True,
    hit_limit: bool = False,
) -> QAResult:
    """Clean ``text`` and return it with ``reason=None``, or the first rule it fails.

    ``hit_limit`` (generation stopped at its token limit) only adds to a ``truncated`` detail:
    a text that ends on a sentence end is complete either way.
    """
    if text is None or not text.strip():
        return QAResult("", "empty", "no text")
    if _REFUSAL.match(text):
        return QAResult(text, "refusal", text.strip()[:120])
    t = strip_boilerplate(text)
    if not t:
        return QAResult("", "empty", "only boilerplate")
    if _REFUSAL.match(t):  # behind quotes, a label or an opening ("In this video, I cannot …")
        return QAResult(text, "refusal", text.strip()[:120])
    loops, why = repetition(t)
    if loops:
        return QAResult(t, "repetition_loop", why)
    if not _SENTENCE_END.search(t):
        trimmed = _trim_to_sentence(t) if trim_truncated else None
        if not trimmed:
            limit = " at the token limit" if hit_limit else ""
            return QAResult(t, "truncated", f"ends mid-sentence{limit}: …{t[-40:]!r}")
        t = trimmed
    n = len(words(t))
    if n < min_words:
        return QAResult(t, "too_short", f"{n} words < min_words {min_words}", float(n))
    if n > max_words:
        return QAResult(t, "too_long", f"{n} words > max_words {max_words}", float(n))
    return QAResult(t)
