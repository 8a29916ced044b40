"""Versioned caption prompt templates. A new wording is a new version, never an edit:
``caption_prompt_version`` in OUT/pairs says which text made each caption."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one version. Placeholders: {num_frames}, {duration} (seconds)."""

    version: str
    dense: str
    short: str
    system: str | None = None


PROMPTS: dict[str, PromptSet] = {
    "v1": PromptSet(
        version="v1",
        system="You write precise, literal descriptions of video clips for a training set.",
        dense=(
            "These are {num_frames} frames sampled in order from a {duration:.1f}-second video "
            "clip. Write one dense paragraph describing the video: the main subjects and what "
            "they look like; their actions and the order in which they happen; the setting and "
            "background; the camera movement (static, pan, tilt, zoom, tracking, handheld); the "
            "lighting; and the visual style (live action, animation, screen recording, …). "
            "Describe only what is visible. Do not start with 'The video shows' or mention "
            "frames. Write complete sentences."
        ),
        short=(
            "These are {num_frames} frames sampled in order from a {duration:.1f}-second video "
            "clip. Describe the video in one complete sentence of at most 25 words: the main "
            "subject, what it does, and the camera movement. Describe only what is visible."
        ),
    ),
}
"""Every prompt version; add new ones, do not edit old ones."""


def get_prompts(version: str) -> PromptSet:
    """The prompts of ``version``; a clear error naming the known versions."""
    if version not in PROMPTS:
        raise ValueError(f"unknown prompt_version {version!r}; known: {sorted(PROMPTS)}")
    return PROMPTS[version]


def render(version: str, kind: str, num_frames: int, duration: float) -> str:
    """The user prompt of ``kind`` (dense or short) for one clip."""
    p = get_prompts(version)
    text = p.dense if kind == "dense" else p.short
    return text.format(num_frames=num_frames, duration=duration)
