"""U-Nets, MC mode, dropout masks, BN folding and the fast MC sampler."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mltasks.errors import BadNetConfig
from mltasks.fold import FastMC, fold_batch_norm
from mltasks.nets import PROFILES, NetConfig, UNet, conv_flops, keep_mask, profile


def trained_like(config: NetConfig, seed: int = 0) -> UNet:
    """A net whose batch-norm statistics and affine parameters are far from the defaults."""
    torch.manual_seed(seed)
    net = UNet(config)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.mc_mode()


def test_output_and_descriptor_shapes():
    net = UNet(profile("tiny", n_classes=5)).mc_mode()
    logits, features = net(torch.rand(2, 1, 64, 64), return_features=True)
    assert logits.shape == (2, 5, 64, 64)
    assert features.shape == (2, 8 * 4) == (2, net.config.descriptor_size)
    assert net.descriptor(torch.rand(3, 1, 64, 64)).shape == (3, 32)


def test_it_rejects_a_slice_size_the_pooling_cannot_halve():
    net = UNet(profile("tiny", n_classes=2))
    with pytest.raises(BadNetConfig, match="divisible by 4"):
        net(torch.rand(1, 1, 30, 30))
    with pytest.raises(BadNetConfig, match="not divisible"):
        NetConfig(n_classes=2, depth=5, matrix=100).validate()


def test_profiles_and_config_round_trip():
    paper = profile("paper", n_classes=23)
    assert (paper.width, paper.depth, paper.dropout, paper.matrix, paper.bayesian) == (
        32,
        5,
        0.5,
        512,
        True,
    )
    assert set(PROFILES) >= {"paper", "fast", "tiny"}
    assert NetConfig.from_dict(paper.to_dict()) == paper
    assert profile("tiny", n_classes=2, matrix=32).matrix == 32
    with pytest.raises(BadNetConfig, match="unknown profile"):
        profile("huge", n_classes=2)


def test_dropout_sits_before_every_pool_and_after_every_upconvolution():
    net = UNet(profile("paper", n_classes=3))
    assert len(net.down_drop) == len(net.up_drop) == 4
    assert all(d.p == 0.5 for d in net.dropouts)
    assert not UNet(profile("tiny", n_classes=2, bayesian=False)).dropouts[0].p


def test_mc_samples_differ_and_repeat_for_the_same_seed():
    net = trained_like(profile("tiny", n_classes=3))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        net.set_generator(torch.Generator().manual_seed(1))
        a, b = net(x), net(x)
        net.set_generator(torch.Generator().manual_seed(1))
        c = net(x)
    assert not torch.allclose(a, b)
    assert torch.equal(a, c)


def test_eval_keeps_dropout_on_for_the_bayesian_net_only():
    x = torch.rand(2, 1, 64, 64)
    bayes = trained_like(profile("tiny", n_classes=3)).eval()
    body = trained_like(profile("tiny", n_classes=2, bayesian=False)).eval()
    with torch.no_grad():
        assert not torch.allclose(bayes(x), bayes(x))
        assert torch.equal(body(x), body(x))
        bayes.deterministic_mode()
        assert torch.equal(bayes(x), bayes(x))


def test_keep_mask_rates_and_channels_last_layout():
    gen = torch.Generator().manual_seed(0)
    half = keep_mask((4, 8, 32, 32), 0.5, generator=gen)
    assert half.dtype == torch.float32 and set(half.unique().tolist()) == {0.0, 1.0}
    assert abs(half.mean().item() - 0.5) < 0.02
    assert abs(keep_mask((40000,), 0.3, generator=gen).mean().item() - 0.7) < 0.02
    cl = keep_mask((2, 8, 16, 16), 0.5, generator=gen, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)


def test_batch_norm_folding_gives_the_same_outputs():
    net = trained_like(profile("tiny", n_classes=3))
    folded = fold_batch_norm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        net.set_generator(torch.Generator().manual_seed(3))
        folded.set_generator(torch.Generator().manual_seed(3))
        assert torch.allclose(net(x), folded(x), atol=1e-4, rtol=1e-4)
        net.deterministic_mode()
        folded.deterministic_mode()
        assert torch.allclose(net(x), folded(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_sampler_equals_the_module_in_mc_mode(channels_last):
    net = trained_like(profile("tiny", n_classes=4))
    runner = FastMC(net, channels_last=channels_last)
    x = torch.rand(3, 1, 64, 64)
    runner.generator = torch.Generator().manual_seed(7)
    state = runner.prepare(x)
    fast = [runner.sample(state) for _ in range(2)]
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net.set_generator(torch.Generator().manual_seed(7))
    with torch.no_grad():
        for logits, features in fast:
            ref_logits, ref_features = net(x, return_features=True)
            assert torch.allclose(logits, ref_logits, atol=1e-4, rtol=1e-4)
            assert torch.allclose(features, ref_features, atol=1e-5, rtol=1e-4)


def test_conv_flops_match_a_hand_count_and_torch_counter():
    cfg = NetConfig(n_classes=2, width=2, depth=2, matrix=4)
    # level 0 (16 px): enc 9*(1*2+2*2), dec 9*(4*2+2*2), up 4*2; level 1 (4 px): 9*(2*4+4*4); head 2*2
    macs = 16 * 54 + 16 * 108 + 16 * 8 + 4 * 216 + 16 * 4
    assert conv_flops(cfg, 4, 4) == 2 * macs
    net = UNet(profile("tiny", n_classes=5)).mc_mode()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    assert counter.get_total_flops() == conv_flops(net.config, 64, 64)
