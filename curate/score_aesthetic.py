"""The LAION aesthetic predictor: a head on L2-normalised CLIP ViT-L/14 image embeddings.

Weights come from a path (never downloaded here): LAION-AI/aesthetic-predictor's linear head
(``sa_0_4_vit_l_14_linear.pth``, keys ``weight``/``bias``) or improved-aesthetic-predictor's
MLP (``sac+logos+ava1-l14-linearMSE.pth``, keys ``layers.N.weight``/``layers.N.bias``). Both
are stacks of linear layers with no activation between them (dropout only, a no-op at
inference), which is what ``LinearStack`` runs. ``.pth``/``.pt``/``.bin`` (a state dict) and
``.safetensors`` files are read.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

AESTHETIC_HELP = (
    "download the LAION aesthetic head, e.g. "
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
    "sac+logos+ava1-l14-linearMSE.pth (or LAION-AI/aesthetic-predictor's "
    "sa_0_4_vit_l_14_linear.pth), and set curate.score.aesthetic_head=/path/to/it "
    "(with curate.score.clip_model=ViT-L-14-quickgelu and clip_pretrained=openai or the "
    "OpenAI ViT-L/14 weights file: the heads were fit on those embeddings)"
)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors or torch file (tensors only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"head weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


class LinearStack(torch.nn.Module):
    """Linear layers applied in order with no activation (LAION's aesthetic heads)."""

    def __init__(self, state_dict: dict[str, torch.Tensor]):
        super().__init__()
        prefixes = sorted(
            {k[: -len("weight")] for k in state_dict if k.endswith("weight")},
            key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
        )
        layers = []
        for p in prefixes:
            w = state_dict[p + "weight"]
            if w.ndim != 2:
                raise ValueError(
                    f"head layer {p}weight is not a linear weight: shape {tuple(w.shape)}"
                )
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=p + "bias" in state_dict)
            lin.weight.data.copy_(w.float())
            if lin.bias is not None:
                lin.bias.data.copy_(state_dict[p + "bias"].float())
            layers.append(lin)
        if not layers:
            raise ValueError("no linear layers (keys ending in 'weight') in the head's state dict")
        for a, b in zip(layers[:-1], layers[1:], strict=True):
            if a.out_features != b.in_features:
                raise ValueError("head layers do not chain: "
                                 f"{a.out_features} outputs into {b.in_features} inputs")  # fmt: skip
        self.layers = torch.nn.ModuleList(layers)

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.layers:
            x = lin(x)
        return x


def load_head(path: str | Path, embed_dim: int | None = None) -> LinearStack:
    """A linear-stack head from ``path``; checks its input size against ``embed_dim``."""
    head = LinearStack(load_state_dict(path)).eval()
    if embed_dim is not None and head.in_features != embed_dim:
        raise ValueError(
            f"head {path} takes {head.in_features}-d embeddings but the open_clip model gives "
            f"{embed_dim}-d"
            + (" (the LAION aesthetic heads need ViT-L-14)" if head.in_features == 768 else "")
        )
    return head


class AestheticScorer:
    """The aesthetic score (~1..10) of clips from their normalised frame embeddings."""

    def __init__(self, path: str | Path, embed_dim: int | None = None, device: str = "cpu"):
        self.head = load_head(path, embed_dim).to(device)
        if self.head.out_features != 1:
            raise ValueError(f"aesthetic head {path} has {self.head.out_features} outputs, not 1")
        self.device = device

    @torch.no_grad()
    def __call__(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        """(frames, dim) L2-normalised embeddings → (frames,) aesthetic scores."""
        x = frame_embeddings.to(self.device, torch.float32)
        return self.head(x)[:, 0].cpu()
