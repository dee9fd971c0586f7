"""A network applied to the bands it was trained on, and adapt once / apply many.

Real data: a 4-band QuickBird network (DLPan-Toolbox FusionNet) on a Landsat-7-like 6-band
product. Landsat-7 ETM+ data are not in the shared folder, so the product is synthetic in
part (stated): the blue, green, red, nir bands and the PAN of the shared Landsat-8 scene
(16-bit DN), plus two SWIR-like bands generated from its red and nir bands (smooth mixtures
with seeded noise). A 4-band WorldView-3 bundle is cut from the shared 8-band scene.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import pretrained
import tta
from tta.cli import cli
from tta.engine.bands import plan_bands
from tta.errors import InputError

L7 = "blue,green,red,nir,swir1,swir2"
WV3 = "coastal,blue,green,yellow,red,rededge,nir1,nir2"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


def landsat7_like(l8, path: Path, *, row: int = 0, order: str = L7, size: int = 64) -> Path:
    """6 bands (Landsat-8 B2-B5 + generated SWIR-like) on a ``size`` MS crop at ``row``."""
    ms = l8.ms[:, row:row + size, :size]
    pan = l8.pan[2 * row:2 * (row + size), :2 * size]
    rng = np.random.default_rng(row)
    swir1 = 0.7 * ms[3] + 0.4 * ms[2] + rng.normal(0, 40, ms[0].shape)
    swir2 = 0.3 * ms[3] + 0.6 * ms[2] + rng.normal(0, 40, ms[0].shape)
    bands = dict(zip(L7.split(","), [*ms, swir1, swir2], strict=True))
    names = order.split(",")
    with h5py.File(path, "w") as f:
        f["ms"] = np.clip(np.stack([bands[b] for b in names]), 1, None)[None].astype(np.float32)
        f["pan"] = pan[None, None]
        f.attrs.update(sensor="LANDSAT7", ratio=2, max_value=65535.0, bands=",".join(names))
    return path


@pytest.fixture(scope="module")
def l8(real_file):
    return tta.read_scene(real_file("landsat8/landsat8_fr.h5"))


@pytest.fixture(scope="module")
def qb_net(dlpan_dir):
    return pretrained.load("fusionnet", weights=dlpan_dir / "qb/fusionnet.pth")


def test_plan_of_a_4band_network_on_a_6band_scene(l8, qb_net, tmp_path):
    scene = tta.read_scene(landsat7_like(l8, tmp_path / "l7.h5"))
    plan = plan_bands(qb_net, scene)
    assert plan.net_index == (0, 1, 2, 3) and plan.other_index == (4, 5) and plan.split
    assert plan.source == "weights of QB"
    shuffled = tta.read_scene(landsat7_like(l8, tmp_path / "s.h5",
                                            order="swir1,red,green,blue,nir,swir2"))
    assert plan_bands(qb_net, shuffled).net_index == (3, 2, 1, 4)


def test_network_fuses_its_bands_and_hpm_the_others(l8, qb_net, tmp_path):
    scene = tta.read_scene(landsat7_like(l8, tmp_path / "l7.h5"))
    kw = {"steps": 2, "device": "cpu", "decide": False, "adapter": "cat"}
    res = tta.adapt_scene(qb_net, scene, compare=True, **kw)
    assert res.fused.shape == res.direct.shape == (6, 128, 128)
    # the comparison scores the whole 6-band product
    fr = tta.evaluate(scene, res.fused, "fr")["fr"]
    assert res.report["metrics"]["adapted"]["fr"]["HQNR"] == pytest.approx(fr["HQNR"])
    np.testing.assert_array_equal(res.direct[4:], res.fused[4:])
    assert res.report["bands"]["other_bands"] == ["swir1", "swir2"]
    assert res.report["bands"]["other_method"] == "mtf-glp-hpm"
    plan = plan_bands(qb_net, scene)
    swir = tta.fuse_scene(plan.part(scene, (4, 5)), "mtf-glp-hpm")
    np.testing.assert_array_equal(res.fused[4:], swir)
    own = tta.adapt_scene(qb_net, plan.part(scene, (0, 1, 2, 3)), **kw)
    np.testing.assert_array_equal(res.fused[:4], own.fused)
    # the output keeps the scene's band order, whatever it is
    shuffled = tta.read_scene(landsat7_like(l8, tmp_path / "s.h5",
                                            order="swir1,red,green,blue,nir,swir2"))
    res2 = tta.adapt_scene(qb_net, shuffled, **kw)
    np.testing.assert_array_equal(res2.fused[[3, 2, 1, 4]], res.fused[:4])
    np.testing.assert_array_equal(res2.fused[[0, 5]], res.fused[4:])


def test_refusals_name_both_layouts(real_file, dlpan_dir, qb_net, l8, tmp_path):
    wv3 = tta.read_scene(real_file("wv3/wv3_shanghai_fr.h5"))
    bundle = tmp_path / "wv3_4.h5"
    with h5py.File(bundle, "w") as f:
        f["ms"] = wv3.ms[None, [1, 2, 4, 6], :64, :64]
        f["pan"] = wv3.pan[None, None, :256, :256]
        f.attrs.update(sensor="WV3", bands="blue,green,red,nir")
    res = run("adapt", "-m", "fusionnet", "-w", dlpan_dir / "wv3/fusionnet.pth",
              "-t", bundle, "-o", tmp_path / "o.h5", "--steps", "1")
    line = one_error_line(res)
    assert f"network layout {WV3}" in line and "scene's blue,green,red,nir1" in line
    assert "lacks coastal, yellow, rededge, nir2" in line
    assert not (tmp_path / "o.h5").exists()
    # a QuickBird network on a scene without nir (API)
    scene = tta.read_scene(landsat7_like(l8, tmp_path / "l7.h5"))
    no_nir = plan_bands(qb_net, scene).part(scene, (0, 1, 2, 4, 5))
    with pytest.raises(InputError, match="network layout blue,green,red,nir .*"
                       "blue,green,red,swir1,swir2 .*lacks nir"):
        tta.adapt_scene(qb_net, no_nir, steps=1, device="cpu")


def _other_weights(dlpan_dir: Path, folder: Path) -> Path:
    """The QB FusionNet checkpoint with one weight changed, in a folder named qb/."""
    sd = torch.load(dlpan_dir / "qb/fusionnet.pth", map_location="cpu", weights_only=True)
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] += 0.01
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder / "fusionnet.pth")
    return folder / "fusionnet.pth"


def test_adapt_once_apply_many(l8, dlpan_dir, tmp_path):
    scene = landsat7_like(l8, tmp_path / "l7.h5")
    w = dlpan_dir / "qb/fusionnet.pth"
    adapted, adapter = tmp_path / "adapted.h5", tmp_path / "a.pt"
    res = run("adapt", "-m", "fusionnet", "-w", w, "-t", scene, "-o", adapted, "--steps", "2",
              "--no-compare", "--save-adapter", adapter, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert ("bands: network (blue,green,red,nir, weights of QB) fuses blue,green,red,nir; "
            "mtf-glp-hpm fuses swir1,swir2") in res.output
    rec = torch.load(adapter, weights_only=True)["meta"]["record"]
    assert rec["sensor"] == "LANDSAT7" and rec["bands"]["scene"] == L7.split(",")
    assert rec["model"]["weights"] == str(w.resolve()) and rec["interface"] == "conv3"
    assert rec["model"]["weights_sha256"] == pretrained.load("fusionnet", w).weights_record.sha256
    assert rec["radiometry"]["policy"] == "fixed" and rec["adapter"]["kind"] == "ft"

    again = tmp_path / "again.h5"
    res = run("fuse", scene, "--adapter", adapter, "-o", again, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "mtf-glp-hpm fuses swir1,swir2" in res.output
    with h5py.File(adapted) as a, h5py.File(again) as b:
        # float32 rounding: adapt fused the scene from both candidates' one extractor pass
        np.testing.assert_allclose(b["fused"][()], a["fused"][()], rtol=1e-6, atol=1e-3)

    # another scene of the same sensor and bands: no re-adaptation
    other = landsat7_like(l8, tmp_path / "l7b.h5", row=200)
    res = run("fuse", other, "--adapter", adapter, "-o", tmp_path / "b.tif", "--device", "cpu")
    assert res.exit_code == 0, res.output
    # refusals: sensor, bands, weights, an adapter file without a record
    wv2 = tmp_path / "wv2.h5"
    with h5py.File(wv2, "w") as f:
        f["ms"] = np.full((1, 8, 16, 16), 300, np.float32)
        f["pan"] = np.full((1, 1, 64, 64), 300, np.float32)
        f.attrs.update(sensor="WV2")
    line = one_error_line(run("fuse", wv2, "--adapter", adapter, "-o", tmp_path / "x.h5"))
    assert f"sensor LANDSAT7 ({L7})" in line and "is WV2 (coastal,blue" in line
    line = one_error_line(run("fuse", scene, "--bands", "blue,green,red,nir,swir2,swir1",
                              "--adapter", adapter, "-o", tmp_path / "x.h5"))
    assert f"bands {L7} of LANDSAT7" in line and "has blue,green,red,nir,swir2,swir1" in line
    changed = _other_weights(dlpan_dir, tmp_path / "qb")
    line = one_error_line(run("fuse", scene, "--adapter", adapter, "--weights", changed,
                              "-o", tmp_path / "x.h5"))
    assert "trained on other weights" in line
    from adapters import save_adapter

    payload = torch.load(adapter, weights_only=True)
    del payload["meta"]["record"]
    torch.save(payload, tmp_path / "old.pt")
    line = one_error_line(run("fuse", scene, "--adapter", tmp_path / "old.pt",
                              "-o", tmp_path / "x.h5"))
    assert "does not record its sensor, bands and weights" in line
    assert not (tmp_path / "x.h5").exists() and save_adapter  # the old writer still exists


def test_api_adapt_once_apply_many_and_folder_layout(l8, dlpan_dir, tmp_path):
    """An unknown checkpoint in a sensor folder gets that sensor's layout; the API saves and
    applies an adapter whose network was kept (decide off), on the scene it was adapted to."""
    w = _other_weights(dlpan_dir, tmp_path / "qb")
    net = tta.resolve_model("fusionnet", weights=w)
    assert net.weights_record is None and net.band_layout == ("blue", "green", "red", "nir")
    scene = tta.read_scene(landsat7_like(l8, tmp_path / "l7.h5"))
    res = tta.adapt_scene(net, scene, steps=2, device="cpu", decide=False, adapter="cat")
    assert res.report["bands"]["network_source"] == "sensor folder qb/"
    tta.save_adapted(res, tmp_path / "a.pt", model_spec="fusionnet", weights=w)
    fused, info = tta.fuse_with_adapter(scene, tmp_path / "a.pt", device="cpu")
    assert info["network"] == "adapted" and info["record"]["adapter"]["kind"] == "cat"
    np.testing.assert_allclose(fused, res.fused, rtol=0, atol=1e-3)
    fused2, _ = tta.fuse_with_adapter(scene, tmp_path / "a.pt", model=net, device="cpu")
    np.testing.assert_array_equal(fused2, fused)
