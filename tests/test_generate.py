"""Generation from a saved run: shapes, MP4 output, seeds, the CLI glue."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from common.video import decode_mp4
from train.checkpoint import make_state, save_checkpoint
from train.flow import EMA, FlowConfig
from train.generate import add_generate_arguments, generate, generate_cli, write_videos
from train.latents import LatentConfig
from train.model import DiT, ModelConfig
from train.text import TextConfig


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A random tiny model saved with save_checkpoint into a run dir, as training would."""
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=32, depth=2, heads=2)
    model = DiT.from_config(cfg, 384)
    with torch.no_grad():  # make the output depend on the input (zero-init would give 0)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    run = tmp_path_factory.mktemp("run")
    state = make_state(
        3,
        model.config,
        text=TextConfig(encoder="minilm", max_length=16),
        latent=LatentConfig(),
        flow=FlowConfig(sample_steps=4, cfg_scale=3.0),
        video={"frames": 4, "height": 16, "width": 24, "fps": 8},
        with_rng=False,
    )
    save_checkpoint(run / "checkpoint_000003", model, EMA(model), None, state)
    return run


def test_generate_shapes_defaults_and_seeds(run_dir):
    vids = generate(run_dir, ["a red circle moving left", "a blue square"], seed=1)
    assert len(vids) == 2
    assert all(v.shape == (4, 16, 24, 3) and v.dtype == np.uint8 for v in vids)
    assert not np.array_equal(vids[0], vids[1])
    # Prompt i uses seed + i: the second video is the same when generated alone with seed 2.
    alone = generate(run_dir, ["a blue square"], seed=2)[0]
    assert np.array_equal(alone, vids[1])
    other = generate(run_dir, ["a blue square"], frames=2, size=(16, 8), steps=2, cfg_scale=1.0)
    assert other[0].shape == (2, 8, 16, 3)


def test_same_noise_starts_every_prompt_from_the_seed_noise(run_dir):
    same = generate(run_dir, ["a blue square", "a blue square", "a red circle"], seed=5,
                    same_noise=True)  # fmt: skip
    assert np.array_equal(same[0], same[1])  # one prompt, one noise: one video
    assert not np.array_equal(same[0], same[2])  # the text still changes it
    # Each equals its prompt generated alone from seed 5 (as prompt 0 of a batch).
    assert np.array_equal(same[2], generate(run_dir, ["a red circle"], seed=5)[0])
    apart = generate(run_dir, ["a blue square", "a blue square"], seed=5)
    assert not np.array_equal(apart[0], apart[1])  # seeds 5 and 6


def test_sampling_shift_defaults_to_the_training_shift_and_can_be_overridden(run_dir):
    # The run's flow config has base_shift 1: its training shift at any token count is 1.
    default = generate(run_dir, ["a red circle moving left"], seed=3)[0]
    assert np.array_equal(generate(run_dir, ["a red circle moving left"], seed=3, shift=1.0)[0],
                          default)  # fmt: skip
    shifted = generate(run_dir, ["a red circle moving left"], seed=3, shift=4.0)[0]
    assert not np.array_equal(shifted, default)
    with pytest.raises(ValueError, match="shift must be > 0"):
        generate(run_dir, ["x"], shift=0.0)


def test_generate_rejects_shapes_the_patch_cannot_cover(run_dir):
    with pytest.raises(ValueError, match="not divisible by the patch"):
        generate(run_dir, ["x"], frames=2, size=(18, 16), steps=1)


def test_write_videos_gives_decodable_mp4(run_dir, tmp_path):
    vids = generate(run_dir, ["a green triangle"], frames=6, size=(32, 16), steps=2)
    [path] = write_videos(vids, [tmp_path / "out" / "a.mp4"], fps=8)
    back = decode_mp4(path)
    assert back.shape == (6, 16, 32, 3)
    # Lossy H.264 of a noise-like video, but the per-frame colour means survive.
    means = back.reshape(6, -1, 3).mean(1)
    expected = vids[0].reshape(6, -1, 3).astype(float).mean(1)
    assert np.abs(means - expected).max() < 12


def test_generate_cli_with_prompts_file(run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue square moving up\n")
    out = tmp_path / "vid.mp4"
    args = parser.parse_args(
        [
            str(run_dir),
            "--prompts-file",
            str(prompts),
            "--output",
            str(out),
            "--steps",
            "2",
            "--frames",
            "2",
            "--size",
            "16x16",
            "--seed",
            "3",
        ]
    )
    assert generate_cli(args) == 0
    files = sorted(p.name for p in tmp_path.glob("vid_*.mp4"))
    assert files == ["vid_000.mp4", "vid_001.mp4"]
    assert decode_mp4(tmp_path / "vid_001.mp4").shape == (2, 16, 16, 3)
    assert "a blue square moving up" in capsys.readouterr().out
    # One prompt: the output name as given; a run with no checkpoint: exit code 1.
    args = parser.parse_args([str(run_dir), "one", "-o", str(tmp_path / "one.mp4"), "--steps", "1"])
    assert generate_cli(args) == 0 and (tmp_path / "one.mp4").exists()
    args = parser.parse_args([str(tmp_path / "norun"), "x", "-o", str(tmp_path / "x.mp4")])
    assert generate_cli(args) == 1
    # --same-noise: one prompt twice gives one video twice.
    twice = tmp_path / "twice.txt"
    twice.write_text("a red circle\na red circle\n")
    common = ["--prompts-file", str(twice), "--steps", "2", "--frames", "2", "--size", "16x16"]
    args = parser.parse_args(
        [str(run_dir), *common, "-o", str(tmp_path / "same.mp4"), "--same-noise"]
    )
    assert generate_cli(args) == 0
    a, b = (decode_mp4(tmp_path / f"same_{i:03d}.mp4") for i in range(2))
    assert np.array_equal(a, b)
    args = parser.parse_args([str(run_dir), *common, "-o", str(tmp_path / "apart.mp4")])
    assert generate_cli(args) == 0
    a, b = (decode_mp4(tmp_path / f"apart_{i:03d}.mp4") for i in range(2))
    assert not np.array_equal(a, b)


def test_bad_frames_or_size_are_clear_errors(run_dir, capsys):
    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    for bad in (["--size", "32by32"], ["--size", "0x32"], ["--frames", "0"], ["--frames", "-3"],
                ["--steps", "0"]):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            parser.parse_args([str(run_dir), "x", *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {bad[0]}" in err and ("WIDTHxHEIGHT" in err or "positive" in err)
    with pytest.raises(ValueError, match="frames must be at least 1, got 0"):
        generate(run_dir, ["x"], frames=0, steps=1)
    with pytest.raises(ValueError, match="size must be positive, got 0x16"):
        generate(run_dir, ["x"], size=(0, 16), steps=1)
