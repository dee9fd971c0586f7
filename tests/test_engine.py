"""The adaptation engine: generated scenes (exact properties) and the real WV2 scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pretrained
from tta.engine import AdaptConfig, adapt, adapt_scene, receptive_radius
from tta.errors import InputError
from tta.io import Scene, read_scene
from tta.physics import degrade_scene, interp23tap
from tta.sensors import get_sensor


def _scene(bands: int = 4, size: int = 128, seed: int = 0, sensor: str = "QB") -> Scene:
    """A smooth, textured generated scene in DN (PAN = band mean of a high-res image)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(2 * np.pi * (k + 1) * xx) * np.cos(2 * np.pi * (k + 2) * yy)
                     for k in range(bands)])
    hr = 600 + 300 * base + 40 * rng.standard_normal((bands, size, size))
    hr = np.clip(hr, 1, None).astype(np.float32)
    pan = hr.mean(0).astype(np.float32)
    full = Scene(ms=hr[:, ::4, ::4].copy(), pan=pan, sensor=get_sensor(sensor))
    return full


def _model(bands: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return pretrained.create_model("fusionnet", n_bands=bands).eval()


FAST = {"steps": 5, "patch": 32, "min_patches": 4, "tile": 64, "device": "cpu"}


def test_adapt_generated_scene_report_and_shapes():
    scene = _scene()
    fused, report = adapt(_model(), scene, adapter="ft", **FAST)
    assert fused.shape == scene.shape and fused.dtype == np.float32
    assert np.isfinite(fused).all()
    assert len(report["loss"]["curve"]) == 5
    assert report["sampling"]["selected"] == 4 == len(report["sampling"]["corners"])
    assert all(y % 4 == 0 and x % 4 == 0 for y, x in report["sampling"]["corners"])
    for key in ("prepare", "sample", "decompose", "cache", "train", "infer", "adapt",
                "adapt_and_infer"):
        assert report["timings"][key] >= 0
    assert report["decomposition"]["mapper"] == "conv3"
    assert report["adapter"]["trainable"] > 0
    assert report["config"]["adapter"] == "ft"


def test_adapt_is_deterministic_on_cpu():
    scene = _scene()
    a, ra = adapt(_model(), scene, adapter="cat", seed=3, **FAST)
    b, rb = adapt(_model(), scene, adapter="cat", seed=3, **FAST)
    assert np.array_equal(a, b)
    assert ra["loss"]["curve"] == rb["loss"]["curve"]
    assert ra["sampling"]["corners"] == rb["sampling"]["corners"]


@pytest.mark.parametrize("kind", ["ft", "cat", "swift", "full", "mapper"])
def test_zero_steps_equals_direct_transfer(kind):
    scene = _scene()
    direct, _ = adapt(_model(), scene, adapter="none", **FAST)
    fused, _ = adapt(_model(), scene, adapter=kind, **{**FAST, "steps": 0})
    np.testing.assert_array_equal(fused, direct)


def test_tiled_inference_equals_the_untiled_model():
    """Seamless: FusionNet is translation-equivariant, so tiles blend to the whole-scene output."""
    scene = _scene(size=160)
    model = _model()
    fused, report = adapt(model, scene, adapter="none", **FAST)
    assert report["inference"]["tile"] == 64
    with torch.no_grad():
        ms = torch.from_numpy(scene.ms)[None] / scene.max_value
        pan = torch.from_numpy(scene.pan)[None, None] / scene.max_value
        whole = model(ms, pan, interp23tap(ms, 4))[0].numpy() * scene.max_value
    np.testing.assert_allclose(fused, whole, rtol=0, atol=2e-3)  # DN, float32


def test_cached_features_reproduce_the_model():
    scene = _scene()
    model = _model()
    from tta.decomposition import decompose

    ms = torch.from_numpy(scene.ms)[None] / 2047
    pan = torch.from_numpy(scene.pan)[None, None] / 2047
    lms = interp23tap(ms, 4)
    dec = decompose(model, n_bands=4)
    cache = dec.cache(ms, pan, lms, split=True)  # the decomposition owns feature caching
    feats, rest, ref = cache.features, cache.rest, cache.reference
    with torch.no_grad():
        torch.testing.assert_close(dec.mapper(feats) + rest, ref)
        torch.testing.assert_close(ref, model(ms, pan, lms))
    assert not dec.mapper._forward_hooks and not dec.mapper._forward_pre_hooks
    whole = dec.cache(ms, pan, lms, split=False)
    assert whole.features is None and torch.equal(whole.reference, ref)
    # the training layout: channels-last features, same values; nothing to convert unsplit
    cl = cache.channels_last()
    assert cl.features.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl.features, feats) and cl.rest is rest and cl.reference is ref
    assert whole.channels_last() is whole
    with torch.no_grad():
        torch.testing.assert_close(dec.mapper(cl.features) + cl.rest, ref)


def test_training_lowers_the_loss():
    scene = degrade_scene(_scene(size=256))
    _, report = adapt(_model(), scene, adapter="ft", **{**FAST, "steps": 30})
    curve = report["loss"]["curve"]
    assert curve[-1] < 0.8 * curve[0]


def test_nodata_patches_are_never_selected():
    scene = _scene(size=128)
    nodata = np.zeros(scene.pan.shape, bool)
    nodata[:, :64] = True
    ms, pan = scene.ms.copy(), scene.pan.copy()
    pan[nodata] = 0
    ms[:, :, :16] = 0
    scene = scene.with_(ms=ms, pan=pan, nodata=nodata)
    fused, report = adapt(_model(), scene, adapter="ft", **FAST)
    assert all(x >= 64 for _, x in report["sampling"]["corners"])
    assert (fused[:, nodata] == 0).all()
    assert report["sampling"]["patches_valid"] < report["sampling"]["patches_total"]


@pytest.mark.parametrize("choice", ["adapted", "direct"])
@pytest.mark.parametrize(("size", "covered"), [(128, True), (640, False)])
def test_compare_takes_the_direct_product_from_the_adapted_pass(size, covered, choice,
                                                                 monkeypatch):
    """Comparing with an adapter that leaves the extractor alone costs no second inference:
    both products come out of one extractor pass (no *direct_infer* stage); the direct one is
    direct transfer's, and the product and the decision are those of a run that does not
    compare (the check windows of a scene they do not cover are fused on their own in both).
    ``choice="direct"`` forces the decision to keep the source network."""
    from dataclasses import replace

    from tta.engine import decision

    assert decision.windows_cover(size, size, 4) is covered
    if choice == "direct":
        real = decision.decide
        monkeypatch.setattr(decision, "decide",
                            lambda *a, **k: replace(real(*a, **k), choice="direct"))
    scene = _scene(size=size)
    cfg = {**FAST, "tile": 256}
    compared = adapt_scene(_model(), scene, adapter="ft", compare=True, **cfg)
    alone = adapt_scene(_model(), scene, adapter="ft", **cfg)
    direct, _ = adapt(_model(), scene, adapter="none", **cfg)
    assert "direct_infer" not in compared.report["timings"]
    np.testing.assert_allclose(compared.direct, direct, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(compared.fused, alone.fused, rtol=1e-5, atol=1e-3)
    assert compared.report["decision"] == alone.report["decision"]
    assert compared.report["decision"]["choice"] == choice
    assert not np.shares_memory(compared.direct, compared.fused)
    if choice == "direct":
        np.testing.assert_array_equal(compared.fused, compared.direct)
    metrics = compared.report["metrics"]
    assert (metrics["direct"]["fr"] == metrics["adapted"]["fr"]) is (choice == "direct")


@pytest.mark.parametrize("overrides", [{"adapter": "full"}, {"adapter": "ft", "decide": False}])
def test_compare_fuses_direct_on_its_own_without_a_shared_pass(overrides):
    """An adapter that trains the extractor, or a run without the decision (whose working
    network is adapted in place), fuses the direct product by itself: direct transfer's."""
    scene = _scene()
    res = adapt_scene(_model(), scene, compare=True, **{**FAST, **overrides})
    direct, _ = adapt(_model(), scene, adapter="none", **FAST)
    np.testing.assert_allclose(res.direct, direct, rtol=1e-6, atol=1e-4)
    chose_direct = (res.report["decision"] or {}).get("choice") == "direct"
    assert ("direct_infer" in res.report["timings"]) is not chose_direct
    if chose_direct:
        np.testing.assert_array_equal(res.fused, res.direct)


def test_receptive_radius_of_a_known_net():
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)])
    torch.nn.init.constant_(net[0].weight, 0.1)

    def fn(ms, pan, lms):
        return net(pan)

    assert receptive_radius(fn, 4, 4, device=torch.device("cpu")) == 3 + 4


@pytest.mark.parametrize(("change", "message"), [
    ({"adapter": "lora"}, "unknown adapter 'lora'"),
    ({"sampler": "best"}, "unknown sampler 'best'"),
    ({"fraction": 0.0}, "fraction must lie in"),
    ({"patch": 200}, "larger than the scene"),
    ({"patch": 30}, "multiple of the ratio"),
])
def test_bad_settings(change, message):
    with pytest.raises(InputError, match=message):
        adapt(_model(), _scene(), **{**FAST, **change})


def test_band_mismatch_is_an_error():
    with pytest.raises(InputError, match="model has 8 bands"):
        adapt(_model(bands=8), _scene(bands=4), **FAST)


def test_config_yaml(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text("adapter: cat\nsteps: 7\nadapter_options: {hidden: 8}\n")
    cfg = AdaptConfig.from_yaml(p)
    assert (cfg.adapter, cfg.steps, cfg.adapter_options) == ("cat", 7, {"hidden": 8})
    p.write_text("adaptor: cat\n")
    with pytest.raises(InputError, match="unknown setting"):
        AdaptConfig.from_yaml(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="mapping"):
        AdaptConfig.from_yaml(p)


# ----------------------------------------------------------------------------- real data
def _weights(real_file, sensor: str, arch: str) -> Path:
    root = Path(str(real_file("README.md"))).parent.parent / "weights" / "dlpan"
    path = root / sensor / f"{arch}.pth"
    if not path.is_file():
        pytest.skip(f"community checkpoint {path} is absent")
    return path


@pytest.mark.parametrize("kind", ["ft", "swift"])
def test_wv3_model_adapts_to_wv2_reduced_resolution(real_file, kind):
    """The product claim on real data: adapting a WV3 network to the WV2 scene (Wald reduced
    resolution, scored against the real MS) raises Q2n and lowers SAM/ERGAS."""
    scene = degrade_scene(read_scene(real_file("wv2/wv2_grip_top_fr.h5")))
    model = pretrained.load("fusionnet", weights=_weights(real_file, "wv3", "fusionnet"))
    result = adapt_scene(model, scene, adapter=kind, steps=40, device="cpu", compare=True)
    direct, adapted = (result.report["metrics"][k]["rr"] for k in ("direct", "adapted"))
    assert adapted["Q2n"] > direct["Q2n"] + 0.03
    assert adapted["SAM"] < direct["SAM"]
    assert adapted["ERGAS"] < direct["ERGAS"]
    fr_d, fr_a = (result.report["metrics"][k]["fr"] for k in ("direct", "adapted"))
    assert fr_a["R-Q2n"] > fr_d["R-Q2n"] and fr_a["D_rho"] < fr_d["D_rho"]


def test_compiled_training_step_matches_eager():
    """torch.compile of the cached-feature step gives the eager run's result (float tolerance)."""
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler (none on PATH)")
    scene = _scene(size=96)
    eager, r_eager = adapt(_model(), scene, adapter="ft", **FAST)
    comp, r_comp = adapt(_model(), scene, adapter="ft", compile="default", **FAST)
    assert r_comp["config"]["compile"] == "default"
    np.testing.assert_allclose(r_comp["loss"]["curve"], r_eager["loss"]["curve"], rtol=1e-4)
    # DN; reassociated float sums over the training steps drift by ~1e-4 relative
    np.testing.assert_allclose(comp, eager, rtol=1e-3, atol=0.1)
    # swift trains through the whole network: compile is not applied and results are exact
    s_eager, _ = adapt(_model(), scene, adapter="swift", **FAST)
    s_comp, _ = adapt(_model(), scene, adapter="swift", compile="default", **FAST)
    np.testing.assert_array_equal(s_comp, s_eager)
    with pytest.raises(InputError, match="compile must be"):
        AdaptConfig(compile="fastest")
