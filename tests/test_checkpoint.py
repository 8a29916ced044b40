"""Checkpoint directory format: round trip, RNG states, find_latest, load_for_generation."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from train.checkpoint import (
    find_latest,
    load_checkpoint,
    load_for_generation,
    make_state,
    save_checkpoint,
    set_rng_state,
)
from train.flow import EMA, FlowConfig, flow_loss
from train.latents import LatentConfig
from train.model import DiT, ModelConfig
from train.text import TextConfig

CFG = ModelConfig(hidden=32, depth=2, heads=2)


def trained(seed=0):
    """A tiny DiT, its EMA and optimizer after two real training steps."""
    torch.manual_seed(seed)
    model = DiT.from_config(CFG, 8)
    ema = EMA(model, decay=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x0 = torch.randn(2, 3, 1, 8, 8)
    text, mask = torch.randn(2, 2, 8), torch.ones(2, 2, dtype=torch.bool)
    for _ in range(2):
        loss, _, _ = flow_loss(model, x0, text, mask, FlowConfig())
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
    return model, ema, opt


def test_round_trip(tmp_path):
    model, ema, opt = trained()
    state = make_state(
        2,
        model.config,
        data_position={"epoch": 0, "index": 16},
        train_config={"lr": 0.01, "model": CFG.to_dict()},
        text=TextConfig(),
        latent=LatentConfig(),
        flow=FlowConfig(),
        video={"frames": 1, "height": 8, "width": 8, "fps": 8},
    )
    d = save_checkpoint(tmp_path / "checkpoint_000002", model, ema, opt, state)
    assert sorted(p.name for p in d.iterdir()) == [
        "ema.safetensors",
        "model.safetensors",
        "optimizer.pt",
        "state.json",
    ]
    # Readable without this code.
    on_disk = json.loads((d / "state.json").read_text())
    assert on_disk["step"] == 2 and on_disk["data_position"] == {"epoch": 0, "index": 16}
    assert on_disk["text_encoder"] == "minilm" and on_disk["latent_codec"] == "identity"
    assert on_disk["model"]["text_dim"] == 8 and on_disk["model"]["hidden"] == 32
    assert set(load_file(str(d / "model.safetensors"))) == set(model.state_dict())

    model2, _, opt2 = trained(seed=1)
    ema2 = EMA(model2)
    loaded = load_checkpoint(d, model2, ema2, opt2)
    assert loaded["step"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    for k, v in ema.state_dict().items():
        assert torch.equal(v, ema2.state_dict()[k]), k
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        assert torch.equal(s1["state"][k]["exp_avg"], s2["state"][k]["exp_avg"])
        assert s1["state"][k]["step"] == s2["state"][k]["step"]
    # EMA weights differ from the raw weights (decay 0.5 after 2 updates).
    assert any(not torch.equal(v, ema.state_dict()[k]) for k, v in model.state_dict().items())


def test_rng_state_round_trip(tmp_path):
    model, ema, opt = trained()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "c", model, ema, opt, make_state(0, CFG.resolved()))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = load_checkpoint(tmp_path / "c")
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_find_latest_picks_highest_complete_step(tmp_path):
    model, ema, opt = trained()
    run = tmp_path / "run"
    assert find_latest(run) is None
    for step, sub in (
        (5, "a/checkpoint_2024-01"),
        (12, "b/checkpoint_2024-03"),
        (9, "checkpoint_x"),
    ):
        save_checkpoint(run / sub, model, ema, None, make_state(step, CFG, with_rng=False))
    # A torn checkpoint (no state.json) with a higher step in its name is ignored.
    (run / "b" / "checkpoint_999999").mkdir(parents=True)
    (run / "b" / "checkpoint_999999" / "model.safetensors").write_bytes(b"partial")
    latest = find_latest(run)
    assert latest == run / "b" / "checkpoint_2024-03"
    assert find_latest(latest) == latest  # a checkpoint dir is its own latest


def test_load_for_generation_uses_ema_weights(tmp_path):
    model, ema, opt = trained()
    save_checkpoint(
        tmp_path / "run" / "checkpoint_1",
        model,
        ema,
        opt,
        make_state(1, model.config, with_rng=False),
    )
    gen, state = load_for_generation(tmp_path / "run")
    assert not gen.training and state["step"] == 1
    assert gen.config == model.config
    for k, v in gen.state_dict().items():
        assert torch.equal(v, ema.state_dict()[k]), k
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        load_for_generation(tmp_path / "empty")


def test_generation_loads_the_checkpoint_training_goes_on_from(tmp_path):
    """A worker died mid-report after writing step 1000; training went on from its registered
    step 900 checkpoint (Ray's snapshot) and stopped at 950. generate loaded the abandoned step
    1000 (the highest step on disk); it loads what training resumes from now."""
    import json

    model, ema, _ = trained()
    run = tmp_path / "run"
    for step, name in ((1000, "checkpoint_orphan"), (900, "checkpoint_a"), (950, "checkpoint_b")):
        save_checkpoint(
            run / name, model, ema, None, make_state(step, model.config, with_rng=False)
        )
    (run / "checkpoint_manager_snapshot.json").write_text(
        json.dumps({"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_b"}})
    )
    _, state = load_for_generation(run)
    assert state["step"] == 950 and state["checkpoint_dir"] == str(run / "checkpoint_b")
    (run / "checkpoint_manager_snapshot.json").unlink()  # no snapshot: the highest step
    assert load_for_generation(run)[1]["step"] == 1000


def test_missing_optimizer_is_a_clear_error(tmp_path):
    model, ema, opt = trained()
    save_checkpoint(tmp_path / "c", model, ema, None, make_state(0, CFG, with_rng=False))
    with pytest.raises(FileNotFoundError, match="optimizer"):
        load_checkpoint(tmp_path / "c", model, None, opt)
