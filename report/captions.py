"""Caption statistics: length, sources and models, vocabulary and the most frequent n-grams."""

from __future__ import annotations

import heapq
import re
from typing import Any

import pyarrow as pa

from report.stats import key, split_key

_TOKEN = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")

STOPWORDS = frozenset(
    """a an the and or but of in on at to from by with without for as is are was were be been
    being it its this that these those there here over under into onto out up down off than then
    so such very can could will would should may might must do does did has have had not no
    while which who whom whose what when where why how all any both each few more most other
    some own same too just also about above below between through during before after again
    further once their they them he she his her him i we you your our my me us""".split()
)
"""Function words left out of the top-words list (they still count in the vocabulary)."""


def tokens(text: str) -> list[str]:
    """Lower-case word tokens of ``text`` (letters and digits; inner apostrophes and hyphens)."""
    return _TOKEN.findall(text.lower())


def word_count(text: str) -> int:
    """Words in a caption (the same tokens the n-grams use)."""
    return len(tokens(text))


def ngram_keys(tbl: pa.Table, max_n: int) -> dict[str, float]:
    """Counter keys ``("ng", n, gram)`` for 1..max_n-grams of the batch's captions."""
    out: dict[str, float] = {}
    if "caption" not in tbl.column_names:
        return out
    for text in tbl["caption"].to_pylist():
        if not text:
            continue
        toks = tokens(text)
        for n in range(1, max_n + 1):
            for i in range(len(toks) - n + 1):
                k = key("ng", n, " ".join(toks[i : i + n]))
                out[k] = out.get(k, 0.0) + 1.0
    return out


def top_ngrams(counts: dict[str, float], max_n: int, top: int) -> dict[str, Any]:
    """Vocabulary size and the ``top`` n-grams per n (words without stopwords; longer n-grams
    that are not made only of stopwords). Streams the keys keeping a heap per n."""
    heaps: dict[int, list[tuple[float, str]]] = {n: [] for n in range(1, max_n + 1)}
    vocab = 0
    tokens_total = 0.0
    for k, c in counts.items():
        parts = split_key(k)
        if len(parts) != 3 or parts[0] != "ng":
            continue
        n, gram = int(parts[1]), parts[2]
        if n == 1:
            vocab += 1
            tokens_total += c
            if gram in STOPWORDS:
                continue
        elif all(w in STOPWORDS for w in gram.split()):
            continue
        h = heaps.setdefault(n, [])
        item = (c, gram)
        if len(h) < top:
            heapq.heappush(h, item)
        elif item > h[0]:
            heapq.heapreplace(h, item)
    return {
        "vocabulary_size": vocab,
        "tokens": int(tokens_total),
        "top": {
            str(n): [
                {"ngram": g, "count": int(c)} for c, g in sorted(h, key=lambda x: (-x[0], x[1]))
            ]
            for n, h in sorted(heaps.items())
        },
    }
