"""Rectified flow: the training objective, timestep sampling with a resolution shift, Euler
sampling with classifier-free guidance, and an EMA of the weights.

Conventions (one direction everywhere): ``t = 0`` is data, ``t = 1`` is pure noise.

- Interpolation: ``x_t = (1 - t) * x0 + t * noise``; target velocity ``v = noise - x0``
  (so ``dx_t/dt = v``); the loss is the mean squared error between the model's ``v`` and it.
- Timesteps: ``t = sigmoid(u)``, ``u ~ N(logit_mean, logit_std)`` (logit-normal, SD3), then
  shifted by ``time_shift(t, s) = s*t / (1 + (s-1)*t)`` which for ``s > 1`` moves mass
  towards noise. More tokens (longer or larger videos) keep more signal at a given noise
  level, so they need more noise: ``s = base_shift * sqrt(num_tokens / shift_ref_tokens)``
  (the resolution-dependent shift of SD3, Esser et al. 2024, §5.3.2, with "pixels" read as
  "tokens"), clipped to ``[min_shift, max_shift]``. Sampling uses the same shift.
- Noise prior: standard normal, or with ``frame_noise_share > 0`` a mix of noise shared by
  every frame of a clip and noise drawn per frame (``prior_noise``); the sampler starts
  from the same prior the model was trained on.
- Caption dropout: each training sample's caption is replaced, with probability
  ``caption_dropout``, by the model's learned null caption (``DiT(..., drop_text=mask)``);
  the same null caption is the unconditional branch of classifier-free guidance.
- Sampling: Euler from ``t = 1`` to ``t = 0`` over ``steps`` shifted timesteps, with
  ``v = v_uncond + cfg_scale * (v_cond - v_uncond)``.

Public API: ``FlowConfig``, ``time_shift``, ``shift_for_tokens``, ``sample_t``,
``flow_loss``, ``prior_noise``, ``euler_sample``, ``EMA``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from common.config import ConfigError


@dataclass(frozen=True)
class FlowConfig:
    """Rectified-flow objective and sampler settings."""

    logit_mean: float = 0.0
    """Mean of the logit-normal timestep distribution (before the shift)."""
    logit_std: float = 1.0
    """Standard deviation of the logit-normal timestep distribution."""
    base_shift: float = 1.0
    """Timestep shift at ``shift_ref_tokens`` tokens (1 = no shift)."""
    shift_ref_tokens: int = 512
    """Token count at which the shift equals ``base_shift``; it grows with sqrt(tokens / this)."""
    min_shift: float = 1.0
    """Lower clip of the shift (1 = never shift towards data for small inputs)."""
    max_shift: float = 12.0
    """Upper clip of the shift."""
    caption_dropout: float = 0.1
    """Probability of replacing a training caption with the null caption (for CFG)."""
    cfg_scale: float = 5.0
    """Default classifier-free guidance scale at sampling (1 = no guidance)."""
    sample_steps: int = 30
    """Default number of Euler steps at sampling."""
    frame_noise_share: float = 0.0
    """Share of the noise variance common to every frame of a clip, in [0, 1) (the mixed
    noise prior of PYoCo, Ge et al. 2023); 0 = independent noise per frame. Training and
    sampling draw from the same prior."""
    motion_weight: float = 0.0
    """Weight of a second loss term on the frame-to-frame differences of the velocity error
    (the predicted minus the target velocity of frame t+1 minus that of frame t), added to
    the per-sample mean squared error. The total is still a positive-definite quadratic in
    the prediction, so its minimiser is unchanged; what changes is how much the optimiser
    weighs errors in what moves. 0 = off (the plain rectified-flow loss)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.frame_noise_share < 1.0:
            raise ConfigError(
                f"flow.frame_noise_share must be in [0, 1), got {self.frame_noise_share}"
            )
        if self.motion_weight < 0.0:
            raise ConfigError(f"flow.motion_weight must be >= 0, got {self.motion_weight}")


def _randn(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    """Normal draws from ``generator`` (on its own device), placed on ``device``."""
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def prior_noise(
    shape: tuple[int, ...],
    share: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Unit-variance noise of ``shape`` ((B,) C, T, H, W) from the flow's prior.

    ``share`` of each element's variance is drawn once per clip and repeated over the T
    frames, the rest independently per frame: ``sqrt(share) * e_shared + sqrt(1 - share) *
    e_frame``. With ``share == 0`` this is exactly ``torch.randn(shape, generator=...)``.
    """
    dev = device if device is not None else (generator.device if generator is not None else "cpu")
    if share <= 0.0:
        return _randn(shape, generator, dev, dtype)
    if len(shape) < 4:
        raise ValueError(f"frame-correlated noise needs a (..., T, H, W) video shape, got {shape}")
    per_frame = _randn(shape, generator, dev, dtype)
    shared = _randn((*shape[:-3], 1, *shape[-2:]), generator, dev, dtype)  # one frame per clip
    return math.sqrt(1.0 - share) * per_frame + math.sqrt(share) * shared


def _rand(shape, generator, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gdev).to(device)


def time_shift(t: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """SD3 shift ``shift*t / (1 + (shift-1)*t)``: monotone, fixes 0 and 1, > t when shift > 1."""
    return shift * t / (1 + (shift - 1) * t)


def shift_for_tokens(num_tokens: int, cfg: FlowConfig) -> float:
    """The timestep shift for inputs of ``num_tokens`` tokens (grows with sqrt of tokens)."""
    s = cfg.base_shift * math.sqrt(max(num_tokens, 1) / cfg.shift_ref_tokens)
    return float(min(max(s, cfg.min_shift), cfg.max_shift))


def sample_t(
    batch: int,
    num_tokens: int,
    cfg: FlowConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training timesteps (B,) in (0, 1): shifted logit-normal."""
    dev = device if device is not None else (generator.device if generator is not None else "cpu")
    u = _randn((batch,), generator, dev) * cfg.logit_std + cfg.logit_mean
    return time_shift(torch.sigmoid(u), shift_for_tokens(num_tokens, cfg))


def _core(model: nn.Module) -> nn.Module:
    """The model inside a DDP / torch.compile wrapper."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def flow_loss(
    model: nn.Module,
    x0: torch.Tensor,
    text: torch.Tensor,
    mask: torch.Tensor,
    cfg: FlowConfig,
    generator: torch.Generator | None = None,
    drop_mask: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rectified-flow loss on clean inputs ``x0`` (B, C, T, H, W).

    ``generator`` drives t, noise and caption dropout (keep it on ``x0``'s device: draws
    are made on the generator's device and moved); ``drop_mask``
    (B,) bool overrides the random caption dropout, ``t`` (B,) and ``noise`` (like x0) the
    random draws (for tests and evaluation at fixed times).
    Returns (loss, per-sample loss (B,), t (B,)).
    """
    b = x0.shape[0]
    dev = x0.device
    if t is None:
        tokens = _core(model).num_tokens(*x0.shape[2:])
        t = sample_t(b, tokens, cfg, generator, device=dev)  # (B,)
    if noise is None:
        noise = prior_noise(tuple(x0.shape), cfg.frame_noise_share, generator, dev, x0.dtype)
    if drop_mask is None:
        drop_mask = _rand((b,), generator, dev) < cfg.caption_dropout
    tb = t.view(b, *([1] * (x0.dim() - 1))).to(x0.dtype)
    xt = (1 - tb) * x0 + tb * noise  # (B, C, T, H, W)
    target = noise - x0
    pred = model(xt, t, text, mask, drop_text=drop_mask)
    err = pred.float() - target.float()  # (B, C, T, H, W)
    per_sample = err.pow(2).flatten(1).mean(dim=1)  # (B,)
    if cfg.motion_weight > 0.0 and err.shape[2] > 1:
        step = torch.diff(err, dim=2)  # (B, C, T-1, H, W)
        per_sample = per_sample + cfg.motion_weight * step.pow(2).flatten(1).mean(dim=1)
    return per_sample.mean(), per_sample, t


def sampling_timesteps(steps: int, shift: float, device=None) -> torch.Tensor:
    """``steps + 1`` shifted times from 1 down to 0."""
    return time_shift(torch.linspace(1.0, 0.0, steps + 1, device=device), shift)


@torch.no_grad()
def euler_sample(
    model: nn.Module,
    shape: tuple[int, ...],
    text: torch.Tensor,
    mask: torch.Tensor,
    null_text: torch.Tensor | None = None,
    null_mask: torch.Tensor | None = None,
    steps: int = 30,
    cfg_scale: float = 5.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    frame_noise_share: float = 0.0,
) -> torch.Tensor:
    """Integrate dx/dt = v from t=1 (noise) to t=0; returns x0 of ``shape`` (B, C, T, H, W).

    The start is ``noise`` when given, else a draw from ``prior_noise(shape,
    frame_noise_share, generator)`` (pass the training ``FlowConfig.frame_noise_share``).
    The unconditional branch uses ``null_text``/``null_mask`` when given, else the model's
    learned null caption. ``cfg_scale == 1`` runs the conditional branch only.
    """
    dev = text.device
    x = noise if noise is not None else prior_noise(shape, frame_noise_share, generator, dev)
    b = x.shape[0]
    ts = sampling_timesteps(steps, shift, device=dev)
    guided = cfg_scale != 1.0
    if guided:
        if null_text is None:
            # Second half of the doubled batch: the model swaps in its learned null caption.
            cond_text, cond_mask = unc_text, unc_mask = text, mask
            drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)])
        else:
            length = max(text.shape[1], null_text.shape[1])
            cond_text, cond_mask = _pad(text, mask, length)
            unc_text, unc_mask = _pad(null_text.expand(b, -1, -1), null_mask.expand(b, -1), length)
            drop = None
        both_text = torch.cat([cond_text, unc_text])
        both_mask = torch.cat([cond_mask, unc_mask])
        drop = drop.to(dev) if drop is not None else None
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        tvec = t0.expand(b)
        if guided:
            v = model(
                torch.cat([x, x]), torch.cat([tvec, tvec]), both_text, both_mask, drop_text=drop
            )
            v_cond, v_unc = v.chunk(2)
            v = v_unc + cfg_scale * (v_cond - v_unc)
        else:
            v = model(x, tvec, text, mask)
        x = x + (t1 - t0) * v
    return x


def _pad(text: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (B, L, D) text and (B, L) mask to ``length`` tokens."""
    extra = length - text.shape[1]
    if extra <= 0:
        return text, mask.bool()
    text = torch.cat([text, text.new_zeros(text.shape[0], extra, text.shape[2])], dim=1)
    mask = torch.cat([mask.bool(), mask.new_zeros(mask.shape[0], extra, dtype=torch.bool)], dim=1)
    return text, mask


class EMA:
    """Exponential moving average of a model's parameters (and a copy of its buffers).

    ``shadow`` maps the same names as ``model.state_dict()`` (of the unwrapped model) to
    float32 tensors, so ``state_dict()`` loads straight into a fresh model for generation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in _core(model).state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        """``shadow = decay * shadow + (1 - decay) * param`` for parameters; buffers are copied."""
        d = self.decay if decay is None else decay
        core = _core(model)
        # named_parameters/buffers, not state_dict(): the same names without building a dict
        # of every tensor each step (non-persistent buffers are not in shadow and are skipped)
        for k, p in core.named_parameters():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(p.detach().float(), 1.0 - d)
            else:
                s.copy_(p.detach())
        for k, b in core.named_buffers():
            if k in self.shadow:
                self.shadow[k].copy_(b.detach())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, keyed like the model's state dict."""
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights (keys must match the model's)."""
        missing = set(self.shadow) - set(state)
        unexpected = set(state) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(
                f"EMA state mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to its dtypes)."""
        _core(model).load_state_dict(self.shadow)

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the averaged weights, in eval mode."""
        m = copy.deepcopy(_core(model))
        m.load_state_dict(self.shadow)
        return m.eval()
