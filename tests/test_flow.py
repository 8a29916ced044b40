"""Rectified flow: loss and Euler steps on hand-computed inputs, the timestep shift, EMA."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from common.config import ConfigError
from train.flow import (
    EMA,
    FlowConfig,
    euler_sample,
    flow_loss,
    prior_noise,
    sample_t,
    sampling_timesteps,
    shift_for_tokens,
    time_shift,
)
from train.model import DiT, ModelConfig


class Stub(nn.Module):
    """A 'model' whose velocity is a known function; records its inputs."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.calls = []
        self.w = nn.Parameter(torch.zeros(()))

    def num_tokens(self, t, h, w):
        return t * h * w

    def forward(self, x, t, text, mask, drop_text=None):
        self.calls.append((x.clone(), t.clone(), None if drop_text is None else drop_text.clone()))
        return self.fn(x, t, text, mask, drop_text)


def test_flow_loss_hand_computed():
    x0 = torch.tensor([0.5, -1.0]).view(2, 1, 1, 1, 1).expand(2, 1, 1, 1, 2).clone()
    noise = torch.tensor([[1.0, 3.0], [-1.0, 0.0]]).view(2, 1, 1, 1, 2)
    t = torch.tensor([0.25, 0.5])
    stub = Stub(lambda x, t, *a: torch.full_like(x, 2.0))
    loss, per, t_out = flow_loss(
        stub,
        x0,
        torch.zeros(2, 1, 4),
        torch.ones(2, 1, dtype=torch.bool),
        FlowConfig(),
        drop_mask=torch.tensor([False, True]),
        t=t,
        noise=noise,
    )
    # x_t = (1 - t) x0 + t noise
    xt, t_seen, drop_seen = stub.calls[0]
    assert torch.allclose(xt.flatten(), torch.tensor([0.625, 1.125, -1.0, -0.5]))
    assert torch.equal(t_seen, t) and torch.equal(drop_seen, torch.tensor([False, True]))
    # target v = noise - x0 = [0.5, 2.5] and [0, 1]; prediction 2 everywhere.
    # per-sample MSE: ((1.5^2 + 0.5^2)/2, (2^2 + 1^2)/2) = (1.25, 2.5)
    assert torch.allclose(per, torch.tensor([1.25, 2.5]))
    assert torch.allclose(loss, torch.tensor(1.875))
    assert torch.equal(t_out, t)


def test_flow_loss_motion_weight_adds_the_frame_difference_term_hand_computed():
    # one sample, one channel, 3 frames of 1x1: x0 = [0, 1, 3], noise 0, so target = -x0
    x0 = torch.tensor([0.0, 1.0, 3.0]).view(1, 1, 3, 1, 1)
    noise = torch.zeros_like(x0)
    args = (torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.bool))
    kw = dict(drop_mask=torch.tensor([False]), t=torch.tensor([0.5]), noise=noise)
    stub = Stub(lambda x, *a: torch.zeros_like(x))  # error = 0 - target = x0
    plain, _, _ = flow_loss(stub, x0, *args, FlowConfig(), **kw)
    assert torch.allclose(plain, torch.tensor(10.0 / 3))  # (0 + 1 + 9) / 3
    weighted, per, _ = flow_loss(stub, x0, *args, FlowConfig(motion_weight=0.5), **kw)
    # frame differences of the error: [1, 2] -> mean square 2.5, times 0.5
    assert torch.allclose(weighted, torch.tensor(10.0 / 3 + 1.25))
    assert torch.allclose(per, weighted.view(1))
    # an error that is the same in every frame adds nothing
    flat = Stub(lambda x, *a: torch.full_like(x, 7.0))
    still = torch.full_like(x0, 2.0)
    a_loss, _, _ = flow_loss(flat, still, *args, FlowConfig(), **kw)
    b_loss, _, _ = flow_loss(flat, still, *args, FlowConfig(motion_weight=3.0), **kw)
    assert torch.allclose(a_loss, b_loss)
    with pytest.raises(ConfigError, match="motion_weight"):
        FlowConfig(motion_weight=-1.0)


def test_flow_loss_random_draws_are_seeded_and_dropout_rate():
    stub = Stub(lambda x, *a: torch.zeros_like(x))
    x0 = torch.randn(4000, 1, 1, 1, 1)
    cfg = FlowConfig(caption_dropout=0.3)
    args = (stub, x0, torch.zeros(4000, 1, 2), torch.ones(4000, 1, dtype=torch.bool), cfg)
    l1, _, t1 = flow_loss(*args, generator=torch.Generator().manual_seed(5))
    l2, _, t2 = flow_loss(*args, generator=torch.Generator().manual_seed(5))
    assert torch.equal(t1, t2) and torch.equal(l1, l2)
    drop = stub.calls[0][2].float().mean().item()
    assert 0.27 < drop < 0.33


def test_prior_noise_is_plain_randn_by_default_and_shares_variance_across_frames():
    def gen():
        return torch.Generator().manual_seed(7)

    shape = (256, 3, 4, 8, 8)
    assert torch.equal(prior_noise(shape, 0.0, gen()), torch.randn(shape, generator=gen()))
    x = prior_noise(shape, 0.6, gen())
    assert abs(x.var().item() - 1.0) < 0.02
    frames = x.transpose(0, 2).reshape(4, -1)  # (T, everything else)
    corr = torch.corrcoef(frames)
    off = corr[~torch.eye(4, dtype=torch.bool)]
    assert ((off > 0.57) & (off < 0.63)).all(), corr
    # An unbatched (C, T, H, W) shape works too; images (T = 1) stay unit-variance.
    assert prior_noise((3, 4, 8, 8), 0.6, gen()).shape == (3, 4, 8, 8)
    assert abs(prior_noise((4096, 3, 1, 4, 4), 0.6, gen()).var().item() - 1.0) < 0.02
    with pytest.raises(ValueError, match="frame_noise_share"):
        FlowConfig(frame_noise_share=1.0)


def test_flow_loss_and_sampler_draw_from_the_configured_prior():
    x0 = torch.zeros(2, 1, 3, 2, 2)
    stub = Stub(lambda x, *a: torch.zeros_like(x))
    t = torch.ones(2)  # x_t is the noise itself
    cfg = FlowConfig(frame_noise_share=0.5)
    mask = torch.ones(2, 1, dtype=torch.bool)
    flow_loss(stub, x0, torch.zeros(2, 1, 4), mask, cfg, torch.Generator().manual_seed(1), t=t)
    expected = prior_noise(x0.shape, 0.5, torch.Generator().manual_seed(1))
    assert torch.allclose(stub.calls[0][0], expected)
    # A zero velocity leaves the sampler at its starting noise: the same prior, same seed.
    out = euler_sample(
        stub, (2, 1, 3, 2, 2), torch.zeros(2, 1, 4), mask, steps=2, cfg_scale=1.0,
        generator=torch.Generator().manual_seed(2), frame_noise_share=0.5,
    )  # fmt: skip
    assert torch.allclose(out, prior_noise((2, 1, 3, 2, 2), 0.5, torch.Generator().manual_seed(2)))


def test_one_euler_step_constant_velocity():
    noise = torch.randn(2, 3, 1, 2, 2)
    c = torch.randn(2, 3, 1, 2, 2)
    stub = Stub(lambda x, *a: c)
    text, mask = torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.bool)
    out = euler_sample(
        stub, noise.shape, text, mask, steps=1, cfg_scale=1.0, shift=3.0, noise=noise
    )
    # One step from t=1 to t=0: x0 = noise - v (exactly the rectified-flow inverse).
    torch.testing.assert_close(out, noise - c)
    assert torch.equal(stub.calls[0][1], torch.ones(2))


def test_two_euler_steps_with_shift_hand_computed():
    noise = torch.randn(1, 1, 1, 2, 2)
    stub = Stub(lambda x, *a: x)  # v(x) = x
    text, mask = torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.bool)
    out = euler_sample(
        stub, noise.shape, text, mask, steps=2, cfg_scale=1.0, shift=3.0, noise=noise
    )
    # times: shift 3 maps [1, 0.5, 0] to [1, 0.75, 0]
    assert torch.allclose(sampling_timesteps(2, 3.0), torch.tensor([1.0, 0.75, 0.0]))
    # x1 = x + (0.75 - 1) x = 0.75 x ; x2 = x1 + (0 - 0.75) x1 = 0.25 x1 = 0.1875 x
    torch.testing.assert_close(out, 0.1875 * noise)
    assert [c[1].item() for c in stub.calls] == [1.0, 0.75]


def test_cfg_combines_conditional_and_null_branches():
    # Velocity 1 where the caption is kept, 0 where the model uses its null caption.
    stub = Stub(lambda x, t, text, mask, drop: (~drop).float().view(-1, 1, 1, 1, 1).expand_as(x))
    noise = torch.zeros(2, 1, 1, 1, 1)
    text, mask = torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.bool)
    out = euler_sample(
        stub, noise.shape, text, mask, steps=1, cfg_scale=4.0, shift=1.0, noise=noise
    )
    # v = v_u + s (v_c - v_u) = 0 + 4 (1 - 0) = 4 ; x0 = 0 - 4
    torch.testing.assert_close(out, torch.full_like(noise, -4.0))
    x_in, _, drop = stub.calls[0]
    assert x_in.shape[0] == 4 and drop.tolist() == [False, False, True, True]


def test_cfg_with_explicit_null_text_matches_model_null():
    model = DiT.from_config(ModelConfig(hidden=32, depth=1, heads=2), 8)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    text, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    null_t, null_m = model.null_condition(1, 1)
    noise = torch.randn(2, 3, 1, 8, 8)
    a = euler_sample(model, noise.shape, text, mask, steps=3, cfg_scale=3.0, noise=noise)
    b = euler_sample(
        model, noise.shape, text, mask, null_t, null_m, steps=3, cfg_scale=3.0, noise=noise
    )
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_time_shift_properties():
    t = torch.linspace(0, 1, 101)
    for s in (0.5, 1.0, 3.0, 8.0):
        y = time_shift(t, s)
        assert y[0] == 0 and torch.isclose(y[-1], torch.tensor(1.0))
        assert (y[1:] > y[:-1]).all()  # monotone
    assert torch.equal(time_shift(t, 1.0), t)
    assert (time_shift(t[1:-1], 3.0) > t[1:-1]).all()  # s > 1 moves towards noise
    assert time_shift(0.5, 3.0) == pytest.approx(0.75)


def test_shift_grows_with_tokens():
    cfg = FlowConfig(base_shift=2.0, shift_ref_tokens=1024, min_shift=1.0, max_shift=10.0)
    shifts = [shift_for_tokens(n, cfg) for n in (64, 256, 1024, 4096, 16384, 10**6)]
    assert shifts == sorted(shifts) and shifts[0] < shifts[-1]
    assert shift_for_tokens(1024, cfg) == pytest.approx(2.0)
    assert shift_for_tokens(4096, cfg) == pytest.approx(4.0)  # sqrt growth
    assert shifts[0] == 1.0 and shifts[-1] == 10.0  # clipped
    # More tokens: training times move towards noise.
    g = torch.Generator().manual_seed(0)
    t_small = sample_t(20000, 256, cfg, g)
    t_big = sample_t(20000, 16384, cfg, torch.Generator().manual_seed(0))
    assert 0 < t_small.min() and t_big.max() < 1
    assert t_big.mean() > t_small.mean() + 0.1


def test_ema_update_math():
    m = nn.Linear(2, 1)
    m.register_buffer("count", torch.tensor([0.0]))
    m.register_buffer("scratch", torch.zeros(1), persistent=False)  # not in the state dict
    with torch.no_grad():
        m.weight.zero_()
        m.bias.zero_()
    ema = EMA(m, decay=0.9)
    with torch.no_grad():
        m.weight.fill_(1.0)
        m.bias.fill_(-2.0)
        m.count.fill_(7.0)
    ema.update(m)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((1, 2), 0.1))
    assert torch.allclose(ema.state_dict()["bias"], torch.tensor([-0.2]))
    assert ema.state_dict()["count"].item() == 7.0  # buffers are copied, not averaged
    ema.update(m, decay=0.5)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((1, 2), 0.55))
    # The EMA is a copy: training the model does not move it.
    with torch.no_grad():
        m.weight.fill_(100.0)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((1, 2), 0.55))
    fresh = nn.Linear(2, 1)
    fresh.register_buffer("count", torch.tensor([0.0]))
    ema.copy_to(fresh)
    assert torch.allclose(fresh.weight, torch.full((1, 2), 0.55))
    ema2 = EMA(fresh)
    ema2.load_state_dict(ema.state_dict())
    assert torch.equal(ema2.state_dict()["bias"], ema.state_dict()["bias"])


def test_tiny_dit_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    model = DiT.from_config(ModelConfig(hidden=32, depth=2, heads=2), 8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x0 = torch.rand(4, 3, 2, 8, 8) * 2 - 1
    text, mask = torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool)
    cfg = FlowConfig(caption_dropout=0.0)
    t_eval = torch.full((4,), 0.5)
    noise_eval = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))

    def eval_loss():
        with torch.no_grad():
            return flow_loss(model, x0, text, mask, cfg, t=t_eval, noise=noise_eval)[0].item()

    before = eval_loss()
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        loss, _, _ = flow_loss(model, x0, text, mask, cfg, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.8 * before


def test_tiny_dit_learns_to_follow_colour_captions():
    """End to end: MiniLM captions -> train a tiny DiT with caption dropout -> EMA -> CFG sampling."""
    from train.text import TextConfig, build_text_encoder

    torch.manual_seed(0)
    enc = build_text_encoder(TextConfig())
    emb, mask = enc.encode(["a red square", "a blue square"])
    colours = torch.tensor([[0.9, -0.8, -0.8], [-0.8, -0.8, 0.9]])

    def batch(b, g):
        lab = torch.randint(0, 2, (b,), generator=g)
        x = torch.full((b, 3, 1, 16, 16), -0.8)
        for i in range(b):
            y, xx = torch.randint(0, 8, (2,), generator=g).tolist()
            x[i, :, 0, y : y + 8, xx : xx + 8] = colours[lab[i]][:, None, None]
        return x, emb[lab], mask[lab]

    model = DiT.from_config(ModelConfig(hidden=64, depth=3, heads=4), enc.dim)
    ema = EMA(model, 0.99)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    cfg = FlowConfig(caption_dropout=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        loss, _, _ = flow_loss(model, *batch(32, g), cfg, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
    sampler = ema.averaged_model(model)
    out = euler_sample(
        sampler,
        (8, 3, 1, 16, 16),
        emb.repeat(4, 1, 1),
        mask.repeat(4, 1),
        steps=20,
        cfg_scale=4.0,
        shift=shift_for_tokens(16, cfg),
        generator=torch.Generator().manual_seed(1),
    )
    red, blue = out[:, 0].flatten(1).amax(1), out[:, 2].flatten(1).amax(1)
    assert (red[0::2] > blue[0::2] + 0.5).all()  # "a red square" -> red
    assert (blue[1::2] > red[1::2] + 0.5).all()  # "a blue square" -> blue


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_make_optimizer_matches_reference_adamw(strategy):
    """The trainer's AdamW (fused for DDP, multi-tensor for FSDP) takes the same steps as
    PyTorch's reference single-tensor AdamW."""
    from train.config import TrainConfig
    from train.worker import make_optimizer

    cfg = TrainConfig(strategy=strategy, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01)
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    b = copy.deepcopy(a)
    init = [p.detach().clone() for p in a.parameters()]
    opt_a = make_optimizer(a, cfg, torch.device("cpu"))
    opt_b = torch.optim.AdamW(
        b.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01, foreach=False
    )
    x = torch.randn(16, 4)
    for _ in range(5):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    for pa_, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa_, pb, atol=1e-6)
    assert all(not torch.equal(p, p0) for p, p0 in zip(a.parameters(), init, strict=True))
    assert opt_a.defaults["fused" if strategy == "ddp" else "foreach"] is True
