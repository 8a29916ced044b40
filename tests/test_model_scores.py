"""Model scorers through the user's code path: a tiny random open_clip model from a config,
saved as a local checkpoint; a LAION-style aesthetic head and NSFW models saved to files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from curate.model_scores import ModelScorer
from curate.score_aesthetic import load_head
from curate.score_config import ScoreConfig
from curate.scoring import key_frames
from curate.synthetic import Shot, render_shot

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(model config path, checkpoint path, aesthetic head path, the head's weights)."""
    import open_clip

    d = tmp_path_factory.mktemp("clip")
    cfg_path = d / "spacetime-test-tiny.json"
    cfg_path.write_text(json.dumps(TINY))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    model = open_clip.create_model("spacetime-test-tiny")
    ckpt = d / "tiny_clip.pt"
    torch.save(model.state_dict(), ckpt)
    # improved-aesthetic-predictor layout: layers.0 / layers.2 (dropout between), no activation
    head = torch.nn.Sequential(torch.nn.Linear(32, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))
    head_path = d / "aesthetic.pth"
    torch.save({f"layers.{k}": v for k, v in head.state_dict().items()}, head_path)
    return cfg_path, ckpt, head_path, head.eval()


def clips() -> list[list[bytes]]:
    cfg = ScoreConfig(model_frames=2, model_frame_size=48)
    out = []
    for bg in (1, 2):
        f = np.stack(list(render_shot(Shot(kind="pan", seconds=1.0, background=bg), 96, 64, 12.0)))
        out.append(key_frames(f, 12.0, cfg))
    return out


def score_cfg(tiny_clip, **kw) -> ScoreConfig:
    cfg_path, ckpt, head_path, _ = tiny_clip
    base = {"clip_model": "spacetime-test-tiny", "clip_pretrained": str(ckpt),
            "clip_model_config": str(cfg_path), "aesthetic_head": str(head_path)}  # fmt: skip
    return ScoreConfig(**{**base, **kw})


def test_embeddings_and_aesthetic_from_local_checkpoint(tiny_clip):
    import open_clip

    cfg = score_cfg(tiny_clip)
    assert cfg.model_scorers_enabled
    frames = clips()
    batch = pa.table({"clip_id": ["a", "b", "bad"], "_key_frames": [*frames, [b"not a jpeg"]]})
    out = ModelScorer(cfg)(batch)
    emb = out.column("clip_embedding").to_pylist()
    assert len(emb[0]) == 32 and abs(np.linalg.norm(emb[0]) - 1) < 1e-4 and emb[2] is None
    assert out.column("_score_error").to_pylist()[:2] == [None, None]
    assert out.column("_score_error").to_pylist()[2].startswith("model_error: ")
    assert out.column("nsfw").to_pylist() == [None, None, None]  # not configured: null, not made up
    # the aesthetic is the head on the checkpoint's normalised frame embeddings, averaged
    model, _, pre = open_clip.create_model_and_transforms(
        "spacetime-test-tiny", pretrained=str(tiny_clip[1])
    )
    from PIL import Image

    from curate.scoring import decode_key_frame

    with torch.no_grad():
        x = torch.stack([pre(Image.fromarray(decode_key_frame(j))) for j in frames[0]])
        e = model.eval().encode_image(x)
        e = e / e.norm(dim=-1, keepdim=True)
        expected = tiny_clip[3](e).mean().item()
    assert out.column("aesthetic").to_pylist()[0] == pytest.approx(expected, abs=1e-4)


def test_missing_weights_fail_at_start_naming_them(tiny_clip, tmp_path):
    with pytest.raises(
        FileNotFoundError, match="open_clip weights ViT-B-32/openai .*not in the local cache"
    ):
        ModelScorer.check_weights(ScoreConfig(clip_model="ViT-B-32", clip_pretrained="openai"))
    with pytest.raises(
        FileNotFoundError, match="checkpoint /nope.pt for spacetime-test-tiny does not exist"
    ):
        ModelScorer.check_weights(score_cfg(tiny_clip, clip_pretrained="/nope.pt"))
    with pytest.raises(
        FileNotFoundError, match="aesthetic head .* does not exist.*improved-aesthetic"
    ):
        ModelScorer.check_weights(score_cfg(tiny_clip, aesthetic_head=str(tmp_path / "none.pth")))
    with pytest.raises(FileNotFoundError, match="NSFW weights 'someone/nsfw-model'"):
        ModelScorer.check_weights(ScoreConfig(nsfw_model="someone/nsfw-model"))
    # a local directory that is not there (absolute or relative): named, not a Hub id error
    for missing in ("/nope/nsfwdir", "./missing_nsfw", "models/nsfw/v1"):
        with pytest.raises(FileNotFoundError, match=f"{missing} is not a directory"):
            ModelScorer.check_weights(ScoreConfig(nsfw_model=missing))
    with pytest.raises(FileNotFoundError, match="is not a directory"):  # even if downloads are on
        ModelScorer.check_weights(ScoreConfig(nsfw_model="/nope/nsfwdir", allow_download=True))
    with pytest.raises(FileNotFoundError, match="NSFW weights 'not a model id'"):
        ModelScorer.check_weights(ScoreConfig(nsfw_model="not a model id"))
    with pytest.raises(ValueError, match="aesthetic_head needs clip_model"):
        ScoreConfig(aesthetic_head="x.pth")
    assert not ScoreConfig().model_scorers_enabled


def test_head_shape_mismatch_is_named(tmp_path):
    p = tmp_path / "h.pth"
    torch.save(torch.nn.Linear(768, 1).state_dict(), p)
    assert load_head(p, 768).in_features == 768
    with pytest.raises(
        ValueError, match="takes 768-d embeddings but the open_clip model gives 32-d"
    ):
        load_head(p, 32)


def test_a_head_of_another_embedding_size_is_refused_at_start(tiny_clip, tmp_path):
    """Named before the split runs (it failed in the model actors' start, after it)."""
    from common.config import ConfigError

    wide = tmp_path / "wide.pth"
    torch.save(torch.nn.Linear(768, 1).state_dict(), wide)
    ModelScorer.check_weights(score_cfg(tiny_clip))  # the tiny head fits the tiny model
    for cfg in (score_cfg(tiny_clip, aesthetic_head=str(wide)),
                score_cfg(tiny_clip, nsfw_model=str(wide))):  # fmt: skip
        with pytest.raises(ConfigError, match="takes 768-d embeddings .* gives 32-d"):
            ModelScorer.check_weights(cfg)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    d = tmp_path_factory.mktemp("nsfw")
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, id2label={0: "normal", 1: "nsfw"}, label2id={"normal": 0, "nsfw": 1})  # fmt: skip
    model = ViTForImageClassification(cfg)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 3.0]))  # p(nsfw) = sigmoid(3) on any image
    model.save_pretrained(d)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return d


def test_nsfw_classifier_from_local_dir(tiny_classifier):
    cfg = ScoreConfig(nsfw_model=str(tiny_classifier))
    assert cfg.model_scorers_enabled
    out = ModelScorer(cfg)(pa.table({"_key_frames": clips()}))
    assert out.column("nsfw").to_pylist() == pytest.approx([1 / (1 + np.exp(-3.0))] * 2, abs=1e-4)
    assert out.column("clip_embedding").to_pylist() == [None, None]
    with pytest.raises(ValueError, match="none of which is in"):
        ModelScorer(ScoreConfig(nsfw_model=str(tiny_classifier), nsfw_labels=("porn",)))
    # labels are matched without case, as the model's own are lowered
    mixed = ModelScorer(ScoreConfig(nsfw_model=str(tiny_classifier), nsfw_labels=("NSFW",)))
    assert mixed.nsfw.nsfw_ids == [1]


def test_nsfw_head_on_clip_embeddings(tiny_clip, tmp_path):
    head = tmp_path / "nsfw_head.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(1, 32), "bias": torch.tensor([-2.0])}, str(head))
    out = ModelScorer(score_cfg(tiny_clip, nsfw_model=str(head)))(
        pa.table({"_key_frames": clips()})
    )
    assert out.column("nsfw").to_pylist() == pytest.approx([1 / (1 + np.exp(2.0))] * 2, abs=1e-4)


def test_actor_pool_stage(ray_session, tiny_clip):
    ray = ray_session
    cfg = score_cfg(tiny_clip)
    ds = ray.data.from_arrow(pa.table({"clip_id": ["a", "b"], "_key_frames": clips()}))
    out = ds.map_batches(ModelScorer, fn_constructor_kwargs={"cfg": cfg}, batch_format="pyarrow",
                         compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5, batch_size=2).take_all()  # fmt: skip
    assert [len(r["clip_embedding"]) for r in out] == [32, 32]
    assert all(r["aesthetic"] is not None and r["_score_error"] is None for r in out)


def test_curate_with_model_stage_end_to_end(ray_session, tiny_clip, bikes_mp4, tmp_path):
    # run_curate with open_clip on: split -> model actor pool -> filter -> write; every clip
    # gets an embedding and an aesthetic score, and min_aesthetic drops by name
    from tables import read as rows

    from curate.config import CurateConfig
    from curate.pipeline import run_curate
    from curate.score_config import DedupConfig, FilterConfig

    score = score_cfg(tiny_clip, num_cpus=0.5)
    base = {"score": score, "dedup": DedupConfig(enabled=False)}
    run_curate([str(bikes_mp4)], tmp_path / "all", CurateConfig(**base))
    clips = rows(tmp_path / "all", "clips")
    assert len(clips) >= 4
    assert all(len(c["clip_embedding"]) == 32 for c in clips)
    scores = sorted(c["aesthetic"] for c in clips)
    assert len(set(scores)) == len(scores)  # a real head on real frames, not a constant
    cut = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2

    m = run_curate([str(bikes_mp4)], tmp_path / "cut",
                   CurateConfig(**base, filters=FilterConfig(min_aesthetic=cut)))  # fmt: skip
    kept = rows(tmp_path / "cut", "clips")
    dropped = [r for r in rows(tmp_path / "cut", "rejects") if r["stage"] == "filter"]
    by_id = {c["clip_id"]: c["aesthetic"] for c in clips}
    assert sorted(c["clip_id"] for c in kept) == sorted(k for k, a in by_id.items() if a >= cut)
    assert sorted(r["clip_id"] for r in dropped) == sorted(k for k, a in by_id.items() if a < cut)
    assert {r["reason"] for r in dropped} == {"min_aesthetic"}
    assert all(f"< min_aesthetic={cut:g}" in r["detail"] for r in dropped)
    assert m["rejects_by_reason"]["filter"] == {"min_aesthetic": len(dropped)}


def test_openai_weights_get_the_activation_they_were_trained_with():
    """OpenAI's CLIP weights use QuickGELU; under a plain model name open_clip 3 builds GELU
    with only a warning. Every loader passes force_quick_gelu from this check."""
    from common.openclip import needs_quick_gelu

    assert needs_quick_gelu("ViT-L-14", "openai") and needs_quick_gelu("ViT-B-32", "openai")
    assert not needs_quick_gelu("ViT-L-14-quickgelu", "openai")  # already QuickGELU
    assert not needs_quick_gelu("ViT-L-14", "laion2b_s32b_b82k")  # trained with GELU
    assert not needs_quick_gelu("ViT-L-14", "/models/clip.safetensors")  # the name decides
    assert not needs_quick_gelu("ViT-L-14", "")
