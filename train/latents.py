"""Latent codecs behind one interface: pixel space (identity) or a diffusers video VAE.

``codec.encode(video uint8 (B, T, H, W, 3)) -> float (B, C, t, h, w)`` and
``codec.decode(latents (B, C, t, h, w)) -> uint8 numpy (B, T, H, W, 3)``; ``.channels``,
``.temporal_factor``, ``.spatial_factor``, ``.name`` and ``latent_shape(T, H, W)``.

- ``identity`` (the tiny/demo default): uint8 RGB -> channels-first floats in [-1, 1].
- ``vae``: a diffusers ``AutoencoderKLWan`` (Wan 2.1 VAE: 16 channels, 4x temporal and 8x
  spatial compression, ``T = 1 + 4k`` frames -> ``1 + k`` latent frames) by HF id or local
  directory, the ``vae`` subfolder of a pipeline repo included. Latents are normalised with
  the VAE config's ``latents_mean`` / ``latents_std`` as the Wan pipeline does. Needs the
  optional extra: ``pip install -e .[vae]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentConfig:
    """Where the DiT works: pixel space or the latent space of a video VAE."""

    codec: str = "identity"
    """'identity' (pixel space, channels-first RGB in [-1, 1]) or 'vae' (diffusers AutoencoderKLWan)."""
    vae: str | None = None
    """HF id or local directory of the VAE (a pipeline repo's 'vae' subfolder is found too); codec='vae' only."""
    dtype: str = "float32"
    """VAE weight dtype: float32, bfloat16 or float16."""
    device: str = "cpu"
    """Device the VAE runs on."""
    allow_download: bool = False
    """Let diffusers fetch an HF id missing from the local cache (off: local files only)."""


def _to_tensor(video) -> torch.Tensor:
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(np.ascontiguousarray(video))
    if video.dim() == 4:
        video = video.unsqueeze(0)
    if video.dim() != 5 or video.shape[-1] != 3:
        raise ValueError(f"expected uint8 video (B, T, H, W, 3), got shape {tuple(video.shape)}")
    return video


def pixels_to_unit(video) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, 3, T, H, W) in [-1, 1]."""
    v = _to_tensor(video)
    return (v.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0).contiguous()


def unit_to_pixels(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, T, H, W) in [-1, 1] -> uint8 numpy (B, T, H, W, 3) (clipped, rounded)."""
    x = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


class LatentCodec:
    """Interface; see the module docstring."""

    name: str
    channels: int
    temporal_factor: int
    spatial_factor: int

    def encode(self, video) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, t, h, w) of the latents of a (frames, height, width) clip; ValueError if invalid."""
        tf, sf = self.temporal_factor, self.spatial_factor
        if height % sf or width % sf:
            raise ValueError(
                f"{self.name}: height/width {height}x{width} must be multiples of {sf}"
            )
        if tf > 1 and (frames - 1) % tf:
            raise ValueError(f"{self.name}: frames must be 1 + {tf}*k, got {frames}")
        t = frames if tf == 1 else 1 + (frames - 1) // tf
        return self.channels, t, height // sf, width // sf

    def frames_for(self, latent_frames: int) -> int:
        """Number of video frames decoded from ``latent_frames`` latent frames."""
        return (
            latent_frames
            if self.temporal_factor == 1
            else 1 + (latent_frames - 1) * self.temporal_factor
        )


class IdentityCodec(LatentCodec):
    """Pixel space: the 'latents' are the RGB values scaled to [-1, 1]."""

    name = "identity"
    channels = 3
    temporal_factor = 1
    spatial_factor = 1

    def encode(self, video) -> torch.Tensor:
        return pixels_to_unit(video)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        return unit_to_pixels(latents)


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class WanVAECodec(LatentCodec):
    """diffusers ``AutoencoderKLWan`` with Wan's latent normalisation."""

    def __init__(self, cfg: LatentConfig):
        try:
            from diffusers import AutoencoderKLWan
        except ImportError as e:
            raise ImportError(
                "codec='vae' needs diffusers: pip install -e .[vae] (or pip install diffusers)"
            ) from e
        if not cfg.vae:
            raise ValueError(
                "codec='vae' needs latent.vae: an HF id or local dir of an AutoencoderKLWan, "
                "e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers (subfolder vae)"
            )
        dtype = _DTYPES.get(cfg.dtype)
        if dtype is None:
            raise ValueError(f"latent dtype {cfg.dtype!r} not one of {sorted(_DTYPES)}")
        path = cfg.vae
        kwargs: dict = {}
        only_local = {"local_files_only": not cfg.allow_download}
        local = Path(path)
        if local.is_dir() and not (local / "config.json").exists() and (local / "vae").is_dir():
            kwargs["subfolder"] = "vae"
        try:
            self.vae = AutoencoderKLWan.from_pretrained(
                path, torch_dtype=dtype, **kwargs, **only_local
            )
        except (OSError, ValueError) as e:
            if not kwargs and not local.exists():
                try:
                    self.vae = AutoencoderKLWan.from_pretrained(
                        path, subfolder="vae", torch_dtype=dtype, **only_local
                    )
                except (OSError, ValueError) as e2:
                    raise FileNotFoundError(_missing(path, e2)) from e2
            else:
                raise FileNotFoundError(_missing(path, e)) from e
        self.device = torch.device(cfg.device)
        self.dtype = dtype
        self.vae.to(self.device).eval()
        c = self.vae.config
        self.name = f"vae:{path}"
        self.channels = int(c.z_dim)
        self.temporal_factor = 2 ** sum(bool(x) for x in c.temperal_downsample)
        self.spatial_factor = 2 ** len(c.temperal_downsample) * int(c.get("patch_size") or 1)
        self.mean = torch.tensor(c.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(c.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @torch.no_grad()
    def encode(self, video) -> torch.Tensor:
        x = pixels_to_unit(video)  # (B, 3, T, H, W)
        self.latent_shape(*x.shape[2:])  # validate
        z = self.vae.encode(x.to(self.device, self.dtype)).latent_dist.mode()  # (B, C, t, h, w)
        return ((z.float().cpu() - self.mean) / self.std).contiguous()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        z = latents.float().cpu() * self.std + self.mean
        x = self.vae.decode(z.to(self.device, self.dtype)).sample  # (B, 3, T, H, W)
        return unit_to_pixels(x)


def _missing(path: str, err: Exception) -> str:
    return (
        f"VAE weights {path!r} could not be loaded ({err}). Give latent.vae as a local dir "
        "(save_pretrained layout: config.json + diffusion_pytorch_model.safetensors, or a "
        "pipeline dir with a vae/ subfolder) or an HF id in the local HF cache, or set "
        "latents.allow_download=true to fetch it."
    )


def build_latent_codec(cfg: LatentConfig) -> LatentCodec:
    """The codec named by ``cfg.codec``."""
    if cfg.codec == "identity":
        return IdentityCodec()
    if cfg.codec == "vae":
        return WanVAECodec(cfg)
    raise ValueError(f"unknown latent codec {cfg.codec!r}; use 'identity' or 'vae'")
