"""Checkpoint format: one directory per checkpoint, readable without this code.

A checkpoint directory holds

- ``model.safetensors`` — the raw model weights (state dict of the unwrapped model),
- ``ema.safetensors`` — the EMA weights, same keys (what generation uses),
- ``optimizer.pt`` — ``optimizer.state_dict()`` (``torch.save``),
- ``state.json`` — written last, so its presence marks a complete checkpoint. Keys:

  ``step`` (int), ``data_position`` (dict, the loader's resume position), ``rng``
  (``rng_state()``), ``train_config`` (the full resolved train config dict), ``model``
  (the resolved ``ModelConfig`` dict including ``text_dim`` and ``in_channels``),
  ``text_encoder`` (name), ``latent_codec`` (name), and for generation ``text`` (a
  ``TextConfig`` dict), ``latent`` (a ``LatentConfig`` dict), ``flow`` (a ``FlowConfig``
  dict) and ``video`` (``{"frames", "height", "width", "fps"}``: the default output shape).
  ``make_state(...)`` builds this dict; extra keys are kept as they are.

Ray Train V2 stores reported checkpoints as ``RUN/.../checkpoint_*`` directories;
``find_latest`` finds the newest complete one (highest ``step``) anywhere under a run dir;
``latest_checkpoint`` the one Ray Train resumes from (its checkpoint manager's latest), which
is also what ``spacetime generate`` loads.

Public API: ``save_checkpoint``, ``load_checkpoint``, ``find_latest``, ``latest_checkpoint``,
``load_for_generation``, ``make_state``, ``rng_state``, ``set_rng_state``.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from train.flow import EMA, _core
from train.model import DiT, ModelConfig

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIM_FILE = "optimizer.pt"


def rng_state() -> dict[str, Any]:
    """JSON-serialisable RNG states of Python, NumPy and torch (CPU, and CUDA if present)."""
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": _to_jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states saved by ``rng_state``."""
    if "python" in state:
        random.setstate(_from_jsonable(state["python"]))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    if "torch" in state:
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _to_jsonable(x):
    return [_to_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _from_jsonable(x):
    return tuple(_from_jsonable(v) for v in x) if isinstance(x, list) else x


def make_state(
    step: int,
    model_config: ModelConfig | dict,
    *,
    data_position: dict | None = None,
    train_config: dict | None = None,
    text: Any = None,
    latent: Any = None,
    flow: Any = None,
    video: dict | None = None,
    with_rng: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Build the ``state.json`` dict (configs may be dataclasses or dicts)."""
    mc = model_config
    if isinstance(mc, ModelConfig):
        mc = mc.resolved().to_dict()
    state: dict[str, Any] = {
        "step": int(step),
        "data_position": dict(data_position or {}),
        "train_config": _as_dict(train_config) or {},
        "model": dict(mc),
        "text": _as_dict(text),
        "latent": _as_dict(latent),
        "flow": _as_dict(flow),
        "video": dict(video) if video else None,
        "text_encoder": _name(text, "encoder"),
        "latent_codec": _name(latent, "codec"),
    }
    if with_rng:
        state["rng"] = rng_state()
    state.update(extra)
    return state


def _as_dict(x: Any) -> dict | None:
    if x is None:
        return None
    if isinstance(x, dict):
        return dict(x)
    import dataclasses

    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    raise TypeError(f"expected a dataclass or dict, got {type(x).__name__}")


def _name(x: Any, field: str) -> str | None:
    d = _as_dict(x)
    return None if d is None else d.get(field)


def _tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or non-contiguous storage).

    Sharded (FSDP2 ``DTensor``) entries are gathered with ``full_tensor()``, a collective:
    with FSDP2 every rank must call ``save_checkpoint`` (or gather first).
    """
    out = {}
    for k, v in sd.items():
        v = v.full_tensor() if hasattr(v, "full_tensor") else v
        out[k] = v.detach().to("cpu").contiguous().clone()
    return out


def _ema_dict(ema: EMA | nn.Module | dict | None) -> dict[str, torch.Tensor] | None:
    if ema is None:
        return None
    if isinstance(ema, EMA):
        return ema.state_dict()
    if isinstance(ema, nn.Module):
        return _core(ema).state_dict()
    return dict(ema)


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    ema: EMA | nn.Module | dict | None,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
) -> Path:
    """Write a checkpoint into ``directory`` (created); ``state.json`` is written last."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(_core(model).state_dict()), str(d / MODEL_FILE))
    ema_sd = _ema_dict(ema)
    if ema_sd is not None:
        save_file(_tensors(ema_sd), str(d / EMA_FILE))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), d / OPTIM_FILE)
    tmp = d / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True, default=str))
    tmp.replace(d / STATE_FILE)
    return d


def load_checkpoint(
    directory: str | Path,
    model: nn.Module | None = None,
    ema: EMA | nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load what is asked for from a checkpoint dir; returns the ``state.json`` dict.

    RNG states are *not* restored here (call ``set_rng_state(state["rng"])`` if wanted).
    """
    d = Path(directory)
    sf = d / STATE_FILE
    if not sf.exists():
        raise FileNotFoundError(f"{d} is not a complete checkpoint (no {STATE_FILE})")
    state = json.loads(sf.read_text())
    if model is not None:
        _core(model).load_state_dict(load_file(str(d / MODEL_FILE), device=str(map_location)))
    if ema is not None:
        path = d / EMA_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: checkpoint was saved without EMA weights")
        sd = load_file(str(path), device=str(map_location))
        if isinstance(ema, EMA):
            ema.load_state_dict(sd)
        else:
            _core(ema).load_state_dict(sd)
    if optimizer is not None:
        path = d / OPTIM_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: checkpoint was saved without optimizer state")
        optimizer.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return state


def _step_of(path: Path) -> int:
    try:
        return int(json.loads(path.read_text()).get("step", -1))
    except (OSError, ValueError):
        return -1


def find_latest(run_dir: str | Path) -> Path | None:
    """The complete checkpoint dir with the highest step under ``run_dir`` (itself included)."""
    root = Path(run_dir)
    if not root.exists():
        return None
    found = [(p, _step_of(p)) for p in root.rglob(STATE_FILE) if p.is_file()]
    found = [(p, s) for p, s in found if s >= 0]
    if not found:
        return None
    best = max(found, key=lambda ps: (ps[1], ps[0].stat().st_mtime))
    return best[0].parent


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint Ray Train resumes from: the latest one in Ray's checkpoint-manager
    snapshot under ``run_dir`` (a checkpoint dir written but never registered, e.g. by a
    worker that died mid-report, is not used), else ``find_latest(run_dir)``."""
    run = Path(run_dir)
    snap = run / "checkpoint_manager_snapshot.json"
    if snap.exists():
        try:
            latest = json.loads(snap.read_text()).get("latest_checkpoint_result") or {}
            d = run / str(latest.get("checkpoint_dir_name", ""))
            if latest and (d / STATE_FILE).exists():
                return d
        except (OSError, ValueError) as e:
            log.warning("unreadable %s (%s); looking for checkpoints directly", snap, e)
    return find_latest(run)


def load_for_generation(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[DiT, dict[str, Any]]:
    """Rebuild the DiT from ``state.json`` and load the EMA weights (raw weights if no EMA).

    ``run_dir`` may be a run directory (the latest checkpoint is used) or a checkpoint dir.
    Returns ``(model in eval mode, state)``.
    """
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(
            f"no checkpoint under {run_dir} (looked for */{STATE_FILE}); train first: "
            "spacetime train OUT --run RUN"
        )
    state = json.loads((ckpt / STATE_FILE).read_text())
    if not state.get("model"):
        raise ValueError(f"{ckpt / STATE_FILE} has no 'model' config; cannot rebuild the model")
    from common.config import from_dict

    cfg = from_dict(ModelConfig, state["model"], where="state.model")
    cfg = ModelConfig(**{**cfg.to_dict(), "checkpoint_activations": False})
    model = DiT(cfg)
    weights = ckpt / EMA_FILE
    if not weights.exists():
        log.warning("%s has no EMA weights; using the raw model weights", ckpt)
        weights = ckpt / MODEL_FILE
    model.load_state_dict(load_file(str(weights), device="cpu"))
    state["checkpoint_dir"] = str(ckpt)
    return model.to(device).eval(), state
