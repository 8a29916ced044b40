"""Latent codecs: pixel-space identity and a tiny diffusers AutoencoderKLWan from a local dir."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.latents import LatentConfig, build_latent_codec


def video(b=2, t=5, h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, t, h, w, 3), dtype=np.uint8)


def test_identity_round_trip_is_exact():
    codec = build_latent_codec(LatentConfig())
    v = video(t=3, h=8, w=12)
    z = codec.encode(v)
    assert z.shape == (2, 3, 3, 8, 12) and z.dtype == torch.float32
    assert z.min() >= -1 and z.max() <= 1
    # Channels-first: channel c of z is colour channel c of the video.
    assert torch.allclose(z[1, 2, 0], torch.from_numpy(v[1, 0, :, :, 2]).float() / 127.5 - 1)
    assert np.array_equal(codec.decode(z), v)
    assert codec.latent_shape(3, 8, 12) == (3, 3, 8, 12)
    assert (codec.channels, codec.temporal_factor, codec.spatial_factor) == (3, 1, 1)
    # Out-of-range values are clipped on decode.
    assert codec.decode(torch.full((1, 3, 1, 2, 2), 5.0)).min() == 255


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[2.0, 0.5, 1.0, 4.0],
    )
    d = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(d)
    return d, vae.eval()


def test_wan_vae_codec_from_local_dir(tiny_vae_dir):
    d, ref = tiny_vae_dir
    codec = build_latent_codec(LatentConfig(codec="vae", vae=str(d)))
    assert (codec.channels, codec.temporal_factor, codec.spatial_factor) == (4, 2, 4)
    v = video(t=5, h=16, w=16)
    z = codec.encode(v)
    assert z.shape == (2, 4, 3, 4, 4) == (2, *codec.latent_shape(5, 16, 16))
    # Normalised as the Wan pipeline does: (mode - mean) / std.
    x = torch.from_numpy(v).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    with torch.no_grad():
        mode = ref.encode(x).latent_dist.mode()
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, -1, 1, 1, 1)
    std = torch.tensor([2.0, 0.5, 1.0, 4.0]).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(z, (mode - mean) / std, rtol=1e-4, atol=1e-4)
    out = codec.decode(z)
    assert out.shape == (2, 5, 16, 16, 3) and out.dtype == np.uint8
    with torch.no_grad():
        ref_out = ref.decode(mode).sample
    expected = ((ref_out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)
    assert np.abs(out.astype(int) - expected.numpy().astype(int)).max() <= 1
    with pytest.raises(ValueError, match="frames must be 1 \\+ 2\\*k"):
        codec.encode(video(t=4))


def test_vae_pipeline_dir_with_vae_subfolder(tiny_vae_dir, tmp_path):
    import shutil

    d, _ = tiny_vae_dir
    shutil.copytree(d, tmp_path / "pipe" / "vae")
    codec = build_latent_codec(LatentConfig(codec="vae", vae=str(tmp_path / "pipe")))
    assert codec.channels == 4


def test_vae_missing_weights_and_bad_codec_are_clear_errors(tmp_path):
    pytest.importorskip("diffusers")
    with pytest.raises(FileNotFoundError, match="VAE weights"):
        build_latent_codec(LatentConfig(codec="vae", vae=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="needs latent.vae"):
        build_latent_codec(LatentConfig(codec="vae"))
    with pytest.raises(ValueError, match="unknown latent codec"):
        build_latent_codec(LatentConfig(codec="jpeg"))


def _pairs_dir(tmp_path):
    """A three-row pairs table: a good clip, a too-short clip and corrupt video bytes."""
    from common.video import encode_mp4
    from schemas.validate import rows_to_table, write_table

    good = video(b=1, t=8, h=32, w=32, seed=3)[0]
    base = dict(
        source_id="s",
        source_path="/x.mp4",
        start_s=0.0,
        end_s=1.0,
        fps=8.0,
        width=32,
        height=32,
        caption="a red circle",
        caption_source="attributes",
    )
    rows = [
        dict(base, clip_id="good", num_frames=8, video=encode_mp4(good, fps=8)),
        dict(base, clip_id="short", num_frames=3, video=encode_mp4(good[:3], fps=8)),
        dict(base, clip_id="corrupt", num_frames=8, video=b"not a video"),
    ]
    d = tmp_path / "pairs"
    d.mkdir()
    write_table(rows_to_table(rows, "pairs"), str(d / "part-0.parquet"), "pairs")
    return d


def test_precompute_latents_job(ray_session, tiny_vae_dir, tmp_path):
    import pyarrow.parquet as pq

    from schemas.validate import check_files
    from train.precompute_latents import PrecomputeConfig, latents_from_row, precompute_latents

    d, _ = tiny_vae_dir
    cfg = PrecomputeConfig(
        latent=LatentConfig(codec="vae", vae=str(d)),
        frames=5,
        width=16,
        height=16,
        batch_size=2,
        actors=1,
        num_cpus=0.5,
    )
    dest = tmp_path / "latents"
    counts = precompute_latents(_pairs_dir(tmp_path), dest, cfg)
    assert counts == {"rows": 3, "encoded": 1, "errors": 2}
    files = sorted(str(p) for p in dest.glob("*.parquet"))
    assert files and check_files(files, "latents") == files  # raises on a schema mismatch
    rows = {r["clip_id"]: r for f in files for r in pq.read_table(f).to_pylist()}
    assert rows["short"]["latents"] is None and rows["short"]["latent_error"].startswith(
        "too_short"
    )
    assert rows["corrupt"]["latent_error"].startswith("decode_failed")
    z = latents_from_row(rows["good"])
    assert z.shape == (4, 3, 4, 4) and z.dtype == np.float16
    assert rows["good"]["caption"] == "a red circle"  # pairs columns are carried over
    # The stored latents are the codec's encoding of the decoded, resized frames.
    from common.video import decode_mp4

    codec = build_latent_codec(cfg.latent)
    frames = decode_mp4(rows["good"]["video"], indices=list(range(5)), size=(16, 16))
    ref = codec.encode(frames[None])[0].numpy().astype(np.float16)
    assert np.allclose(z.astype(np.float32), ref.astype(np.float32), atol=1e-2)
