"""The default recipe's ingredients: radiometric harmonisation, reduced-resolution
self-supervision (never reads ``gt``) and the never-harm decision, on real shared scenes and
generated inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pretrained
from tta.engine import AdaptConfig, adapt_scene
from tta.engine.decision import check_windows, decide
from tta.engine.radiometry import MARGIN, choose_gain, level_gain
from tta.engine.reduced import reduced_pairs, reduced_scene
from tta.evaluation import evaluate
from tta.io import read_scene
from tta.physics import degrade_scene, interp23tap, wald_degrade
from tta.sensors import get_sensor


def _weights(data_dir, rel: str):
    path = data_dir.parent / "weights" / "dlpan" / rel
    if not path.is_file():
        pytest.skip(f"community checkpoint {path} is absent")
    return path


# ----------------------------------------------------------------------------- radiometry
def test_level_gain_and_choice():
    pan = np.full((8, 8), 0.05 * 2047, dtype=np.float32)
    h = level_gain(pan, 2047.0)
    assert h.gain == 1.0 and h.candidate == pytest.approx(4.0)
    assert h.scene_level == pytest.approx(0.05)
    assert level_gain(pan * 4.2, 2047.0).candidate == 1.0  # within MIN_CHANGE: no candidate
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    half = pan.copy()
    half[mask] = 0  # nodata pixels do not lower the level
    assert level_gain(half, 2047.0, nodata=mask).candidate == pytest.approx(4.0)
    better = choose_gain(h, lambda g: 0.5 + 0.1 * (g > 1))
    assert better.gain == pytest.approx(4.0) and set(better.self_check) == {"1", "4"}
    assert choose_gain(h, lambda g: 0.5 + (MARGIN / 2) * (g > 1)).gain == 1.0  # ties keep 1


def test_eight_bit_product_does_not_collapse(real_file):
    """The WV2 scene as an 8-bit stretched product (and x32 in a 16-bit container): direct
    transfer of the WV3 FusionNet stays at the 11-bit level once harmonised."""
    w = _weights(real_file("README.md").parent, "wv3/fusionnet.pth")
    rr = degrade_scene(read_scene(real_file("wv2/wv2_grip_top_fr.h5")))
    net = pretrained.load("fusionnet", weights=w)
    f8 = 255.0 / np.percentile(rr.pan, 99.8)

    def q2n(scene, harmonise):
        res = adapt_scene(net, scene, adapter="none", harmonise=harmonise, decide=False,
                          rr_weight=0.0, device="cpu")
        return evaluate(scene, res.fused, "rr")["rr"]["Q2n"], res.report["radiometry"]

    base, _ = q2n(rr, False)
    eight = rr.with_(ms=np.clip(np.round(rr.ms * f8), 0, 255),
                     pan=np.clip(np.round(rr.pan * f8), 0, 255),
                     gt=np.clip(np.round(rr.gt * f8), 0, 255), max_value=255.0)
    raw, _ = q2n(eight, False)
    fixed, info = q2n(eight, True)
    assert raw < base - 0.08  # the collapse this guards against
    assert fixed > base - 0.01 and info["applied"] and info["gain"] > 4
    sixteen = rr.with_(ms=rr.ms * 32, pan=rr.pan * 32, gt=rr.gt * 32, max_value=65535.0)
    fixed16, info16 = q2n(sixteen, True)
    assert fixed16 > base - 0.01 and info16["gain"] < 0.1


# ----------------------------------------------------------------------------- reduced pairs
def test_reduced_pairs_reference_is_the_scene_ms():
    gen = torch.Generator().manual_seed(0)
    ms = 0.2 + 0.05 * torch.rand(1, 4, 64, 64, generator=gen, dtype=torch.float64)
    pan = 0.2 + 0.05 * torch.rand(1, 1, 256, 256, generator=gen, dtype=torch.float64)
    red = reduced_scene(ms, pan, (0.34, 0.32, 0.30, 0.22), 4)
    ms_lr, pan_lr, lms_lr, ref = red
    assert ms_lr.shape == (1, 4, 16, 16) and pan_lr.shape == (1, 1, 64, 64)
    assert lms_lr.shape == (1, 4, 64, 64) and torch.equal(ref, ms)
    exp_ms, exp_pan = wald_degrade(ms, pan, (0.34, 0.32, 0.30, 0.22), 4, clip_min=0.0)
    assert torch.allclose(ms_lr, exp_ms) and torch.allclose(pan_lr, exp_pan)
    assert torch.allclose(lms_lr, interp23tap(exp_ms, 4))
    pairs = reduced_pairs(red, 4, 32, 3, seed=1)
    assert pairs is not None and len(pairs) == 3 and pairs.total == 4 and pairs.patch == 32
    assert pairs.ref.shape == (3, 4, 32, 32) and pairs.ms.shape == (3, 4, 8, 8)
    # every reference window is a window of the scene's MS at the degraded PAN's position
    found = [any(torch.equal(pairs.ref[i], ms[0, :, y:y + 32, x:x + 32])
                 for y in (0, 32) for x in (0, 32)) for i in range(3)]
    assert all(found)
    assert reduced_pairs(red, 4, 32, 3, min_patch=128) is None  # too small a scene


def test_changing_gt_changes_nothing(real_file):
    """The default recipe reads the scene's MS and PAN only: a different gt gives the same
    product, decision and report (the reduced-resolution reference is the scene's MS)."""
    scene = read_scene(real_file("gf2/gf2_sfnlr_rr.h5"))
    torch.manual_seed(0)
    net = pretrained.create_model("fusionnet", n_bands=4).eval()
    cfg = AdaptConfig(steps=5, tile=128)
    a = adapt_scene(net, scene, config=cfg, device="cpu")
    other = scene.with_(gt=np.ascontiguousarray(scene.gt[:, ::-1, ::-1] * 0.5))
    b = adapt_scene(net, other, config=cfg, device="cpu")
    assert np.array_equal(a.fused, b.fused)
    assert a.report["decision"] == b.report["decision"]
    assert a.report["loss"] == b.report["loss"]
    assert a.report["radiometry"] == b.report["radiometry"]


# ----------------------------------------------------------------------------- decision
def test_decide_rule():
    d = {"rr_Q2n": 0.90, "fr_HQNR": 0.90}
    assert decide(d, {"rr_Q2n": 0.95, "fr_HQNR": 0.91}, tolerance=0.002).choice == "adapted"
    worse = decide(d, {"rr_Q2n": 0.95, "fr_HQNR": 0.89}, tolerance=0.002)
    assert worse.choice == "direct" and "fr_HQNR" in worse.reason
    assert decide(d, {"rr_Q2n": 0.899, "fr_HQNR": 0.95}, tolerance=0.002).choice == "adapted"
    assert decide({"fr_HQNR": 0.9}, {"fr_HQNR": 0.85}, tolerance=0.0).choice == "direct"


def test_check_windows_tile_the_scene():
    ms = torch.rand(1, 4, 48, 80)
    pan = torch.rand(1, 1, 192, 320)
    lms = interp23tap(ms, 4)
    m, p, up = check_windows(ms, pan, lms, 4, side=128, count=16)
    # 2 x 3 windows cover 192 x 320 (the last row and column of windows overlap the others)
    assert p.shape == (6, 1, 128, 128) and m.shape == (6, 4, 32, 32) and up.shape[-1] == 128
    m, p, _ = check_windows(ms, pan, lms, 4, side=64, count=5, seed=2)
    assert p.shape[0] == 5


def test_fitting_source_keeps_direct_mismatched_adapts(real_file):
    """QuickBird FusionNet on GaoFen-2 already fits: the default keeps it (product equal to
    direct transfer); the WV3 FusionNet on WorldView-2 does not: the default adapts and beats
    direct transfer on both protocols."""
    data = real_file("README.md").parent
    gf2 = read_scene(real_file("gf2/gf2_sfnlr_rr.h5"))
    qb_net = pretrained.load("fusionnet", weights=_weights(data, "qb/fusionnet.pth"))
    res = adapt_scene(qb_net, gf2, device="cpu", compare=True)
    assert res.report["decision"]["choice"] == "direct"
    assert np.array_equal(res.fused, res.direct)

    wv2 = degrade_scene(read_scene(real_file("wv2/wv2_grip_top_fr.h5")))
    wv3_net = pretrained.load("fusionnet", weights=_weights(data, "wv3/fusionnet.pth"))
    res = adapt_scene(wv3_net, wv2, device="cpu", compare=True)
    dec = res.report["decision"]
    assert dec["choice"] == "adapted"
    assert dec["scores"]["adapted"]["rr_Q2n"] > dec["scores"]["direct"]["rr_Q2n"]
    m = res.report["metrics"]
    assert m["adapted"]["rr"]["Q2n"] > m["direct"]["rr"]["Q2n"] + 0.05
    assert m["adapted"]["fr"]["HQNR"] > m["direct"]["fr"]["HQNR"] + 0.05
    assert res.report["loss"]["last"]["reduced"] < res.report["loss"]["first"]["reduced"]
    assert get_sensor("WV2").name == res.report["scene"]["sensor"]


@pytest.mark.parametrize("adapter, steps", [("none", 100), ("ft", 0)])
def test_nothing_trained_scores_nothing(adapter, steps):
    """When no step is taken the adapted network is the direct one: the decision says so,
    fuses no check window, and the scene is fused by the direct network, pixel for pixel."""
    from tta.io import Scene

    rng = np.random.default_rng(1)
    scene = Scene(ms=rng.uniform(100, 1500, (4, 24, 24)), pan=rng.uniform(100, 1500, (96, 96)),
                  sensor=get_sensor("QB"))
    torch.manual_seed(0)
    model = pretrained.create_model("pnn", n_bands=4).eval()
    res = adapt_scene(model, scene, adapter=adapter, steps=steps, patch=32, compare=True)
    decision = res.report["decision"]
    assert decision["choice"] == "direct" and decision["scores"] == {}
    assert "no adaptation step was taken" in decision["reason"]
    assert "decide" not in res.report["timings"] and res.report["loss"]["curve"] == []
    np.testing.assert_array_equal(res.fused, res.direct)
    trained = adapt_scene(model, scene, adapter="ft", steps=2, patch=32)
    assert set(trained.report["decision"]["scores"]) == {"direct", "adapted"}


def _random_qb_fusionnet(seed: int, h: int, w: int):
    """A random 4-band QuickBird scene (MS ``h x w``) and a seeded untrained FusionNet."""
    from tta.io import Scene

    rng = np.random.default_rng(seed)
    scene = Scene(ms=rng.uniform(100, 1500, (4, h, w)),
                  pan=rng.uniform(100, 1500, (4 * h, 4 * w)), sensor=get_sensor("QB"))
    torch.manual_seed(0)
    return scene, pretrained.create_model("fusionnet", n_bands=4).eval()


@pytest.mark.parametrize("adapter", ["ft", "cat"])
def test_paired_decision_scores_equal_separate_runs(adapter, monkeypatch):
    """With a frozen extractor both candidates come from one extractor pass; the scores equal
    those of running each candidate alone (to float32 rounding), and so does the choice."""
    import importlib

    engine = importlib.import_module("tta.engine.adapt")
    scene, model = _random_qb_fusionnet(2, 32, 32)
    paired = adapt_scene(model, scene, adapter=adapter, steps=5, patch=32)
    monkeypatch.setattr(engine, "_paired_fn", lambda *_a: None)
    alone = adapt_scene(model, scene, adapter=adapter, steps=5, patch=32)
    a, b = paired.report["decision"], alone.report["decision"]
    assert a["choice"] == b["choice"] and set(a["scores"]) == {"direct", "adapted"}
    for who in ("direct", "adapted"):
        assert set(a["scores"][who]) == {"rr_Q2n", "fr_HQNR", "fr_D_rho"}
        for key, value in a["scores"][who].items():
            assert value == pytest.approx(b["scores"][who][key], abs=1e-5)
    assert a["scores"]["adapted"] != a["scores"]["direct"]  # the adapter did change the output
    # the paired run's product comes from its whole-scene fusion by both candidates:
    # features + (tailored mapper - mapper) instead of the adapted network, float32 rounding
    np.testing.assert_allclose(paired.fused, alone.fused, rtol=0, atol=1e-3)


def test_windows_cut_from_the_scene_fusion():
    """Scenes whose check windows are the whole grid: the windows cut from a fused scene sit
    where check_windows cuts the inputs; larger scenes use a seeded subset (not covered)."""
    from tta.engine.decision import cut_windows, window_corners, windows_cover

    ms = torch.rand(1, 4, 48, 80)
    pan = torch.rand(1, 1, 192, 320)
    lms = interp23tap(ms, 4)
    _, _, up = check_windows(ms, pan, lms, 4)
    assert torch.equal(cut_windows(lms, 4), up)
    corners, side = window_corners(192, 320, 4)
    assert side == 128 and corners.shape == (6, 2)
    assert windows_cover(192, 320, 4) and windows_cover(512, 512, 4)
    assert not windows_cover(640, 1280, 4) and not windows_cover(1024, 1024, 4)
    big = torch.rand(1, 4, 1024, 1024)
    assert cut_windows(big, 4, seed=3).shape == (16, 4, 128, 128)
    c3, _ = window_corners(1024, 1024, 4, seed=3)
    y, x = c3[5].tolist()
    assert torch.equal(cut_windows(big, 4, seed=3)[5], big[0, :, y:y + 128, x:x + 128])


@pytest.mark.parametrize("adapter", ["ft", "cat"])
def test_scene_fused_once_by_both_candidates(adapter, monkeypatch):
    """A scene the check windows cover is fused once by both candidates (one extractor pass):
    the product equals the chosen network's own tiled fusion to float32 rounding, the
    decision's windows are cut from those products."""
    import importlib

    from tta.engine import decision as dec_mod

    engine = importlib.import_module("tta.engine.adapt")
    scene, model = _random_qb_fusionnet(5, 48, 64)
    calls = []
    real = engine._fuse_both
    monkeypatch.setattr(engine, "_fuse_both", lambda *a: calls.append(1) or real(*a))
    once = adapt_scene(model, scene, adapter=adapter, steps=5, patch=32)
    assert calls == [1] and once.report["decision"]["windows"]["fr"] == 4
    monkeypatch.setattr(dec_mod, "windows_cover", lambda *a, **k: False)
    twice = adapt_scene(model, scene, adapter=adapter, steps=5, patch=32)
    assert calls == [1]
    assert once.report["decision"]["choice"] == twice.report["decision"]["choice"] == "adapted"
    np.testing.assert_allclose(once.fused, twice.fused, rtol=0, atol=1e-3)
    # the windows: both products cut at the windows' corners (full context at their edges)
    scores = once.report["decision"]["scores"]
    assert scores["adapted"] != scores["direct"]
    for who in ("direct", "adapted"):
        assert scores[who]["fr_HQNR"] == pytest.approx(twice.report["decision"]["scores"][who]
                                                       ["fr_HQNR"], abs=0.05)
