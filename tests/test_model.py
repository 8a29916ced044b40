"""DiT: shapes, 3D RoPE and attention against explicit references, zero-init, masking."""

from __future__ import annotations

import math

import pytest
import torch

from train.model import MODEL_PRESETS, DiT, ModelConfig, count_params, model_flops
from train.model import Attention as Attn
from train.positions import apply_rope, rope_angles, rope_axis_dims, sincos_position_embedding

TEXT_DIM = 24


def small_cfg(**kw) -> ModelConfig:
    base = dict(preset="tiny", hidden=48, depth=2, heads=4)
    base.update(kw)
    return ModelConfig(**base)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (so zero-initialised layers do not hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def inputs(b, t, h, w, c=3, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, t, h, w, generator=g)
    tt = torch.rand(b, generator=g)
    text = torch.randn(b, length, TEXT_DIM, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, 3:] = False
    return x, tt, text, mask


@pytest.mark.parametrize("shape", [(1, 32, 32), (8, 32, 32), (4, 16, 48), (3, 8, 12)])
def test_output_shape_for_bucket_shapes(shape):
    model = randomize(DiT.from_config(small_cfg(), TEXT_DIM))
    x, t, text, mask = inputs(2, *shape)
    v = model(x, t, text, mask)
    assert v.shape == x.shape
    assert torch.isfinite(v).all()
    assert model.num_tokens(*shape) == shape[0] * (shape[1] // 4) * (shape[2] // 4)


def test_indivisible_shape_is_a_clear_error():
    model = DiT.from_config(small_cfg(patch_t=2), TEXT_DIM)
    x, t, text, mask = inputs(1, 1, 16, 16)
    with pytest.raises(ValueError, match="not divisible by the patch size 2x4x4"):
        model(x, t, text, mask)
    with pytest.raises(ValueError, match="not divisible"):
        model.num_tokens(4, 18, 16)
    # With patch_t=2 even frame counts work.
    x, t, text, mask = inputs(1, 4, 16, 16)
    assert model(x, t, text, mask).shape == x.shape


def test_zero_init_output_is_exactly_zero_and_gradients_flow():
    model = DiT.from_config(ModelConfig(), TEXT_DIM)
    x, t, text, mask = inputs(2, 4, 16, 16)
    v = model(x, t, text, mask)
    assert torch.equal(v, torch.zeros_like(v))
    loss = (v - torch.randn_like(v)).pow(2).mean()
    loss.backward()
    # The zero output layer still receives gradient, so training can start.
    assert model.final.linear.weight.grad.abs().sum() > 0


def test_unpatchify_inverts_patch_raster_order():
    model = DiT.from_config(small_cfg(patch_t=2, patch_h=2, patch_w=4), TEXT_DIM)
    b, c, T, H, W = 2, 3, 4, 6, 8
    x = torch.randn(b, c, T, H, W)
    pt, ph, pw = model.patch
    gt, gh, gw = model.grid(T, H, W)
    # Reference patchify with explicit loops: token n = (it, ih, iw) raster, features (pt, ph, pw, c).
    tokens = []
    for it in range(gt):
        for ih in range(gh):
            for iw in range(gw):
                patch = x[
                    :, :, it * pt : (it + 1) * pt, ih * ph : (ih + 1) * ph, iw * pw : (iw + 1) * pw
                ]
                tokens.append(patch.permute(0, 2, 3, 4, 1).reshape(b, -1))
    tok = torch.stack(tokens, dim=1)  # (B, N, pt*ph*pw*C)
    assert torch.equal(model.unpatchify(tok, (gt, gh, gw)), x)
    # The patch embedding (Conv3d) orders tokens the same way: token n sees only patch n.
    emb = model.x_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
    w = model.x_embed.weight.reshape(model.config.hidden, c, pt, ph, pw)
    w = w.permute(0, 2, 3, 4, 1).reshape(model.config.hidden, -1)
    ref = tok @ w.T + model.x_embed.bias
    torch.testing.assert_close(emb, ref, rtol=1e-4, atol=1e-5)


def test_rope_matches_explicit_reference():
    head_dim = 16
    grid = (3, 2, 4)
    theta = 100.0
    dt, dh, dw = rope_axis_dims(head_dim)
    assert dt + dh + dw == head_dim and min(dt, dh, dw) > 0
    x = torch.randn(1, 2, math.prod(grid), head_dim)
    out = apply_rope(x, rope_angles(grid, head_dim, theta))
    ref = torch.empty_like(x)
    n = 0
    for it in range(grid[0]):
        for ih in range(grid[1]):
            for iw in range(grid[2]):
                pair = 0
                for pos, d in ((it, dt), (ih, dh), (iw, dw)):
                    for j in range(d // 2):
                        ang = pos * theta ** (-2 * j / d)
                        a, b = x[..., n, 2 * pair], x[..., n, 2 * pair + 1]
                        ref[..., n, 2 * pair] = a * math.cos(ang) - b * math.sin(ang)
                        ref[..., n, 2 * pair + 1] = a * math.sin(ang) + b * math.cos(ang)
                        pair += 1
                n += 1
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    head_dim, grid = 12, (4, 4, 4)
    ang = rope_angles(grid, head_dim, 10000.0)
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def idx(t, h, w):
        return (t * grid[1] + h) * grid[2] + w

    def score(p, r):
        qa = apply_rope(q.view(1, 1, 1, -1), ang[idx(*p)].view(1, -1))
        ka = apply_rope(k.view(1, 1, 1, -1), ang[idx(*r)].view(1, -1))
        return (qa * ka).sum()

    torch.testing.assert_close(score((2, 1, 3), (1, 0, 1)), score((3, 2, 2), (2, 1, 0)))
    assert not torch.allclose(score((2, 1, 3), (1, 0, 1)), score((2, 1, 3), (1, 1, 1)))


def _reference_attention(m: Attn, x, ctx, mask, rope):
    """Explicit einsum + softmax attention (per-head RMS norm written out)."""
    b, n, _ = x.shape
    hd = m.head_dim

    def split(y):
        return y.view(b, y.shape[1], m.heads, hd)

    def rms(y, w):
        return y / torch.sqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    q = rms(split(x @ m.q.weight.T + m.q.bias), m.q_norm.weight)
    k = rms(split(ctx @ m.k.weight.T + m.k.bias), m.k_norm.weight)
    v = split(ctx @ m.v.weight.T + m.v.bias)
    if rope is not None:
        q = apply_rope(q.transpose(1, 2), rope).transpose(1, 2)
        k = apply_rope(k.transpose(1, 2), rope).transpose(1, 2)
    scores = torch.einsum("bnhd,blhd->bhnl", q, k) / math.sqrt(hd)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = torch.einsum("bhnl,blhd->bnhd", scores.softmax(-1), v).reshape(b, n, -1)
    return out @ m.o.weight.T + m.o.bias


def test_self_attention_with_rope_matches_reference():
    torch.manual_seed(0)
    m = randomize(Attn(32, 4, qk_norm=True), seed=1)
    x = torch.randn(2, 2 * 3 * 2, 32)
    rope = rope_angles((2, 3, 2), 8, 10000.0)
    torch.testing.assert_close(
        m(x, rope=rope), _reference_attention(m, x, x, None, rope), rtol=1e-4, atol=1e-5
    )


def test_cross_attention_with_mask_matches_reference():
    m = randomize(Attn(32, 4, qk_norm=True), seed=2)
    x, ctx = torch.randn(2, 7, 32), torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = m(x, context=ctx, mask=mask)
    torch.testing.assert_close(
        out, _reference_attention(m, x, ctx, mask, None), rtol=1e-4, atol=1e-5
    )


def test_masked_text_tokens_do_not_change_the_output():
    model = randomize(DiT.from_config(small_cfg(), TEXT_DIM)).eval()
    x, t, text, mask = inputs(2, 2, 8, 8)
    mask[:] = True
    mask[:, 3:] = False
    v1 = model(x, t, text, mask)
    garbage = text.clone()
    garbage[:, 3:] = 100.0 * torch.randn_like(garbage[:, 3:])
    v2 = model(x, t, garbage, mask)
    torch.testing.assert_close(v1, v2)
    # Changing a real token changes the output.
    other = text.clone()
    other[:, 0] += 1.0
    assert not torch.allclose(model(x, t, other, mask), v1)


def test_dropped_captions_use_the_learned_null_text():
    model = randomize(DiT.from_config(small_cfg(), TEXT_DIM)).eval()
    x, t, text, mask = inputs(2, 2, 8, 8)
    drop = torch.tensor([True, False])
    v = model(x, t, text, mask, drop_text=drop)
    null_t, null_m = model.null_condition(2, text.shape[1])
    v_null = model(x, t, null_t, null_m)
    v_cond = model(x, t, text, mask)
    torch.testing.assert_close(v[0], v_null[0])
    torch.testing.assert_close(v[1], v_cond[1])
    # Dropped rows ignore the caption entirely.
    v_other = model(x, t, torch.randn_like(text), mask, drop_text=drop)
    torch.testing.assert_close(v[0], v_other[0])
    # An all-masked caption is treated as the null caption instead of producing NaN.
    empty = torch.zeros_like(mask)
    torch.testing.assert_close(model(x, t, text, empty), v_null)


def test_pooled_text_conditions_every_block_through_adaln():
    """With cross-attention switched off, the caption reaches the output only through the
    pooled-text adaLN path (and not at all without it)."""
    x, t, text, mask = inputs(2, 2, 8, 8)
    other = text + 1.0
    for pooled in (True, False):
        model = randomize(DiT.from_config(small_cfg(pooled_text=pooled), TEXT_DIM)).eval()
        assert (model.pooled_embed is not None) == pooled
        with torch.no_grad():
            for block in model.blocks:
                block.cross.o.weight.zero_()
                block.cross.o.bias.zero_()
        changed = not torch.allclose(model(x, t, text, mask), model(x, t, other, mask))
        assert changed == pooled
    # Initialised as a no-op: a fresh model's conditioning ignores the pooled caption.
    fresh = DiT.from_config(small_cfg(pooled_text=True), TEXT_DIM)
    assert torch.count_nonzero(fresh.pooled_embed[-1].weight) == 0


def test_abs_pos_lets_a_token_tell_its_frame():
    """On a clip whose every token is the same, RoPE alone cannot tell frames apart (each
    attention output averages identical values), so every frame's output is the same; with
    ``abs_pos`` the first frame's output differs from the last's."""
    x = torch.full((1, 3, 4, 8, 8), 0.3)
    _, t, text, mask = inputs(1, 4, 8, 8)
    outs = {}
    for abs_pos in (False, True):
        model = randomize(DiT.from_config(small_cfg(abs_pos=abs_pos), TEXT_DIM)).eval()
        with torch.no_grad():
            outs[abs_pos] = model(x, t, text, mask)  # (1, 3, 4, 8, 8)
    rope_only, with_pos = outs[False], outs[True]
    torch.testing.assert_close(rope_only[:, :, 0], rope_only[:, :, 3])
    assert (with_pos[:, :, 0] - with_pos[:, :, 3]).abs().max() > 1e-2
    # weight-free: the same state dict with and without it
    keys = set(DiT.from_config(small_cfg(abs_pos=True), TEXT_DIM).state_dict())
    assert keys == set(DiT.from_config(small_cfg(), TEXT_DIM).state_dict())


def test_text_norm_standardises_the_caption_with_stored_statistics():
    """``text_norm``: the model reads (text - mean) / std; identity until the statistics are
    set; they are buffers, so checkpoints (and the EMA) carry them."""
    x, t, text, mask = inputs(2, 2, 8, 8)
    plain = randomize(DiT.from_config(small_cfg(pooled_text=True), TEXT_DIM)).eval()
    normed = DiT.from_config(small_cfg(pooled_text=True, text_norm=True), TEXT_DIM).eval()
    missing, unexpected = normed.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["text_mean", "text_std"] and not unexpected
    with torch.no_grad():
        torch.testing.assert_close(normed(x, t, text, mask), plain(x, t, text, mask))
        mean, std = torch.randn(TEXT_DIM), torch.rand(TEXT_DIM) + 0.5
        normed.set_text_stats(mean, std)
        standardised = plain(x, t, (text - mean) / std, mask)
        torch.testing.assert_close(normed(x, t, text, mask), standardised)
        assert not torch.allclose(standardised, plain(x, t, text, mask))
    sd = normed.state_dict()
    torch.testing.assert_close(sd["text_mean"], mean)
    torch.testing.assert_close(sd["text_std"], std)
    # a dimension that does not vary over the training captions is centred, not scaled
    normed.set_text_stats(mean, torch.cat([std[:-1], torch.tensor([1e-9])]))
    assert float(normed.text_std[-1]) == 1.0 and torch.equal(normed.text_std[:-1], std[:-1])
    with pytest.raises(ValueError, match=r"shape \(24,\)"):
        normed.set_text_stats(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="text_norm=True"):
        plain.set_text_stats(mean, std)


def test_text_whiten_projects_the_centred_tokens_onto_their_whitened_basis():
    """``text_whiten``: the model reads (text - mean) @ text_proj, where text_proj whitens
    the covariance it was given (each eigen-direction scaled to variance lam / (lam + eps))."""
    x, t, text, mask = inputs(2, 2, 8, 8)
    plain = randomize(DiT.from_config(small_cfg(pooled_text=True), TEXT_DIM)).eval()
    white = DiT.from_config(small_cfg(pooled_text=True, text_norm=True, text_whiten=True), TEXT_DIM)
    white = white.eval()
    missing, _ = white.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["text_mean", "text_proj", "text_std"]
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(400, TEXT_DIM, generator=g) @ torch.randn(TEXT_DIM, TEXT_DIM, generator=g)
    tokens[:, -1] = 0.01 * tokens[:, 0]  # a direction the tokens hardly vary along
    mean, cov = tokens.mean(0), torch.cov(tokens.T)
    white.set_text_stats(mean, tokens.std(0), cov)
    eps = white.config.text_whiten_eps * float(torch.linalg.eigvalsh(cov.double()).mean())
    proj = white.text_proj.double()
    # proj^T cov proj = lam / (lam + eps) on cov's eigenvectors: ~1 for the large directions
    lam, u = torch.linalg.eigh(cov.double())
    whitened = u.T @ proj @ cov.double() @ proj @ u  # text_proj is stored in float32
    torch.testing.assert_close(whitened, torch.diag(lam / (lam + eps)), atol=1e-5, rtol=1e-5)
    assert float((proj @ proj).max()) <= 1.0 / eps + 1e-6  # at most 1/sqrt(eps) per direction
    with torch.no_grad():
        torch.testing.assert_close(
            white(x, t, text, mask), plain(x, t, (text - mean) @ white.text_proj, mask)
        )
    with pytest.raises(ValueError, match=r"\(24, 24\) covariance, got None"):
        white.set_text_stats(mean, tokens.std(0))
    with pytest.raises(ValueError, match="text_whiten needs model.text_norm"):
        small_cfg(text_whiten=True).resolved()
    with pytest.raises(ValueError, match="text_whiten_eps must be > 0"):
        small_cfg(text_norm=True, text_whiten=True, text_whiten_eps=0.0).resolved()


def test_sincos_position_embedding_is_per_axis_in_raster_order():
    gt, gh, gw, dim = 3, 4, 5, 48
    e = sincos_position_embedding((gt, gh, gw), dim).view(gt, gh, gw, dim)
    dt, dh, dw = rope_axis_dims(dim)
    # the time part depends on t only, the height part on h only, the width part on w only
    torch.testing.assert_close(e[:, :, :, :dt], e[:, :1, :1, :dt].expand(gt, gh, gw, dt))
    torch.testing.assert_close(
        e[..., dt : dt + dh], e[:1, :, :1, dt : dt + dh].expand(gt, gh, gw, dh)
    )
    torch.testing.assert_close(e[..., dt + dh :], e[:1, :1, :, dt + dh :].expand(gt, gh, gw, dw))
    # position 0 is sin 0 / cos 0; every grid position has its own embedding
    assert torch.equal(e[0, 0, 0, : dt // 2], torch.zeros(dt // 2))
    assert torch.equal(e[0, 0, 0, dt // 2 : dt], torch.ones(dt // 2))
    flat = e.reshape(-1, dim)
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e3).min() > 1e-3


def test_activation_checkpointing_gives_same_output_and_grads():
    torch.manual_seed(0)
    a = randomize(DiT.from_config(small_cfg(), TEXT_DIM))
    b = randomize(DiT.from_config(small_cfg(checkpoint_activations=True), TEXT_DIM))
    x, t, text, mask = inputs(2, 2, 8, 8)
    va, vb = a(x, t, text, mask), b(x, t, text, mask)
    torch.testing.assert_close(va, vb)
    va.square().sum().backward()
    vb.square().sum().backward()
    torch.testing.assert_close(a.blocks[0].attn.q.weight.grad, b.blocks[0].attn.q.weight.grad)


def test_presets_sizes_and_flops():
    tiny = DiT.from_config(ModelConfig(), 384)
    assert 1_000_000 < count_params(tiny) < 5_000_000
    with torch.device("meta"):
        xl = DiT.from_config(ModelConfig(preset="XL"), 4096, in_channels=16)
    assert 0.6e9 < count_params(xl) < 1.5e9
    assert list(MODEL_PRESETS) == ["tiny", "S", "B", "L", "XL"]
    cfg = ModelConfig(text_dim=384)
    f1, f2 = model_flops(cfg, 512, 16), model_flops(cfg, 1024, 16)
    # Linear terms double, attention quadruples: between 2x and 4x.
    assert 2.0 < f2 / f1 < 4.0
    # Per-token linear FLOPs are about 2 x (block parameters).
    block_params = sum(p.numel() for p in tiny.blocks.parameters())
    assert 0.5 < (model_flops(cfg, 1, 0) - 0) / (2 * block_params) < 2.0
    with pytest.raises(ValueError, match="unknown model preset"):
        ModelConfig(preset="huge").resolved()
