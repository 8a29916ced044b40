"""open_clip details every stage that loads a CLIP model shares."""

from __future__ import annotations

from pathlib import Path


def is_weights_file(spec: str) -> bool:
    """Whether an open_clip ``pretrained`` value names a weights file rather than a tag."""
    suffix = Path(spec).suffix
    return "/" in spec or "\\" in spec or suffix in (".pt", ".pth", ".bin", ".safetensors")


def needs_quick_gelu(model_name: str, pretrained: str | None) -> bool:
    """Whether ``pretrained`` weights were trained with QuickGELU while ``model_name``'s config
    uses GELU (OpenAI's CLIP weights under a plain name such as ``ViT-L-14``): open_clip 3 then
    builds a GELU model with only a warning, and every embedding is off. Pass the result as
    ``force_quick_gelu``. A weights file carries no such metadata: name the model
    ``ViT-L-14-quickgelu`` for OpenAI weights from a file."""
    import open_clip

    if not pretrained or model_name.endswith("-quickgelu"):
        return False
    if is_weights_file(pretrained):
        return False
    return bool((open_clip.get_pretrained_cfg(model_name, pretrained) or {}).get("quick_gelu"))
