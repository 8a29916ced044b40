"""Text encoders: bundled MiniLM token embeddings, the caption cache, T5/umT5 from a local dir."""

from __future__ import annotations

import shutil

import pytest
import torch

from train.text import TextConfig, build_text_encoder, minilm_path

CAPTIONS = ["a red circle moving left", "a blue square", "a red circle moving left"]


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder(TextConfig(encoder="minilm", max_length=16))


def test_minilm_token_embeddings_and_masks(minilm):
    emb, mask = minilm.encode(CAPTIONS)
    lengths = [len(minilm.tokenizer(c)["input_ids"]) for c in CAPTIONS]
    assert minilm.dim == 384 and minilm.name == "minilm"
    assert emb.dtype == torch.float32 and mask.dtype == torch.bool
    assert emb.shape == (3, max(lengths), 384)
    assert mask.sum(1).tolist() == lengths
    assert torch.equal(emb[~mask], torch.zeros_like(emb[~mask]))  # padding is zero
    assert emb[mask].abs().mean() > 0.01
    torch.testing.assert_close(emb[0], emb[2])
    assert not torch.allclose(emb[0, :2], emb[1, :2])
    # Token embeddings, not just the pooled vector: they match the transformer directly.
    tok = minilm.tokenizer([CAPTIONS[1]], return_tensors="pt")
    with torch.no_grad():
        ref = minilm.model(**tok).last_hidden_state[0]
    torch.testing.assert_close(emb[1, : ref.shape[0]], ref, rtol=1e-4, atol=1e-4)


def test_truncation_to_max_length(minilm):
    emb, mask = minilm.encode(["word " * 100])
    assert emb.shape[1] == 16 and mask.all()


def test_cache_hit_avoids_recompute(tmp_path):
    cfg = TextConfig(encoder="minilm", cache_dir=str(tmp_path / "cache"))
    enc = build_text_encoder(cfg)
    e1, m1 = enc.encode(CAPTIONS)
    assert enc.encoded_count == 2  # the duplicate caption is encoded once
    e2, m2 = enc.encode(list(reversed(CAPTIONS)))
    assert enc.encoded_count == 2
    torch.testing.assert_close(e2[0], e1[2])
    files = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 2
    # A new process (a new encoder) reads the on-disk cache instead of encoding.
    enc2 = build_text_encoder(cfg)
    e3, m3 = enc2.encode(CAPTIONS)
    assert enc2.encoded_count == 0
    assert torch.equal(e3, e1) and torch.equal(m3, m1)
    enc2.encode(["something new"])
    assert enc2.encoded_count == 1


def _tiny_encoder_dir(tmp_path, kind: str):
    """A random tiny T5/umT5 encoder saved with save_pretrained, with a WordPiece tokenizer."""
    import transformers

    d = tmp_path / kind
    if kind == "t5":
        conf = transformers.T5Config(
            vocab_size=30522, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=64
        )
        model = transformers.T5EncoderModel(conf)
    else:
        conf = transformers.UMT5Config(
            vocab_size=30522, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=64
        )
        model = transformers.UMT5EncoderModel(conf)
    model.save_pretrained(d)
    src = minilm_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, d / name)
    return d, model.eval()


@pytest.mark.parametrize("kind", ["t5", "umt5"])
def test_t5_family_from_local_dir(tmp_path, kind):
    import transformers

    d, ref_model = _tiny_encoder_dir(tmp_path, kind)
    enc = build_text_encoder(TextConfig(encoder=str(d), max_length=12))
    expected_cls = transformers.UMT5EncoderModel if kind == "umt5" else transformers.T5EncoderModel
    assert isinstance(enc.model, expected_cls)
    assert enc.dim == 32 and enc.name == str(d)
    emb, mask = enc.encode(["a green triangle moving up", "a dog"])
    assert emb.shape[0] == 2 and emb.shape[2] == 32
    tok = enc.tokenizer(["a dog"], return_tensors="pt")
    with torch.no_grad():
        ref = ref_model(**tok).last_hidden_state[0]
    assert mask[1].sum() == ref.shape[0]
    torch.testing.assert_close(emb[1, : ref.shape[0]], ref, rtol=1e-4, atol=1e-5)


def test_missing_encoder_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="could not be loaded"):
        build_text_encoder(TextConfig(encoder=str(tmp_path / "nope")))


def test_open_clip_text_tower_from_local_weights_file(tmp_path):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None)  # random weights, saved
    weights = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), weights)
    enc = build_text_encoder(TextConfig(encoder=f"open_clip:ViT-B-32:{weights}", max_length=20))
    assert enc.dim == 512 and enc.name.endswith(str(weights))
    emb, mask = enc.encode(["a red circle", "a dog running fast"])
    assert emb.shape == (2, 6, 512) and mask.sum(1).tolist() == [5, 6]  # SOT + words + EOT
    # The EOT token's feature, projected, is the saved model's pooled text embedding.
    with torch.no_grad():
        pooled = clip.eval().encode_text(enc.tokenizer(["a dog running fast"]))
    torch.testing.assert_close(emb[1, 5] @ clip.text_projection, pooled[0], rtol=1e-4, atol=1e-4)


def test_open_clip_without_weights_is_a_clear_error():
    """No random tower: each build would draw other weights than the run trained with."""
    with pytest.raises(FileNotFoundError, match="open_clip:ViT-B-32 names no weights"):
        build_text_encoder(TextConfig(encoder="open_clip:ViT-B-32"))


def test_hidden_layer_choice(tmp_path):
    """`layer` picks a hidden state: 0 the token embeddings, -2 the penultimate layer."""
    caps = ["a red circle moving left", "a red circle moving right"]
    tok = build_text_encoder(TextConfig()).tokenizer(caps, return_tensors="pt")
    embs = {}
    for layer in (0, -2, 6, -1):
        enc = build_text_encoder(TextConfig(layer=layer, cache_dir=str(tmp_path / "cache")))
        embs[layer], mask = enc.encode(caps)
        assert enc.encoded_count == 2  # one layer's cache entries never serve another layer
        with torch.no_grad():
            ref = enc.model(**tok, output_hidden_states=True).hidden_states
        assert mask.all() and len(ref) == 7  # embeddings + 6 layers
        torch.testing.assert_close(embs[layer], ref[layer], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        words = enc.model.embeddings(input_ids=tok["input_ids"])
    torch.testing.assert_close(embs[0], words, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(embs[6], embs[-1])
    assert not torch.allclose(embs[-2], embs[-1])
    # The reason for the option: the last layer pulls "left" and "right" together.
    i = tok["input_ids"][0].tolist().index(enc.tokenizer.convert_tokens_to_ids("left"))

    def cos(e):
        return torch.nn.functional.cosine_similarity(e[0, i], e[1, i], dim=0)

    assert cos(embs[0]) < 0.6 < 0.75 < cos(embs[-1])


def test_hidden_layer_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="text layer 7 out of range.*6 layers"):
        build_text_encoder(TextConfig(layer=7))
    with pytest.raises(ValueError, match="text layer -8 out of range"):
        build_text_encoder(TextConfig(layer=-8))
    build_text_encoder(TextConfig(layer=-7))  # the token embeddings, counted from the end
    with pytest.raises(ValueError, match="open_clip encoders give their last layer only"):
        build_text_encoder(TextConfig(encoder="open_clip:ViT-B-32", layer=0))


def test_an_uncached_encoder_id_stops_at_start_without_downloading(monkeypatch):
    """Nothing downloads silently: an HF id missing from the cache is an error naming
    text.allow_download, raised by the driver's check before any Ray work."""
    from train.text import check_text_encoder

    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hf-cache")
    cfg = TextConfig(encoder="google/umt5-xxl")
    for step in (check_text_encoder, build_text_encoder):
        with pytest.raises(FileNotFoundError, match="text.allow_download=true"):
            step(cfg)
    check_text_encoder(TextConfig())  # the bundled MiniLM needs nothing
