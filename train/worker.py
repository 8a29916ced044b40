"""The Ray Train worker: ``train_loop_per_worker`` on each rank, run by ``train.loop.train``.

It builds the DiT (seeded; DDP via ``prepare_model`` or FSDP2 ``fully_shard`` per block),
restores model, EMA and optimizer from ``ray.train.get_checkpoint()``, then for each planned
micro-batch from ``get_dataset_shard("train")``: encode to latents (identity or VAE), rectified
flow loss (noise drawn from a generator seeded by (seed, micro-batch, rank), so a resumed run
draws the same noise), bf16 autocast on GPU, gradient accumulation, clipping, AdamW with linear
warmup, EMA. Every ``log_every`` steps: the log line and TensorBoard (``RUN/tb/``: loss, loss by
t-bin, samples/s, tokens/s, share of time waiting on data). Every ``checkpoint_every`` steps:
``train.checkpoint.save_checkpoint``, reported with those metrics as a Ray checkpoint. Only then:
``ray.train.report`` waits until Ray's controller has taken the previous report, which it polls
every 2 s, so a report every few steps throttled the tiny model's training by a third.
Each micro-batch is recorded in ``RUN/batches/rank<r>.jsonl`` (step, micro-batch, content hash,
clip ids, loss; ``start`` lines mark (re)starts). Sample videos for ``sample_prompts`` go to
``RUN/samples/step_XXXXXX_<i>.mp4``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.config import from_dict, to_dict
from train.checkpoint import (
    EMA_FILE,
    OPTIM_FILE,
    load_checkpoint,
    make_state,
    save_checkpoint,
)
from train.config import TrainConfig
from train.data import unpack_batch
from train.embeddings import lookup_text
from train.flow import EMA, euler_sample, flow_loss, prior_noise, shift_for_tokens

log = logging.getLogger(__name__)

T_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Edges of the timestep bins of the ``loss_t*`` metrics."""


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warmup to ``cfg.lr``,
    then constant or decayed to ``cfg.lr * cfg.lr_final`` at ``cfg.steps`` (``cfg.lr_decay``),
    the decay beginning at ``cfg.lr_decay_start * cfg.steps`` or the warmup's end if later."""
    if step + 1 < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.lr_decay == "none":
        return cfg.lr
    # the decay runs from the end of the warmup (or lr_decay_start, if later) to ``steps``
    start = max(cfg.warmup, 1, int(round(cfg.lr_decay_start * cfg.steps)))
    frac = min(1.0, max(0.0, (step + 1 - start) / max(1, cfg.steps - start)))  # 0 → 1
    if cfg.lr_decay == "cosine":
        frac = 0.5 * (1.0 - math.cos(math.pi * frac))
    return cfg.lr * (1.0 - (1.0 - cfg.lr_final) * frac)


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters: the fused kernel on CPU and CUDA for DDP (one kernel
    over all tensors instead of a Python loop: 5.7 against 20.6 ms per step for the tiny
    preset's 187 tensors on one CPU thread), the multi-tensor one for FSDP's sharded
    parameters."""
    kw: dict[str, Any] = {}
    if cfg.strategy == "fsdp":
        kw["foreach"] = True
    elif device.type in ("cpu", "cuda"):
        kw["fused"] = True
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kw
    )


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.precision == "bf16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _no_sync(model, last: bool):
    """Context for one micro-batch's forward and backward: gradients are reduced across ranks
    only on the step's ``last`` micro-batch.

    FSDP2 reads its flag when the backward runs, so it is set on every micro-batch, on before
    the last one's backward (set back on only after it, the sharded gradients were never
    reduce-scattered and the optimizer stepped on none). DDP's ``no_sync`` covers the forward.
    """
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    if not last and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _core(model):
    from train.flow import _core as core

    return core(model)


class _Worker:
    """State of one rank: model, optimizer, EMA, metrics, logs."""

    def __init__(self, config: dict[str, Any]):
        import ray.train
        import ray.train.torch

        from train.latents import build_latent_codec
        from train.model import DiT

        self.cfg: TrainConfig = from_dict(TrainConfig, config["train"]).resolved()
        self.config = config
        self.run = Path(config["run_dir"])
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        cfg = self.cfg
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        log.info("rank %d: torch uses %d threads", self.rank, torch.get_num_threads())
        torch.manual_seed(cfg.seed)
        lat = cfg.latents
        if lat.codec != "identity" and self.device.type == "cuda":
            import dataclasses

            lat = dataclasses.replace(lat, device=str(self.device))
        self.codec = build_latent_codec(lat)
        model = DiT.from_config(cfg.model, config["text_dim"], in_channels=self.codec.channels)
        self.step, self.mb = 0, 0
        self.out_of_time = False  # train.max_minutes spent (rank 0's clock, from run_loop)
        ckpt = ray.train.get_checkpoint()
        ckpt_dir = None
        with contextlib.ExitStack() as stack:
            if ckpt is not None:
                ckpt_dir = Path(stack.enter_context(ckpt.as_directory()))
                state = load_checkpoint(ckpt_dir, model)
                self.step = int(state["step"])
                self.mb = int((state.get("data_position") or {}).get("mb", 0))
            if ckpt_dir is None and cfg.model.text_norm:
                # a fresh run's text standardisation (a resumed one has it in its checkpoint)
                st = config.get("text_stats")
                if not st:
                    raise RuntimeError(
                        "model.text_norm: this worker starts without a checkpoint but the "
                        "driver computed no caption statistics (it found a checkpoint in the "
                        f"run directory {self.run}); rerun to resume from it"
                    )
                cov = torch.as_tensor(st["cov"]) if st.get("cov") is not None else None
                model.set_text_stats(torch.tensor(st["mean"]), torch.tensor(st["std"]), cov)
            model.to(self.device)
            if cfg.strategy == "fsdp":
                from torch.distributed.fsdp import fully_shard

                for block in model.blocks:
                    fully_shard(block)
                fully_shard(model)
            else:
                model = ray.train.torch.prepare_model(model)
            self.ema = EMA(model, cfg.ema_decay)
            self.opt = make_optimizer(model, cfg, self.device)
            if ckpt_dir is not None:
                self._load_ema_opt(model, ckpt_dir)
        self.model = torch.compile(model) if cfg.compile else model
        self.resumed_from = self.step if ckpt is not None else None
        self.log_path = self.run / "batches" / f"rank{self.rank}.jsonl"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._record(
            {
                "event": "start",
                "step": self.step,
                "mb": self.mb,
                "resumed_from_step": self.resumed_from,
            }
        )
        if self.resumed_from is not None and self.rank == 0:
            log.info("resumed from checkpoint at step %d (micro-batch %d)", self.step, self.mb)
        self.tb = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run / "tb"))
        self._reset_metrics()

    def _load_ema_opt(self, model, d: Path) -> None:
        from safetensors.torch import load_file

        if self.cfg.strategy != "fsdp":
            load_checkpoint(d, None, self.ema, self.opt if (d / OPTIM_FILE).exists() else None)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )
        from torch.distributed.tensor import distribute_tensor

        sd = load_file(str(d / EMA_FILE))
        for k, s in self.ema.shadow.items():
            v = sd[k].to(self.device, s.dtype)
            if hasattr(s, "device_mesh"):
                self.ema.shadow[k] = distribute_tensor(v, s.device_mesh, s.placements)
            else:
                s.copy_(v)
        if (d / OPTIM_FILE).exists():
            osd = torch.load(d / OPTIM_FILE, map_location="cpu", weights_only=False)
            set_optimizer_state_dict(
                model, self.opt, osd, options=StateDictOptions(full_state_dict=True)
            )

    # -- bookkeeping

    def _record(self, entry: dict[str, Any]) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _reset_metrics(self) -> None:
        self.m = torch.zeros(3 + 2 * (len(T_BINS) - 1), dtype=torch.float64)
        self.t0 = time.perf_counter()
        self.data_wait = 0.0

    def _add(self, loss: float, per: torch.Tensor, t: torch.Tensor, tokens: int) -> None:
        n = len(T_BINS) - 1
        self.m[0] += loss
        self.m[1] += per.numel()
        self.m[2] += tokens * per.numel()
        bins = torch.clamp((t.detach().float().cpu() * n).long(), 0, n - 1)
        for b, v in zip(bins.tolist(), per.detach().float().cpu().tolist(), strict=True):
            self.m[3 + b] += v
            self.m[3 + n + b] += 1

    def _metrics(self) -> dict[str, float]:
        import torch.distributed as dist

        m = self.m.clone()
        if self.world > 1 and dist.is_initialized():
            m = m.to(self.device)
            dist.all_reduce(m)
            m = m.cpu()
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        n = len(T_BINS) - 1
        samples = float(m[1])
        out = {
            "step": self.step,
            "loss": float(m[0]) / max(samples, 1.0),
            "samples_per_s": samples / elapsed,
            "tokens_per_s": float(m[2]) / elapsed,
            "data_wait_frac": self.data_wait / elapsed,
            "lr": float(self.opt.param_groups[0]["lr"]),
        }
        for b in range(n):
            if m[3 + n + b] > 0:
                out[f"loss_t{T_BINS[b]:.2f}-{T_BINS[b + 1]:.2f}"] = float(m[3 + b] / m[3 + n + b])
        return out

    # -- the loop

    def run_loop(self) -> None:
        import ray.train

        cfg = self.cfg
        crash = self.config.get("crash_at")
        shard = ray.train.get_dataset_shard("train")
        batches = shard.iter_batches(
            batch_size=1, batch_format="numpy", prefetch_batches=cfg.prefetch_batches
        )
        t_wait = self.t_train = time.perf_counter()
        for raw in batches:
            b = unpack_batch(raw)
            self.data_wait += time.perf_counter() - t_wait
            if b["mb"] < self.mb:
                t_wait = time.perf_counter()
                continue  # restarted worker group: before our checkpoint
            if b["mb"] != self.mb:
                raise RuntimeError(
                    f"rank {self.rank}: expected micro-batch {self.mb}, got {b['mb']}"
                )
            last = (self.mb + 1) % cfg.grad_accum == 0
            loss = self._micro_step(b, last)
            self.mb += 1
            if last:
                self._optimizer_step()
                self.out_of_time = self._out_of_time()
                if crash and crash["rank"] == self.rank and crash["step"] == self.step:
                    marker = Path(crash["marker"])
                    if not marker.exists():
                        marker.write_text(str(self.step))
                        # Let the controller collect the reports already made (a report
                        # is registered once every rank's result has been polled).
                        time.sleep(float(crash.get("delay_s", 3.0)))
                        os._exit(1)
                self._after_step(b)
            self._record(
                {
                    "step": b["mb"] // cfg.grad_accum,
                    "mb": b["mb"],
                    "epoch": b["epoch"],
                    "hash": b["hash"],
                    "shape": list(b["video"].shape),
                    "loss": loss,
                    "clip_ids": b["clip_ids"],
                    "errors": json.loads(b["errors"]) or None,
                }
            )
            if self.step >= cfg.steps or self.out_of_time:
                break
            t_wait = time.perf_counter()
        if self.tb is not None:
            self.tb.close()

    def _out_of_time(self) -> bool:
        """Whether ``train.max_minutes`` has passed (rank 0's clock, so every rank agrees)."""
        import torch.distributed as dist

        if self.cfg.max_minutes <= 0:
            return False
        over = time.perf_counter() - self.t_train >= self.cfg.max_minutes * 60.0
        if self.world > 1 and dist.is_initialized():
            flag = torch.tensor([float(over)], device=self.device)
            dist.broadcast(flag, src=0)
            over = bool(flag.item())
        if over and self.rank == 0:
            log.warning(
                "train.max_minutes (%g) reached at step %d of %d: saving a checkpoint and "
                "stopping; rerun the same command to continue",
                self.cfg.max_minutes,
                self.step,
                self.cfg.steps,
            )
        return over

    def _micro_step(self, b: dict[str, Any], last: bool) -> float:
        cfg = self.cfg
        with torch.no_grad():
            x0 = self.codec.encode(torch.from_numpy(np.array(b["video"]))).to(self.device)
        text = torch.from_numpy(np.array(b["text"])).to(self.device)
        mask = torch.from_numpy(np.array(b["mask"])).to(self.device)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(cfg.seed) * 1_000_003 + b["mb"] * 1009 + self.rank)
        with _no_sync(self.model, last), _autocast(cfg, self.device):
            loss, per, t = flow_loss(self.model, x0, text, mask, cfg.flow, generator=gen)
        (loss / cfg.grad_accum).backward()
        tokens = _core(self.model).num_tokens(*x0.shape[2:])
        self._add(float(per.detach().sum()), per, t, tokens)
        return float(loss.detach())

    def _optimizer_step(self) -> None:
        cfg = self.cfg
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        lr = learning_rate(cfg, self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        self.step += 1

    def _after_step(self, b: dict[str, Any]) -> None:
        import ray.train

        cfg = self.cfg
        final = self.step >= cfg.steps or self.out_of_time
        do_ckpt = final or self.step % max(1, cfg.checkpoint_every) == 0
        do_log = do_ckpt or self.step % cfg.log_every == 0
        do_sample = cfg.sample_every >= 0 and (
            final or (cfg.sample_every > 0 and self.step % cfg.sample_every == 0)
        )
        if do_sample:
            self._samples()
        if not do_log:
            return
        metrics = self._metrics()
        metrics.update(epoch=b["epoch"], micro_batch=self.mb)
        if self.tb is not None:
            for k, v in metrics.items():
                if k not in ("step",):
                    self.tb.add_scalar(k, v, self.step)
            self.tb.flush()
        if self.rank == 0:
            log.info(
                "step %d loss %.4f %.1f samples/s",
                self.step,
                metrics["loss"],
                metrics["samples_per_s"],
            )
        if do_ckpt:  # the only ray.train.report (see the module docstring)
            tmp = Path(tempfile.mkdtemp(prefix="spacetime_ckpt_"))
            try:
                self._save(tmp)
                ckpt = ray.train.Checkpoint.from_directory(str(tmp)) if self.rank == 0 else None
                ray.train.report(metrics, checkpoint=ckpt)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self._reset_metrics()

    def _save(self, d: Path) -> None:
        cfg = self.cfg
        state = make_state(
            self.step,
            _core(self.model).config,
            data_position={"mb": self.mb, "step": self.step, "world": self.world},
            train_config=to_dict(cfg),
            text=cfg.text,
            latent=cfg.latents,
            flow=cfg.flow,
            video=self.config["video"],
            with_rng=False,
        )
        if cfg.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_optimizer_state_dict,
            )

            osd = get_optimizer_state_dict(
                self.model,
                self.opt,
                options=StateDictOptions(full_state_dict=True, cpu_offload=True),
            )
            save_checkpoint(d, self.model, self.ema, None, state)  # gathers: every rank
            if self.rank == 0:
                torch.save(osd, d / OPTIM_FILE)
        elif self.rank == 0:
            save_checkpoint(d, self.model, self.ema, self.opt, state)

    @torch.no_grad()
    def _samples(self) -> None:
        """EMA sample videos for the fixed prompts (rank 0 writes; FSDP gathers on all)."""
        from common.video import encode_mp4
        from train.model import DiT

        cfg = self.cfg
        if not cfg.sample_prompts:
            return
        full = {
            k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu()
            for k, v in self.ema.shadow.items()
        }
        if self.rank != 0:
            return
        core = _core(self.model)
        model = DiT(core.config).to(self.device).eval()
        model.load_state_dict(full)
        text, mask = lookup_text(self.config["embeddings"], self.config["prompt_idx"])
        video = self.config["video"]
        shape = self.codec.latent_shape(video["frames"], video["height"], video["width"])
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        noise = prior_noise((len(text), *shape), cfg.flow.frame_noise_share, gen, self.device)
        with _autocast(cfg, self.device):
            x = euler_sample(
                model,
                noise.shape,
                torch.from_numpy(text).to(self.device),
                torch.from_numpy(mask).to(self.device),
                steps=cfg.sample_steps,
                cfg_scale=cfg.flow.cfg_scale,
                shift=shift_for_tokens(model.num_tokens(*shape[1:]), cfg.flow),
                noise=noise,
            )
        out = self.run / "samples"
        out.mkdir(parents=True, exist_ok=True)
        for i, v in enumerate(self.codec.decode(x.float())):
            path = out / f"step_{self.step:06d}_{i}.mp4"
            path.write_bytes(encode_mp4(v, fps=max(1.0, float(video["fps"]))))


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The function each Ray Train worker runs (see the module docstring)."""
    worker = _Worker(config)
    worker.run_loop()
