"""The video diffusion transformer (DiT): spacetime patches, 3D RoPE, cross-attention, adaLN-Zero.

Follows facebookresearch/DiT for structure (adaLN-Zero, ``initialize_weights`` in one
method, zero-initialised output layer) and Wan 2.1 for the block (self-attention over all
spacetime tokens with 3D RoPE and QK-norm, then cross-attention to text tokens, then MLP).

Public API (used by the trainer, checkpoints and generation):

- ``ModelConfig`` — frozen dataclass; fields left ``None`` take the values of ``preset``
  (see ``MODEL_PRESETS``); ``cfg.resolved()`` fills them in.
- ``MODEL_PRESETS: dict[str, dict]`` — ``tiny``, ``S``, ``B``, ``L``, ``XL``.
- ``DiT.from_config(cfg, text_dim, in_channels=None) -> DiT``.
- ``DiT.forward(x, t, text, text_mask, drop_text=None) -> v``:
  ``x`` (B, C, T, H, W) float, ``t`` (B,) float in [0, 1] (1 = pure noise), ``text``
  (B, L, D) float, ``text_mask`` (B, L) bool (True = real token), ``drop_text`` (B,) bool
  or None: rows where it is True use the model's learned null caption instead of ``text``
  (caption dropout in training, the unconditional branch of classifier-free guidance in
  sampling). Returns the velocity prediction, same shape as ``x``.
- ``DiT.num_tokens(T, H, W)``, ``DiT.config`` (the resolved ``ModelConfig``),
  ``model_flops(cfg, tokens, text_len)`` (forward FLOPs of one sample, for MFU).

Null caption: the model owns a learnable null text token (``DiT.null_text``, shape
(1, text_dim)). A dropped caption becomes a sequence whose first token is that null
embedding and whose other tokens are masked out. Doing this inside ``forward`` keeps it
correct under DDP/FSDP wrapping (parameters are only materialised in forward).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from train.positions import apply_rope, rope_angles, sincos_position_embedding

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # ~2.4M parameters: pixel space (3 channels), 1x4x4 patches; 8x32x32 clips -> 512 tokens.
    "tiny": dict(hidden=128, depth=6, heads=4, patch_t=1, patch_h=4, patch_w=4, mlp_ratio=4.0),
    # Latent-space presets (e.g. a Wan VAE: 16 channels, 4x8x8 compression), 1x2x2 patches.
    "S": dict(hidden=384, depth=12, heads=6, patch_t=1, patch_h=2, patch_w=2, mlp_ratio=4.0),
    "B": dict(hidden=768, depth=12, heads=12, patch_t=1, patch_h=2, patch_w=2, mlp_ratio=4.0),
    "L": dict(hidden=1024, depth=24, heads=16, patch_t=1, patch_h=2, patch_w=2, mlp_ratio=4.0),
    # ~0.9B parameters.
    "XL": dict(hidden=1152, depth=28, heads=16, patch_t=1, patch_h=2, patch_w=2, mlp_ratio=4.0),
}


@dataclass(frozen=True)
class ModelConfig:
    """Size and shape of the DiT. Fields left ``None`` take the values of ``preset``."""

    preset: str = "tiny"
    """Size preset, one of MODEL_PRESETS: tiny (CPU demo), S, B, L, XL (~0.9B)."""
    patch_t: int | None = None
    """Patch size along time (frames per token); T must be divisible by it."""
    patch_h: int | None = None
    """Patch size along height; H must be divisible by it."""
    patch_w: int | None = None
    """Patch size along width; W must be divisible by it."""
    in_channels: int = 3
    """Input channels: 3 in pixel space, the VAE latent channels otherwise (set by the trainer)."""
    hidden: int | None = None
    """Transformer width."""
    depth: int | None = None
    """Number of transformer blocks."""
    heads: int | None = None
    """Attention heads; hidden / heads is the head size (must be even, for RoPE)."""
    mlp_ratio: float | None = None
    """MLP hidden size as a multiple of ``hidden``."""
    text_dim: int | None = None
    """Text embedding size; set from the text encoder (DiT.from_config takes it)."""
    qk_norm: bool = True
    """RMS-normalise queries and keys per head before attention (stabilises training)."""
    rope_theta: float = 10000.0
    """RoPE base frequency, shared by the time, height and width axes."""
    abs_pos: bool = False
    """Also add fixed sin-cos embeddings of each token's (t, h, w) grid position to the patch
    embeddings (DiT's 2D and Latte's temporal embeddings). RoPE is relative only: on a clip
    whose tokens all look alike (pure noise, on average) no token can tell the first frame
    from the last, which a caption like "moving left" needs at high noise. Off by default (the
    demo preset turns it on); measured in benchmarks/RESULTS.md (runs 27-31). No weights:
    checkpoints are unchanged."""
    pooled_text: bool = False
    """Also add an MLP of the caption's mean token embedding to the timestep conditioning
    (adaLN), as SD3 does with its pooled text, so global attributes modulate every block and
    not only through cross-attention. Off by default; the demo preset turns it on with the
    text-faithfulness settings (its own effect is not isolated: benchmarks/RESULTS.md)."""
    text_norm: bool = False
    """Standardise each text-embedding dimension with the mean and standard deviation of the
    training captions' tokens before the model reads them (buffers ``text_mean`` /
    ``text_std``, set by the trainer from the run's caption table at the start of a run and
    saved in its checkpoints). A sentence encoder's embeddings share a large common part
    (MiniLM layer 3, the demo's captions pooled: left vs right cosine 0.998, 0.886
    standardised), so the words that differ are a small signal until standardised. Off by
    default; the demo preset turns it on (benchmarks/RESULTS.md, "The demo", stop 19)."""
    text_whiten: bool = False
    """With ``text_norm``: whiten the caption tokens with the full covariance of the training
    captions' tokens instead of scaling each dimension alone (ZCA: ``(x - mean) @ U diag(1 /
    sqrt(lambda + eps)) U^T``, buffer ``text_proj`` of (text_dim, text_dim)). A direction that
    only a few words vary along (the direction word's) then counts as much as the shared ones.
    Off by default: on the text-faithfulness runner's clips two seeds had the direction's
    sign by 1500 steps, where the baseline had it in 1 of 4 runs; on the demo's captions it
    cost the colour (benchmarks/RESULTS.md, "The demo", stops 27-28)."""
    text_whiten_eps: float = 0.01
    """``text_whiten``'s regulariser, as a fraction of the covariance's mean eigenvalue: a
    direction the training captions hardly vary along is scaled up by at most
    ``1 / sqrt(text_whiten_eps)`` times the typical one."""
    checkpoint_activations: bool = False
    """Recompute each block in the backward pass (saves memory, costs ~30% more compute)."""

    def resolved(self) -> ModelConfig:
        """A copy with every ``None`` field filled in from the preset."""
        if self.preset not in MODEL_PRESETS:
            raise ValueError(
                f"unknown model preset {self.preset!r}; presets: {', '.join(MODEL_PRESETS)}"
            )
        base = MODEL_PRESETS[self.preset]
        fill = {k: v for k, v in base.items() if getattr(self, k) is None}
        out = dataclasses.replace(self, **fill)
        if out.hidden % out.heads:
            raise ValueError(f"hidden={out.hidden} is not divisible by heads={out.heads}")
        if (out.hidden // out.heads) % 2:
            raise ValueError(f"head size {out.hidden // out.heads} must be even for RoPE")
        if out.text_whiten and not out.text_norm:
            raise ValueError("model.text_whiten needs model.text_norm=true")
        if not out.text_whiten_eps > 0:
            raise ValueError(f"model.text_whiten_eps must be > 0, got {out.text_whiten_eps}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-serialisable)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- layers


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (B, N, D), shift/scale (B, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of t*1000 followed by an MLP (as in DiT)."""

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
        )
        args = (t.float() * 1000.0)[:, None] * freqs[None]  # (B, half)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # (B, hidden)


class Attention(nn.Module):
    """Multi-head attention (self or cross) with optional per-head QK RMS-norm, via SDPA."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        ctx = context_dim or hidden
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(ctx, hidden)
        self.v = nn.Linear(ctx, hidden)
        self.o = nn.Linear(hidden, hidden)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, N, d)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        rope: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, N, D); context (B, L, Dc) or None (self-attention); mask (B, L) bool."""
        ctx = x if context is None else context
        q = self.q_norm(self._split(self.q(x)))  # (B, heads, N, d)
        k = self.k_norm(self._split(self.k(ctx)))  # (B, heads, L, d)
        v = self._split(self.v(ctx))  # (B, heads, L, d)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, heads, N, d)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)  # (B, N, D)
        return self.o(out)


class DiTBlock(nn.Module):
    """adaLN-Zero self-attention (3D RoPE) -> cross-attention to text -> adaLN-Zero MLP."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, qk_norm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads, qk_norm)
        self.norm_cross = nn.LayerNorm(hidden, elementwise_affine=True, eps=1e-6)
        self.cross = Attention(hidden, heads, qk_norm)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp_hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_hidden, hidden),
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c, text, text_mask, rope):
        """x (B, N, D), c (B, D), text (B, L, D), text_mask (B, L), rope (N, d/2)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(
            c
        ).chunk(6, dim=-1)  # each (B, D)
        x = x + gate_msa.unsqueeze(1) * self.attn(
            modulate(self.norm1(x), shift_msa, scale_msa), rope=rope
        )
        x = x + self.cross(self.norm_cross(x), context=text, mask=text_mask)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a linear map back to patch pixels (zero-initialised)."""

    def __init__(self, hidden: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, N, patch_dim)


# --------------------------------------------------------------------------- DiT


class DiT(nn.Module):
    """Text-conditioned video diffusion transformer predicting rectified-flow velocity."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg = cfg.resolved()
        if cfg.text_dim is None:
            raise ValueError("ModelConfig.text_dim is not set; build with DiT.from_config")
        self.config = cfg
        self.patch = (cfg.patch_t, cfg.patch_h, cfg.patch_w)
        c, d = cfg.in_channels, cfg.hidden
        self.x_embed = nn.Conv3d(c, d, kernel_size=self.patch, stride=self.patch)
        self.t_embed = TimestepEmbedder(d)
        # Text projection as in Wan: Linear -> GELU -> Linear into the model width.
        self.text_embed = nn.Sequential(
            nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d)
        )
        self.null_text = nn.Parameter(torch.zeros(1, cfg.text_dim))
        if cfg.text_norm:  # identity until set_text_stats; saved with the weights
            self.register_buffer("text_mean", torch.zeros(cfg.text_dim))
            self.register_buffer("text_std", torch.ones(cfg.text_dim))
            if cfg.text_whiten:  # (x - mean) @ text_proj instead of / text_std
                self.register_buffer("text_proj", torch.eye(cfg.text_dim))
        # Pooled caption -> adaLN conditioning (added to the timestep embedding).
        self.pooled_embed = (
            nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
            if cfg.pooled_text
            else None
        )
        self.blocks = nn.ModuleList(
            DiTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth)
        )
        self.final = FinalLayer(d, c * cfg.patch_t * cfg.patch_h * cfg.patch_w)
        self.initialize_weights()

    @classmethod
    def from_config(cls, cfg: ModelConfig, text_dim: int, in_channels: int | None = None) -> DiT:
        """Build from a config, the text encoder's embedding size and (optionally) channels."""
        changes: dict[str, Any] = {"text_dim": int(text_dim)}
        if in_channels is not None:
            changes["in_channels"] = int(in_channels)
        return cls(dataclasses.replace(cfg, **changes))

    def initialize_weights(self) -> None:
        """All initialisation in one place (as facebookresearch/DiT)."""

        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(_basic)
        # Patch embedding like a linear layer over the flattened patch.
        w = self.x_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embed.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        nn.init.normal_(self.null_text, std=0.02)
        if self.pooled_embed is not None:
            # Starts as a no-op on the conditioning (last layer zero), learns in.
            nn.init.zeros_(self.pooled_embed[-1].weight)
            nn.init.zeros_(self.pooled_embed[-1].bias)
        for block in self.blocks:
            # adaLN-Zero: every residual branch starts gated off ...
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            # ... and cross-attention starts as the identity too (output projection zero).
            nn.init.zeros_(block.cross.o.weight)
            nn.init.zeros_(block.cross.o.bias)
        # Zero-initialised output: the model predicts exactly 0 at initialisation.
        nn.init.zeros_(self.final.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    @torch.no_grad()
    def set_text_stats(
        self, mean: torch.Tensor, std: torch.Tensor, cov: torch.Tensor | None = None
    ) -> None:
        """Set ``text_norm``'s per-dimension caption-token mean and std (each (text_dim,)); a
        dimension whose std is under 1/1000 of the mean std keeps std 1. With ``text_whiten``
        also the tokens' covariance ``cov`` (text_dim, text_dim), which sets ``text_proj``."""
        if not self.config.text_norm:
            raise ValueError("set_text_stats needs ModelConfig.text_norm=True")
        d = self.text_mean.numel()
        if tuple(mean.shape) != (d,) or tuple(std.shape) != (d,):
            raise ValueError(
                f"text statistics must have shape ({d},), got {tuple(mean.shape)} and "
                f"{tuple(std.shape)}"
            )
        if self.config.text_whiten:
            if cov is None or tuple(cov.shape) != (d, d):
                got = None if cov is None else tuple(cov.shape)
                raise ValueError(f"model.text_whiten needs a ({d}, {d}) covariance, got {got}")
            lam, u = torch.linalg.eigh(cov.double())  # cov = U diag(lam) U^T
            lam = lam.clamp(min=0.0)
            eps = self.config.text_whiten_eps * float(lam.mean().clamp(min=1e-12))
            self.text_proj.copy_((u * (lam + eps).rsqrt()) @ u.T)
        std = std.float()
        # A dimension (nearly) constant over the training captions (MiniLM layer 3 has three)
        # is centred, not scaled: dividing by its ~0 std would blow up any prompt that differs.
        flat = std <= 1e-3 * std.mean()
        self.text_mean.copy_(mean.float())
        self.text_std.copy_(torch.where(flat, torch.ones_like(std), std))

    # -- shapes

    def grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Token grid for an input of T, H, W; raises ValueError unless divisible by the patch."""
        pt, ph, pw = self.patch
        if t % pt or h % ph or w % pw:
            raise ValueError(
                f"input T,H,W = {t},{h},{w} is not divisible by the patch size "
                f"{pt}x{ph}x{pw} (t x h x w); choose bucket shapes that are multiples of it"
            )
        return t // pt, h // ph, w // pw

    def _per_grid(
        self, name: str, grid: tuple[int, int, int], device: torch.device,
        build: Callable[[], torch.Tensor],
    ) -> torch.Tensor:  # fmt: skip
        """``build()`` cached per (grid, device) in this model's ``name`` cache (buckets
        repeat; at most 65 entries per cache)."""
        key = (grid, str(device))
        cache = self.__dict__.setdefault(f"_{name}_cache", {})
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = build()
        return cache[key]

    def _rope(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """RoPE angles (N, head_dim/2) for a token grid."""
        head_dim = self.config.hidden // self.config.heads
        return self._per_grid(
            "rope", grid, device,
            lambda: rope_angles(grid, head_dim, self.config.rope_theta, device),
        )  # fmt: skip

    def _abs_pos(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """Absolute sin-cos position embeddings (N, D) for a token grid."""
        return self._per_grid(
            "abs_pos", grid, device,
            lambda: sincos_position_embedding(grid, self.config.hidden, device),
        )  # fmt: skip

    def num_tokens(self, t: int, h: int, w: int) -> int:
        """Number of spacetime tokens for an input of T, H, W."""
        gt, gh, gw = self.grid(t, h, w)
        return gt * gh * gw

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, N, pt*ph*pw*C) -> (B, C, T, H, W)."""
        b = x.shape[0]
        gt, gh, gw = grid
        pt, ph, pw = self.patch
        c = self.config.in_channels
        x = x.view(b, gt, gh, gw, pt, ph, pw, c)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, gt, pt, gh, ph, gw, pw)
        return x.reshape(b, c, gt * pt, gh * ph, gw * pw)

    # -- forward

    def null_condition(self, batch: int, length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The null caption as (text (B, L, D), mask (B, L)): null token first, rest masked."""
        d = self.null_text.shape[-1]
        text = self.null_text.new_zeros(batch, length, d)
        text[:, 0] = self.null_text[0]
        mask = torch.zeros(batch, length, dtype=torch.bool, device=text.device)
        mask[:, 0] = True
        return text, mask

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        drop_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict velocity v (B, C, T, H, W) for x (B, C, T, H, W) at times t (B,)."""
        b, _, tt, hh, ww = x.shape
        grid = self.grid(tt, hh, ww)
        text_mask = text_mask.bool()
        if self.config.text_norm:
            text = text - self.text_mean.to(text.dtype)
            if self.config.text_whiten:
                text = text @ self.text_proj.to(text.dtype)  # (B, L, Dt), symmetric
            else:
                text = text / self.text_std.to(text.dtype)
        # Rows whose caption is dropped, and rows with no real token at all (attention over
        # an all-masked caption is undefined), see the learned null caption instead.
        use_null = ~text_mask.any(dim=1)  # (B,)
        if drop_text is not None:
            use_null = use_null | drop_text.bool().to(x.device)
        null_t, null_m = self.null_condition(b, text.shape[1])
        text = torch.where(use_null[:, None, None], null_t.to(text.dtype), text)
        text_mask = torch.where(use_null[:, None], null_m, text_mask)

        h = self.x_embed(x)  # (B, D, gt, gh, gw)
        h = h.flatten(2).transpose(1, 2)  # (B, N, D), raster order over (t, h, w)
        if self.config.abs_pos:
            h = h + self._abs_pos(grid, x.device).to(h.dtype)  # (N, D) broadcast over B
        c = self.t_embed(t)  # (B, D)
        if self.pooled_embed is not None:
            m = text_mask.unsqueeze(-1).to(text.dtype)  # (B, L, 1)
            pooled = (text * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, Dt)
            c = c + self.pooled_embed(pooled.to(h.dtype))  # (B, D)
        ctx = self.text_embed(text.to(h.dtype))  # (B, L, D)
        rope = self._rope(grid, x.device)  # (N, head_dim/2)
        for block in self.blocks:
            if self.config.checkpoint_activations and self.training:
                h = checkpoint(block, h, c, ctx, text_mask, rope, use_reentrant=False)
            else:
                h = block(h, c, ctx, text_mask, rope)  # (B, N, D)
        out = self.final(h, c)  # (B, N, pt*ph*pw*C)
        return self.unpatchify(out, grid)  # (B, C, T, H, W)


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def model_flops(cfg: ModelConfig, tokens: int, text_len: int) -> float:
    """Forward-pass matmul FLOPs for one sample (2 per multiply-add); x3 for a training step.

    Counts linear layers (per token) and the attention score/value products
    (self: 4*N*N*D per block, cross: 4*N*L*D per block); ignores norms and the embedders.
    """
    c = cfg.resolved()
    d, n, length = c.hidden, tokens, text_len
    mlp = int(d * c.mlp_ratio)
    per_block_linear = n * (4 * d * d + 2 * d * d + 2 * d * mlp) + length * 2 * d * d
    per_block_attn = 2 * n * n * d + 2 * n * length * d
    per_block_mod = 6 * d * d  # adaLN (per sample, not per token)
    patch_dim = c.in_channels * c.patch_t * c.patch_h * c.patch_w
    embed = n * patch_dim * d * 2 + (c.text_dim or 0) * d * length + d * d * length
    macs = c.depth * (per_block_linear + per_block_attn + per_block_mod) + embed
    return 2.0 * float(macs)
