"""The offline captioner: a caption built only from what the curate scorers measured.

It never names an object class (it cannot know one): it says "a red object", the direction
the scorers measured, the camera movement, lighting, colourfulness, duration and size. A
null score is not mentioned. ``caption_source = "attributes"``.

Colour: ``dominant_colors`` lists named colours by covered area, background included. The
moving object's colour is taken as the first chromatic (not black/white/grey) colour after
the most covering one; when the most covering colour is itself the only chromatic one, the
frame is described as mostly that colour and no object colour is claimed.
"""

from __future__ import annotations

import math
from typing import Any

from recaption.base import CaptionBackend, CaptionRequest, CaptionResult, Kind

ATTRIBUTES_VERSION = "attributes-v2"
"""Version of the sentence templates below (caption_prompt_version / caption_model_revision)."""

_NEUTRAL = {
    "black", "white", "gray", "grey", "silver", "charcoal", "dark gray", "dark grey",
    "light gray", "light grey", "dark", "neutral",
}  # fmt: skip
_CAMERA = {
    "static": "the camera does not move",
    "pan_left": "the camera pans left",
    "pan_right": "the camera pans right",
    "tilt_up": "the camera tilts up",
    "tilt_down": "the camera tilts down",
    "zoom_in": "the camera zooms in",
    "zoom_out": "the camera zooms out",
    "shaky": "the camera shakes",
}
# "moving left", as the captions that taught the tiny model the direction's sign ("a purple
# triangle moving left"; "moves to the left" / "upward" did not, on the same clips). The
# phrase's own share is not isolated (benchmarks/RESULTS.md, "The demo", stops 24-25).
_DIRECTION = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
}


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _is_neutral(name: str) -> bool:
    n = name.strip().lower()
    return n in _NEUTRAL or n.endswith(("gray", "grey")) or n.startswith(("black", "white"))


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def object_color(colors: list[str] | None) -> str | None:
    """The moving object's colour per the rule in the module docstring (None: no claim)."""
    if not colors:
        return None
    rest = [c for c in colors[1:] if not _is_neutral(c)]
    return rest[0] if rest else None


def lighting(row: dict[str, Any]) -> str | None:
    """dark / dim / bright / evenly lit from luma_mean, dark_frac, bright_frac (None if unknown)."""
    luma, dark, bright = row.get("luma_mean"), row.get("dark_frac"), row.get("bright_frac")
    if _present(dark) and dark >= 0.5:
        return "dark"
    if _present(bright) and bright >= 0.3:
        return "bright"
    if not _present(luma):
        return None
    if luma < 50:
        return "dark"
    if luma < 100:
        return "dim"
    if luma > 180:
        return "bright"
    return "evenly lit"


def _colorfulness(v: Any) -> str | None:
    if not _present(v):
        return None
    if v < 15:
        return "The colours are muted."
    if v < 45:
        return "The colours are moderately saturated."
    return "The colours are vivid."


def _speed(motion: Any) -> str | None:
    if not _present(motion):
        return None
    if motion < 0.2:
        return "almost no"
    if motion < 1.5:
        return "slow"
    if motion < 5:
        return "moderate"
    return "fast"


def describe(row: dict[str, Any]) -> tuple[str, str]:
    """(dense caption, one-sentence caption) for a clips-table row."""
    colors = [c for c in (row.get("dominant_colors") or []) if c]
    cam = row.get("camera_motion")
    cam_text = _CAMERA.get(cam) if _present(cam) else None
    direction = row.get("motion_direction")
    speed = _speed(row.get("motion"))
    light = lighting(row)
    obj = object_color(colors)

    if cam in (None, "static") and direction in _DIRECTION:
        subject = f"{_article(obj)} {obj} object" if obj else "Something"
        where = f" across a {light} frame" if light in ("dark", "dim", "bright") else ""
        first = f"{subject} {_DIRECTION[direction]}{where}"
    elif cam_text and cam != "static":
        first = cam_text[0].upper() + cam_text[1:]
        cam_text = None
        if colors:
            first += f"; the scene is mostly {colors[0]}"
    elif speed == "almost no":
        first = "A nearly still shot" + (f", mostly {colors[0]}" if colors else "")
    elif colors:
        first = f"A mostly {colors[0]} shot"
    else:
        first = "A short video clip"
    if cam_text:
        first += f"; {cam_text}"
    short = first + "."

    parts = [short]
    if colors:
        shown = colors[:4] if obj is None or obj in colors[:4] else [*colors[:4], obj]
        parts.append(f"Dominant colours: {', '.join(shown)}.")  # the object's colour among them
    if speed and speed != "almost no" and direction in _DIRECTION:
        parts.append(f"The motion is {speed}.")
    elif speed and speed != "almost no" and cam in (None, "static"):
        parts.append(f"There is {speed} motion.")
    cf = _colorfulness(row.get("colorfulness"))
    if cf:
        parts.append(cf)
    if light:
        parts.append(
            f"{light[0].upper()}{light[1:]} scene." if light != "evenly lit" else "Evenly lit."
        )
    facts = []
    start, end = row.get("start_s"), row.get("end_s")
    if _present(start) and _present(end) and end > start:
        facts.append(f"{end - start:.1f} seconds")
    if _present(row.get("fps")):
        facts.append(f"{row['fps']:g} fps")
    if _present(row.get("width")) and _present(row.get("height")):
        facts.append(f"{row['width']}x{row['height']} pixels")
    if facts:
        parts.append(", ".join(facts) + ".")
    return " ".join(parts), short


class AttributesBackend(CaptionBackend):
    """Captions from the clips table's score columns; needs no frames and no weights."""

    needs_frames = False

    def __init__(self, cfg: Any = None):
        self.source = "attributes"
        self.revision = ATTRIBUTES_VERSION
        self.prompt_version = ATTRIBUTES_VERSION

    def caption(self, requests: list[CaptionRequest], kind: Kind = "dense") -> list[CaptionResult]:
        """The dense (or short) attribute caption of every request."""
        out = []
        for r in requests:
            try:
                dense, short = describe(r.row)
            except Exception as e:  # noqa: BLE001 - a malformed row: this clip only, not the batch
                out.append(
                    CaptionResult(None, "model_error", f"attributes: {type(e).__name__}: {e}")
                )
                continue
            text = dense if kind == "dense" else short
            out.append(CaptionResult(text, tokens=len(text.split())))
        return out
