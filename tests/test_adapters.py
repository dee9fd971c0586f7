"""Adapters: identity at start, only their parameters move, detach/merge, save/load, SWIFT."""

from __future__ import annotations

import pytest
import torch

import pretrained
from adapters import ADAPTERS, create_adapter, load_adapter, save_adapter
from adapters.weights import frozen_unchanged
from tta.decomposition import decompose, probe_inputs
from tta.errors import InputError

KINDS = list(ADAPTERS)


def _model(arch: str = "fusionnet", bands: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return pretrained.create_model(arch, n_bands=bands).eval()


def _inputs(bands: int = 8, seed: int = 1):
    return probe_inputs(bands, 4, 32, seed=seed)


def _loss(model, adapter, ms, pan, lms):
    adapter.set_condition(ms, pan, lms)
    out = model(ms, pan, lms)
    return (out - lms * 1.1).abs().mean()


def _steps(model, adapter, n=3, lr=1e-2):
    ms, pan, lms = _inputs(model.n_bands)
    if adapter.kind == "swift":
        adapter.calibrate(lambda: _loss(model, adapter, ms, pan, lms))
    params = adapter.trainable_parameters()
    if not params:
        return
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(n):
        opt.zero_grad()
        _loss(model, adapter, ms, pan, lms).backward()
        opt.step()


def _trained(kind: str):
    """A FusionNet with a ``kind`` adapter after three steps, its inputs and its output."""
    model = _model()
    inputs = _inputs()
    adapter = create_adapter(kind).attach(decompose(model))
    _steps(model, adapter)
    with torch.no_grad():
        adapter.set_condition(*inputs)
        adapted = model(*inputs)
    return model, adapter, inputs, adapted


@pytest.mark.parametrize("arch", pretrained.list_models())
@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_start(arch, kind):
    model = _model(arch)
    ms, pan, lms = _inputs()
    with torch.no_grad():
        before = model(ms, pan, lms)
        adapter = create_adapter(kind).attach(decompose(model))
        adapter.set_condition(ms, pan, lms)
        assert torch.equal(model(ms, pan, lms), before)


@pytest.mark.parametrize("kind", KINDS)
def test_only_adapter_weights_move(kind):
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ms, pan, lms = _inputs()
    with torch.no_grad():
        out0 = model(ms, pan, lms)
    adapter = create_adapter(kind).attach(decompose(model))
    _steps(model, adapter)
    allowed = {"full": [n for n in before],
               "mapper": ["conv3.weight", "conv3.bias"]}.get(kind, [])
    masks = adapter.masks if kind == "swift" else None
    assert frozen_unchanged(before, model, masks=masks, names=allowed)
    with torch.no_grad():
        adapter.set_condition(ms, pan, lms)
        moved = float((model(ms, pan, lms) - out0).abs().max())
    if kind == "none":
        assert moved == 0.0 and adapter.num_trainable() == 0
    else:
        assert moved > 1e-5
        changed = sum(int((p.detach() != before[n]).sum()) for n, p in model.named_parameters())
        own = sum(p.numel() for p in adapter.parameters())
        assert changed + own > 0
        if kind in ("ft", "cat"):
            assert changed == 0


@pytest.mark.parametrize("kind", KINDS)
def test_detach_restores_the_source_model(kind):
    model = _model()
    ms, pan, lms = _inputs()
    with torch.no_grad():
        out0 = model(ms, pan, lms)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    adapter = create_adapter(kind).attach(decompose(model))
    _steps(model, adapter)
    source = adapter.detach()
    assert source is model
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    with torch.no_grad():
        assert torch.equal(model(ms, pan, lms), out0)


@pytest.mark.parametrize("kind", KINDS)
def test_merge_gives_a_plain_model_with_the_same_output(kind):
    model, adapter, (ms, pan, lms), adapted = _trained(kind)
    plain = adapter.merge()
    assert all(not m._forward_pre_hooks for m in plain.modules())
    ms2, pan2, lms2 = _inputs(seed=7)
    with torch.no_grad():
        torch.testing.assert_close(plain(ms, pan, lms), adapted, rtol=0, atol=1e-6)
        assert plain(ms2, pan2, lms2).shape == lms2.shape


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip(kind, tmp_path):
    model, adapter, (ms, pan, lms), adapted = _trained(kind)
    path = save_adapter(adapter, tmp_path / "a.pt")
    with pytest.raises(Exception, match="already exists"):
        save_adapter(adapter, path)

    fresh = _model()  # same seed: the same source weights
    loaded = load_adapter(path, decompose(fresh))
    with torch.no_grad():
        loaded.set_condition(ms, pan, lms)
        torch.testing.assert_close(fresh(ms, pan, lms), adapted, rtol=0, atol=1e-6)
    size = path.stat().st_size
    n_model = sum(p.numel() for p in model.parameters())
    if kind in ("ft", "cat", "mapper", "none", "swift"):
        assert size < 4 * n_model  # smaller than a float32 copy of the model
    if kind == "swift":
        assert loaded.num_trainable() == adapter.num_trainable()


def test_load_adapter_errors(tmp_path):
    model = _model()
    adapter = create_adapter("ft").attach(decompose(model))
    path = save_adapter(adapter, tmp_path / "a.pt")
    with pytest.raises(InputError, match="adapter is for 8-band models"):
        load_adapter(path, decompose(_model(bands=4)))
    with pytest.raises(InputError, match="interface is 'conv5'"):
        load_adapter(path, decompose(_model("msdcnn")))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torch")
    with pytest.raises(InputError, match="not an adapter file"):
        load_adapter(bad, decompose(model))
    with pytest.raises(InputError, match="not found"):
        load_adapter(tmp_path / "missing.pt", decompose(model))


def test_swift_selects_the_most_sensitive_fraction():
    model = _model()
    ms, pan, lms = _inputs()
    adapter = create_adapter("swift", fraction=0.1).attach(decompose(model))
    info = adapter.calibrate(lambda: _loss(model, adapter, ms, pan, lms))
    assert info["selected"] == round(0.1 * info["total"])
    assert adapter.num_trainable() == info["selected"]
    # the selected entries have the largest squared gradients
    model.zero_grad()
    for p in model.parameters():
        p.requires_grad_(True)
    _loss(model, adapter, ms, pan, lms).backward()
    sel, rest = [], []
    for n, p in model.named_parameters():
        g2 = p.grad.detach() ** 2
        m = adapter.masks.get(n, torch.zeros_like(g2, dtype=torch.bool))
        sel.append(g2[m])
        rest.append(g2[~m])
    assert float(torch.cat(sel).min()) >= float(torch.cat(rest).max())


def test_adapter_options_are_checked():
    with pytest.raises(InputError, match="unknown adapter 'lora'"):
        create_adapter("lora")
    with pytest.raises(InputError, match="fraction"):
        create_adapter("swift", fraction=1.5)
    with pytest.raises(InputError, match="bad options"):
        create_adapter("ft", width=3)
    adapter = create_adapter("ft")
    with pytest.raises(InputError, match="not attached"):
        adapter.detach()
    adapter.attach(decompose(_model()))
    with pytest.raises(InputError, match="already attached"):
        adapter.attach(decompose(_model()))


def test_cat_condition_changes_the_output_after_training():
    model = _model()
    adapter = create_adapter("cat").attach(decompose(model))
    _steps(model, adapter, n=5)
    ms, pan, lms = _inputs()
    with torch.no_grad():
        adapter.set_condition(ms, pan, lms)
        a = model(ms, pan, lms)
        adapter.set_condition(ms, pan * 0.5, lms * 0.5)  # another condition, same features
        b = model(ms, pan, lms)
    assert float((a - b).abs().max()) > 0
