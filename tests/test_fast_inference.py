"""The inference forms of the zoo networks equal their training forms.

LAGConv's inference form (per kernel row, one matmul of the channels-last input's shifted
slices times their LCA weights) against its ``unfold`` form, which autograd uses;
channels-last inputs (what the tiled inference feeds) against the default layout for every zoo
network; the layout each network hands back.
"""

from __future__ import annotations

import pytest
import torch
from _inputs import random_inputs

import pretrained
from pretrained._base import same_layout
from pretrained.diffusion import ChannelNorm
from pretrained.lagconv import _ONEDNN_CONV_ACT, LAGBlock, LAGConv2d, _conv_act

CL = torch.channels_last


@pytest.fixture
def one_thread():
    """One torch thread, so that ``block_pixels`` is the block size (it scales with threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _lagconv(c_in: int, c_out: int, k: int, gh: str, seed: int = 0) -> LAGConv2d:
    """A float64 layer with weights far from its near-neutral initialisation."""
    torch.manual_seed(seed)
    layer = LAGConv2d(c_in, c_out, k, hidden=5, gh=gh).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("gh", ["local", "global"])
@pytest.mark.parametrize(("k", "shape"), [
    (3, (2, 6, 17, 23)),  # odd sizes, batch of two
    (3, (1, 6, 1, 1)),    # one pixel: every tap but the centre is padding
    (3, (1, 6, 9, 1)),    # one column: the sideways taps read the neighbouring rows
    (5, (2, 6, 4, 3)),    # image narrower than the kernel
    (7, (1, 6, 2, 11)),
    (1, (1, 6, 5, 5)),
])
def test_lagconv_taps_form_equals_the_unfold_form(gh, k, shape, one_thread):
    layer = _lagconv(shape[1], 4, k, gh)
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        want = layer._forward_unfold(x)
        got = layer._forward_taps(x)
        got_cl = layer._forward_taps(x.contiguous(memory_format=CL))
        layer.block_pixels = 7  # blocks that start and end mid-row, at the image's edges
        got_blocks = layer._forward_taps(x)
    assert (got - want).abs().max() < 1e-12 * want.abs().max()
    assert (got_blocks - want).abs().max() < 1e-12 * want.abs().max()
    assert torch.equal(got, got_cl)
    assert got.is_contiguous() and got_cl.is_contiguous(memory_format=CL)


@pytest.mark.parametrize("shape", [(2, 6, 17, 23), (1, 6, 9, 1)])
def test_lagconv_fused_skip_and_relu_in_both_forms(shape, one_thread):
    """``forward(x, residual, relu)`` is ``relu(layer(x) + residual)`` in either form, also
    when the blocks start and end mid-row."""
    layer = _lagconv(shape[1], 4, 3, "local")
    x = torch.randn(*shape, dtype=torch.float64)
    skip = torch.randn(shape[0], 4, *shape[2:], dtype=torch.float64)
    with torch.no_grad():
        want = torch.relu(layer._forward_unfold(x) + skip)
        got_unfold = layer._forward_unfold(x, skip, True)
        layer.block_pixels = 7
        got_taps = layer._forward_taps(x.contiguous(memory_format=CL),
                                       skip.contiguous(memory_format=CL), True)
        got_plain_skip = layer._forward_taps(x, skip, False)
    assert torch.equal(got_unfold, want)
    assert (got_taps - want).abs().max() < 1e-12 * want.abs().max()
    assert (want == 0).any() and got_taps.is_contiguous(memory_format=CL)
    want_skip = layer._forward_unfold(x) + skip
    assert (got_plain_skip - want_skip).abs().max() < 1e-12 * want_skip.abs().max()


def test_lag_block_is_its_definition():
    """The block's fused layers compute ``x + lag2(relu(lag1(x)))`` (ReLU of that on request)."""
    torch.manual_seed(0)
    block = LAGBlock(6, hidden=5).double()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 6, 11, 13, dtype=torch.float64)
    want = x + block.lag2._forward_unfold(torch.relu(block.lag1._forward_unfold(x)))
    with torch.no_grad():
        for relu in (False, True):
            got = block(x.contiguous(memory_format=CL), relu=relu)
            expect = torch.relu(want) if relu else want
            torch.testing.assert_close(got, expect, rtol=0, atol=1e-12)
    got_grad = block(x)  # parameters require grad: the unfold form
    torch.testing.assert_close(got_grad, want, rtol=0, atol=0)


def test_lagconv_picks_its_form_by_autograd(monkeypatch):
    layer = _lagconv(3, 3, 3, "local").float()
    x = torch.rand(1, 3, 8, 8)
    calls = []
    for name in ("_forward_unfold", "_forward_taps"):
        real = getattr(LAGConv2d, name)
        monkeypatch.setattr(LAGConv2d, name, lambda self, *a, real=real, name=name:
                            calls.append(name) or real(self, *a))
    with torch.inference_mode():
        layer(x)
    with torch.no_grad():
        layer(x)
    layer(x)  # parameters require grad: the differentiable form
    for p in layer.parameters():
        p.requires_grad_(False)
    layer(x)  # frozen layer, input without grad: nothing to differentiate
    layer(x.requires_grad_())
    assert calls == ["_forward_taps", "_forward_taps", "_forward_unfold", "_forward_taps",
                     "_forward_unfold"]


def test_channel_norm_channels_last_equals_default():
    torch.manual_seed(0)
    norm = ChannelNorm(6).double()
    with torch.no_grad():
        norm.weight.add_(torch.randn(6, dtype=torch.float64))
        norm.bias.add_(torch.randn(6, dtype=torch.float64))
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64) * 3 + 1
    want, got = norm(x), norm(x.contiguous(memory_format=CL))
    assert got.is_contiguous(memory_format=CL)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["lagconv", "diffusion_student", "fose", "fusionnet"])
def test_networks_agree_across_layouts(name):
    torch.manual_seed(0)
    net = pretrained.create_model(name, n_bands=4).double().eval()
    ms, pan, lms = random_inputs(4, b=2, h=5, dtype=torch.float64)
    with torch.inference_mode():
        want = net(ms, pan, lms)
        got = net(*(t.contiguous(memory_format=CL) for t in (ms, pan, lms)))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert want.is_contiguous()  # default layout in, default layout out
    assert got.is_contiguous(memory_format=CL)


def test_same_layout():
    cl = torch.rand(1, 3, 4, 4).contiguous(memory_format=CL)
    plain = torch.rand(1, 2, 4, 4)
    assert same_layout(plain, cl).is_contiguous(memory_format=CL)
    assert same_layout(cl, plain).is_contiguous()
    one_band = torch.rand(1, 1, 4, 4)  # ambiguous layout: counts as the default one
    assert same_layout(cl, one_band).is_contiguous()


def test_lca_convolution_with_its_activation_fused(monkeypatch):
    """On CPU float32 the LCA generator's convolutions take their ReLU / sigmoid as a oneDNN
    post-op (when the build has it): equal to the convolution then the activation; float64
    takes the plain path, exactly."""
    from pretrained import lagconv

    calls: list[str] = []
    if _ONEDNN_CONV_ACT is not None:
        monkeypatch.setattr(lagconv, "_ONEDNN_CONV_ACT",
                            lambda *a: calls.append(a[7]) or _ONEDNN_CONV_ACT(*a))
    layer = _lagconv(6, 6, 3, "local")
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    with torch.inference_mode():
        hidden = _conv_act(x, layer.lca1, "relu")
        assert torch.equal(hidden, torch.relu(layer.lca1(x))) and calls == []
        assert hidden.is_contiguous(memory_format=CL)
        layer, x = layer.float(), x.float()
        for conv, act, inp in ((layer.lca1, torch.relu, x),
                               (layer.lca2, torch.sigmoid, torch.relu(layer.lca1(x)))):
            got = _conv_act(inp, conv, act.__name__)
            torch.testing.assert_close(got, act(conv(inp)), rtol=1e-5, atol=1e-6)
            assert got.is_contiguous(memory_format=CL)
    fused = _ONEDNN_CONV_ACT is not None and torch.backends.mkldnn.is_available()
    assert calls == (["relu", "sigmoid"] if fused else [])
