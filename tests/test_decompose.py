"""Decomposition hooks: every zoo model, unseen architectures, overrides, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pretrained
from tta.decomposition import decompose, probe_inputs
from tta.errors import InputError

ZOO = pretrained.list_models()


@pytest.mark.parametrize("bands", [4, 8])
@pytest.mark.parametrize("arch", ZOO)
def test_zoo_models_decompose_at_their_declared_mapper(arch, bands):
    model = pretrained.create_model(arch, n_bands=bands).eval()
    dec = decompose(model)
    assert dec.mapper_name == model.channel_mappers[0]
    mapper = dec.mapper
    assert isinstance(mapper, nn.Conv2d) and mapper.out_channels == bands
    assert dec.feature_channels == mapper.in_channels > bands
    assert dec.output_shape == (1, bands, 64, 64)
    # MSDCNN ends with relu(conv5 + shallow3): no additive tail; the others add lms or nothing
    assert dec.tail == ("nonlinear" if arch == "msdcnn" else "add")
    assert dec.extractor_parameters + dec.mapper_parameters == sum(
        p.numel() for p in model.parameters())
    if arch != "msdcnn":
        assert "the search agrees" in dec.reason


def test_decompose_leaves_the_model_untouched():
    model = pretrained.create_model("fusionnet", n_bands=8).eval()
    ms, pan, lms = probe_inputs(8, seed=3)
    before = model(ms, pan, lms)
    decompose(model)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(ms, pan, lms), before)


class UnseenNet(nn.Module):
    """An architecture the code has never seen: encoder-decoder with a residual output."""

    def __init__(self, bands: int = 4, width: int = 24) -> None:
        super().__init__()
        self.stem = nn.Conv2d(bands + 1, width, 3, padding=1)
        self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.fuse = nn.Conv2d(2 * width, width, 1)
        self.to_bands = nn.Conv2d(width, bands, 3, padding=1)  # the mapper

    def forward(self, ms, pan, lms):
        x = F.relu(self.stem(torch.cat([lms, pan], 1)))
        y = self.up(self.body(F.relu(self.down(x))))
        f = F.relu(self.fuse(torch.cat([x, y], 1)))
        return lms + self.to_bands(f)


def test_unseen_architecture_is_found_by_search():
    model = UnseenNet(4).eval()
    dec = decompose(model, n_bands=4)
    assert dec.mapper_name == "to_bands"
    assert dec.tail == "add"
    assert dec.interface_shape == (1, 24, 64, 64)
    assert "only module" in dec.reason
    assert [c.name for c in dec.candidates] == ["to_bands"]


class TwoHeads(nn.Module):
    """Two candidate mappers summed: the wider input wins; a tanh tail is nonlinear."""

    def __init__(self, bands: int = 4, squash: bool = False) -> None:
        super().__init__()
        self.a = nn.Conv2d(bands + 1, 16, 3, padding=1)
        self.b = nn.Conv2d(bands + 1, 40, 3, padding=1)
        self.head_a = nn.Conv2d(16, bands, 1)
        self.head_b = nn.Conv2d(40, bands, 1)
        self.squash = squash

    def forward(self, ms, pan, lms):
        x = torch.cat([lms, pan], 1)
        out = self.head_a(F.relu(self.a(x))) + self.head_b(F.relu(self.b(x)))
        return torch.tanh(out) if self.squash else out


def test_several_candidates_pick_the_widest_and_say_why():
    dec = decompose(TwoHeads(4).eval(), n_bands=4)
    assert dec.mapper_name == "head_b"
    assert {c.name: c.effect for c in dec.candidates} == {"head_a": "add", "head_b": "add"}
    assert "2 candidates" in dec.reason and "widest input (40" in dec.reason


def test_nonlinear_tail_is_detected():
    dec = decompose(TwoHeads(4, squash=True).eval(), n_bands=4)
    assert dec.tail == "nonlinear"
    assert all(c.effect == "nonlinear" for c in dec.candidates)


class FunctionalOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 5, 3, 3) * 0.1)

    def forward(self, ms, pan, lms):
        return F.conv2d(torch.cat([lms, pan], 1), self.w, padding=1)


def test_no_interface_is_a_clear_error():
    with pytest.raises(InputError, match="no channel mapper found.*--interface NAME"):
        decompose(FunctionalOnly(), n_bands=4)


class SharedHead(nn.Module):
    """The only C-channel conv is called twice: not a usable interface."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(5, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, ms, pan, lms):
        f = F.relu(self.feat(torch.cat([lms, pan], 1)))
        return self.head(f) + self.head(f.flip(-1)).flip(-1)


def test_module_called_twice_is_not_a_candidate():
    with pytest.raises(InputError, match="no channel mapper"):
        decompose(SharedHead(), n_bands=4)
    with pytest.raises(InputError, match="called 2 times"):
        decompose(SharedHead(), n_bands=4, interface="head")


def test_interface_override_and_its_errors():
    model = TwoHeads(4).eval()
    dec = decompose(model, n_bands=4, interface="head_a")
    assert dec.mapper_name == "head_a" and dec.reason == "given"
    with pytest.raises(InputError, match="no module named 'nope'.*head_a"):
        decompose(model, n_bands=4, interface="nope")
    with pytest.raises(InputError, match="not the fused image's shape"):
        decompose(model, n_bands=4, interface="a")


def test_custom_call_convention():
    class LmsPanNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(5, 12, 3, padding=1)
            self.out = nn.Conv2d(12, 4, 3, padding=1)

        def forward(self, lms, pan):
            return lms + self.out(F.relu(self.body(torch.cat([lms, pan], 1))))

    dec = decompose(LmsPanNet().eval(), n_bands=4,
                    forward_fn=lambda m, ms, pan, lms: m(lms, pan))
    assert dec.mapper_name == "out" and dec.tail == "add"
    ms, pan, lms = probe_inputs(4)
    assert dec.forward(ms, pan, lms).shape == lms.shape


def test_probe_failure_is_one_line():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)

        def forward(self, ms, pan, lms):
            return self.c(lms)  # wrong channel count for an 8-band probe

    with pytest.raises(InputError, match="probe forward pass failed"):
        decompose(Broken(), n_bands=8)


def test_community_checkpoints_decompose(real_file):
    from pathlib import Path

    wdir = Path(str(real_file("README.md"))).parent.parent / "weights" / "dlpan"
    if not wdir.is_dir():
        pytest.skip(f"community weights folder {wdir} is absent")
    for path in sorted(wdir.glob("*/*.pth")):
        model = pretrained.load(path.stem, weights=path)
        dec = decompose(model)
        assert dec.mapper_name == model.channel_mappers[0], path
