"""Caption-aware augmentations: a mirrored or time-reversed clip with its caption kept true.

A clip flipped left-right shows what its caption says with "left" and "right" exchanged; a
clip played backwards shows it with every direction of motion exchanged (left/right, up/down,
zoom in/out). The trainer draws, per clip and epoch, whether a video row is mirrored
(``train.mirror_fraction``) and whether it is reversed (``train.reverse_fraction``), and
trains it on the caption with the matching words swapped (``augmented_caption``); every
variant is embedded once with the other captions.

The word lists are fixed and whole-word: they fit captions that name directions plainly,
as ``recaption --backend attributes`` writes them. Played backwards, a place stays where it
is: "on the left", "at the top left", "in the lower right" keep their words (a move "from
the left" "to the right" is exchanged); mirrored, places are exchanged with the rest. Time
reversal is only true to footage whose motion looks the same played backwards (the demo's
moving shapes, pans, zooms); a person walking backwards does not, so it is off by default.
"""

from __future__ import annotations

import re

import numpy as np

MIRROR = 1
"""Bit of an augmentation code: the clip is flipped left-right."""
REVERSE = 2
"""Bit of an augmentation code: the clip's frames are in reverse order."""
CODES = (0, MIRROR, REVERSE, MIRROR | REVERSE)
"""Every augmentation code, in the order of an index's ``caption_variants``."""

_LR = (("left", "right"), ("leftward", "rightward"), ("leftwards", "rightwards"))
_TIME = _LR + (
    ("up", "down"),
    ("upward", "downward"),
    ("upwards", "downwards"),
    ("zoom in", "zoom out"),
    ("zooms in", "zooms out"),
    ("zooming in", "zooming out"),
)


_PLACE = (
    r"\b(?:on|at|in|near|by|inside)\s+the\s+"
    r"(?:(?:top|bottom|upper|lower|far|middle|centre|center|left|right)\s+)?"
)
"""A place, not a move: "on the left", "at the top left", "in the lower right"."""


def _swapper(pairs: tuple[tuple[str, str], ...], keep_places: bool = False):
    table = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    # longest first, so "zooms in" wins over a shorter entry sharing its start
    words = sorted(table, key=len, reverse=True)
    # whole words only, not parts of hyphenated compounds ("close-up", "right-hand"); with
    # keep_places, a word after a place phrase is matched with it and left as it is
    place = f"(?P<place>{_PLACE})?" if keep_places else ""
    pattern = re.compile(
        place + r"(?<![\w-])(?P<word>" + "|".join(re.escape(w) for w in words) + r")(?![\w-])",
        re.IGNORECASE,
    )

    def swap(text: str) -> str:
        def one(m: re.Match) -> str:
            if m.groupdict().get("place"):
                return m.group(0)
            word = m.group("word")
            out = table[word.lower()]
            if word.isupper() and len(word) > 1:  # "LEFT" -> "RIGHT"
                return out.upper()
            return out[0].upper() + out[1:] if word[0].isupper() else out

        return pattern.sub(one, text)

    return swap


_mirror = _swapper(_LR)
_reverse = _swapper(_TIME, keep_places=True)


def augmented_caption(caption: str, code: int) -> str:
    """The caption of a clip under augmentation ``code`` (``MIRROR`` and/or ``REVERSE`` bits):
    mirrored, "left" and "right" exchanged (moves and places); reversed, every direction of
    motion exchanged (left/right, up/down, zoom in/out) and places kept; both, one after the
    other (a place's left/right exchanged, a move's left/right twice: kept)."""
    if code & MIRROR:
        caption = _mirror(caption)
    if code & REVERSE:
        caption = _reverse(caption)
    return caption


def augment_frames(frames: np.ndarray, code: int) -> np.ndarray:
    """(T, H, W, C) frames flipped left-right (``MIRROR``) and/or in reverse order (``REVERSE``)."""
    if code & MIRROR:
        frames = frames[:, :, ::-1]
    if code & REVERSE:
        frames = frames[::-1]
    return np.ascontiguousarray(frames)
