"""Test-time adaptation of a pretrained network to one scene, then whole-scene fusion.

Stages (each timed in the report): *prepare* (normalise; Wald-degrade the scene once for the
reduced-resolution terms; radiometric harmonisation, :mod:`tta.engine.radiometry`; upsample
the MS with interp23tap; find each band's coregistration phase), *sample* (tile the PAN grid
into patches, describe them, select a few with :mod:`tta.sampling`), *decompose* (find the
extractor | mapper interface), *cache* (run the frozen model once on the selected patches and
on windows of the degraded scene, :mod:`tta.engine.reduced`, and keep the interface features
and the rest of the output), *calibrate* (SWIFT only: rank weights by gradients), *train*
(AdamW on the physics-aware unsupervised loss of :mod:`tta.losses` plus the
reduced-resolution self-supervision), *decide* (never harm: the adapted or the direct network,
:mod:`tta.engine.decision`), *infer* (batched tiles with smooth blending over the whole scene,
:func:`tta.engine.tiling.tiled_fuse`).

When the adapter leaves the extractor frozen and the output is ``mapper(f) + rest``, training
runs on the cached ``f`` and ``rest`` only (the mapper and the tailor per step); otherwise
(SWIFT, full fine-tuning, non-additive tails) each step runs the whole model on the patches.
No stage reads a scene's ``gt``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tta.checks import check_adapt_scene
from tta.decomposition import Decomposition, ForwardFn, decompose, default_forward
from tta.engine.config import AdaptConfig
from tta.engine.divergence import DivergenceGuard
from tta.errors import InputError

__all__ = ["AdaptResult", "adapt", "adapt_scene", "model_max_value", "receptive_radius"]


@dataclass
class AdaptResult:
    """Everything an adaptation run produced.

    Attributes:
        fused: Adapted fusion of the whole scene, float32 DN ``(C, H, W)``.
        report: Plain-data report (timings, selection, loss curve, metrics).
        adapter: The attached adapter (save it with :func:`adapters.save_adapter`).
        decomposition: Where the model was split.
        direct: Direct-transfer fusion (DN), when the run compared.
    """

    fused: np.ndarray
    report: dict[str, Any]
    adapter: Any
    decomposition: Decomposition
    direct: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class _Clock:
    """Stage timer that synchronises CUDA so the times are real."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


def model_max_value(model: nn.Module, default: float) -> float:
    """The DN divisor the model was trained with (its weights record), else ``default``."""
    record = getattr(model, "weights_record", None)
    value = getattr(record, "max_value", None)
    return float(value) if value else float(default)


def receptive_radius(fn: Callable[[Tensor, Tensor, Tensor], Tensor], n_bands: int, ratio: int,
                     *, device: torch.device, dtype: torch.dtype = torch.float32,
                     size: int = 128) -> int:
    """Measured receptive radius (PAN pixels) of ``fn``: how far an impulse in the inputs moves
    the output. Probes a ``size`` square with a bump at the centre of PAN, MS and LMS."""
    from tta.decomposition import probe_inputs

    ms, pan, lms = probe_inputs(n_bands, ratio, size, device=device, dtype=dtype)
    c = size // 2
    with torch.inference_mode():
        base = fn(ms, pan, lms)
        ms2, pan2, lms2 = ms.clone(), pan.clone(), lms.clone()
        pan2[..., c, c] += 0.5
        lms2[..., c, c] += 0.5
        ms2[..., c // ratio, c // ratio] += 0.5
        lms2[..., (c // ratio) * ratio:(c // ratio + 1) * ratio,
             (c // ratio) * ratio:(c // ratio + 1) * ratio] += 0.25
        moved = (fn(ms2, pan2, lms2) - base).abs().amax(dim=(0, 1)) > 1e-6
    ys, xs = torch.nonzero(moved, as_tuple=True)
    if ys.numel() == 0:
        return 0
    r = int(torch.stack([(ys - c).abs().max(), (xs - c).abs().max()]).max())
    if r >= c - 1:  # reaches the probe's border: as large as we can tell
        return size
    return r + ratio  # the MS bump sits up to ratio pixels off the centre


def _to_tensor(a: np.ndarray, device: torch.device, scale: float) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device) / scale


def adapt(model: nn.Module, scene: Any, *, config: AdaptConfig | None = None,
          device: str | torch.device = "auto", interface: str | None = None,
          compare: bool = False, progress: bool = False,
          forward_fn: ForwardFn = default_forward, **overrides: Any
          ) -> tuple[np.ndarray, dict[str, Any]]:
    """Adapt ``model`` to ``scene`` without ground truth and fuse the whole scene.

    Args:
        model: A pretrained pansharpening network taking ``(ms, pan, lms)`` divided by its
            training max DN (any ``nn.Module``; see :func:`tta.decomposition.decompose`).
        scene: A :class:`tta.io.Scene` (DN).
        config: Settings; keyword ``overrides`` replace single fields
            (e.g. ``adapter="cat", steps=50``).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        interface: Mapper module name, overriding the automatic decomposition.
        compare: Also fuse by direct transfer and score both with the FR indexes (and RR ones
            when the scene has ``gt``) in ``report["metrics"]``.
        progress: Show progress bars.
        forward_fn: Call convention of the model.

    Returns:
        ``(fused, report)``: the adapted fusion as float32 DN ``(C, H, W)`` and the report.
    """
    result = adapt_scene(model, scene, config=config, device=device, interface=interface,
                         compare=compare, progress=progress, forward_fn=forward_fn,
                         **overrides)
    return result.fused, result.report


def _select(scene: Any, lms_scale: tuple[Tensor, Tensor, Tensor], cfg: AdaptConfig,
            device: torch.device) -> tuple[Tensor, dict[str, Any]]:
    """Tile, describe and select training patches; returns PAN-grid corners (k, 2)."""
    from tta.sampling import (
        describe_patches,
        extract_patches,
        extract_scene_patches,
        patch_grid,
        select_patches,
    )

    ms, pan, lms = lms_scale
    ratio = scene.ratio
    big_h, big_w = pan.shape[-2:]
    patch = cfg.patch
    if patch % ratio:
        raise InputError(f"patch {patch} must be a multiple of the ratio {ratio}")
    if patch > min(big_h, big_w):
        raise InputError(f"patch {patch} is larger than the scene ({big_h}x{big_w}); pass a "
                         "smaller --patch")
    corners = patch_grid(big_h, big_w, patch, ratio=ratio)
    n_all = int(corners.shape[0])
    if scene.nodata is not None and scene.nodata.any():
        mask = torch.from_numpy(scene.nodata.astype(np.float32))[None, None].to(device)
        share = extract_patches(mask, corners.to(device), patch).mean(dim=(1, 2, 3)).cpu()
        keep = share <= cfg.max_nodata
        if not bool(keep.any()):
            raise InputError(f"{scene.source}: every {patch}x{patch} patch has nodata; "
                             "nothing to adapt on")
        corners = corners[keep]
    n = int(corners.shape[0])
    k = min(n, cfg.max_patches, max(cfg.min_patches, math.ceil(cfg.fraction * n)))
    ms_p, pan_p, lms_p = extract_scene_patches(ms, pan, lms, corners.to(device), patch, ratio)
    feats = describe_patches(ms_p, pan_p, lms_p)
    idx = select_patches(feats, k, cfg.sampler, seed=cfg.seed, device=device).cpu()
    chosen = corners[idx]
    info = {"patches_total": n_all, "patches_valid": n, "selected": int(k),
            "patch": patch, "sampler": cfg.sampler,
            "corners": chosen.tolist()}
    return chosen, info


def adapt_scene(model: nn.Module, scene: Any, *, config: AdaptConfig | None = None,
                device: str | torch.device = "auto", interface: str | None = None,
                compare: bool = False, progress: bool = False,
                forward_fn: ForwardFn = default_forward, **overrides: Any) -> AdaptResult:
    """:func:`adapt` returning the full :class:`AdaptResult` (adapter and decomposition too).

    The adapter is attached to a copy of ``model`` (``model`` itself is left unchanged), so
    ``result.adapter`` can be saved with :func:`adapters.save_adapter` or merged into a plain
    network with ``result.adapter.merge()``.
    """
    from adapters import create_adapter
    from tta.device import resolve_device
    from tta.engine.reduced import reduced_pairs, reduced_scene
    from tta.engine.tiling import fitted_tile, tiled_fuse
    from tta.losses import PhysicsLoss
    from tta.physics import coregistration_phases, interp23tap
    from tta.sampling import extract_scene_patches

    cfg = (config or AdaptConfig()).replace(**overrides)
    check_adapt_scene(cfg, scene)
    from tta.engine.bands import plan_bands

    plan = plan_bands(model, scene)
    if plan.split:
        return _adapt_split(model, scene, plan, cfg, device=device, interface=interface,
                            compare=compare, progress=progress, forward_fn=forward_fn)
    dev = resolve_device(device)
    clock = _Clock(dev)
    sensor = scene.sensor
    ratio = int(scene.ratio)
    n_bands = scene.n_bands
    model_bands = getattr(model, "n_bands", n_bands)
    if model_bands != n_bands:
        raise InputError(f"model has {model_bands} bands but {scene.source} has {n_bands}; "
                         "use a model trained on a sensor with the same bands")
    use_amp = cfg.amp and dev.type == "cuda"
    if use_amp:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    from tta.engine.radiometry import level_gain

    harmony = level_gain(scene.pan, model_max_value(model, scene.max_value),
                         source_level=getattr(getattr(model, "weights_record", None),
                                              "pan_level", None), nodata=scene.nodata)
    from tta.engine.reuse import state_digest

    digest = state_digest(model)
    # Work on a copy: the caller's model is never modified (the adapter attaches to the copy,
    # reachable as result.adapter.decomposition.model).
    model = copy.deepcopy(model).to(dev).eval()

    with clock.stage("prepare"):
        ms = _to_tensor(scene.ms, dev, harmony.divisor)[None]
        pan = _to_tensor(scene.pan, dev, harmony.divisor)[None, None]
        reduced = None
        if cfg.rr_weight > 0 or cfg.decide or (cfg.harmonise and harmony.candidate != 1.0):
            reduced = reduced_scene(ms, pan, tuple(sensor.mtf_ms), ratio)
        if cfg.harmonise and reduced is not None:
            harmony = _harmonise(harmony, model, forward_fn, reduced, ratio, cfg.seed)
        scale = harmony.divisor / harmony.gain  # normalised = DN / scale
        if harmony.gain != 1.0:
            ms, pan = ms * harmony.gain, pan * harmony.gain
            reduced = tuple(t * harmony.gain for t in reduced)
        lms = interp23tap(ms, ratio)
        if cfg.coregister:
            phase = coregistration_phases(ms, pan, sensor.mtf_ms, ratio)[0]  # (C, 2)
        else:
            phase = None

    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        with clock.stage("sample"):
            corners, sample_info = _select(scene, (ms, pan, lms), cfg, dev)
            ms_p, pan_p, lms_p = extract_scene_patches(ms, pan, lms, corners.to(dev),
                                                        cfg.patch, ratio)

        with clock.stage("decompose"):
            dec = decompose(model, n_bands=n_bands, ratio=ratio, interface=interface,
                            forward_fn=forward_fn,
                            probe=(ms_p[:1], pan_p[:1], lms_p[:1]))

        def run_model(m_ms: Tensor, m_pan: Tensor, m_lms: Tensor,
                      net: nn.Module = model) -> Tensor:
            ctx = torch.autocast("cuda", torch.bfloat16) if use_amp else nullcontext()
            with ctx:
                out = forward_fn(net, m_ms, m_pan, m_lms)
            return out.float()

        direct = None
        if compare:
            with clock.stage("direct_infer"):
                d_overlap, d_margin = _blending(cfg, run_model, n_bands, ratio, dev)
                d_tile = fitted_tile(*pan.shape[-2:], cfg.tile, d_overlap, ratio)
                direct = tiled_fuse(run_model, ms[0], pan[0, 0], lms[0], ratio=ratio,
                                    tile=d_tile, overlap=d_overlap, margin=d_margin,
                                    batch_size=cfg.inference_batch, device=dev,
                                    progress=progress)

        adapter = create_adapter(cfg.adapter, **cfg.adapter_options)
        source = copy.deepcopy(model) if cfg.decide else model  # the direct network
        fast = not adapter.trains_extractor and dec.tail == "add"
        loss_fn = PhysicsLoss.from_sensor(sensor, weights=cfg.loss_weights,
                                          spatial_kind=cfg.spatial_loss).to(dev)
        with clock.stage("cache"):
            feats, rest, reference = _cache(dec, ms_p, pan_p, lms_p, fast)
            rho_max = None
            if cfg.spatial_loss == "zpnn":
                from tta.losses import zpnn_rho_max

                rho_max = zpnn_rho_max(lms_p, pan_p, ratio, kernels=loss_fn.kernels)
            rr = None
            if cfg.rr_weight > 0 and reduced is not None:
                rr = reduced_pairs(reduced, ratio, cfg.patch, max(int(ms_p.shape[0]), 1),
                                   seed=cfg.seed)
            rr_feats = rr_rest = None
            if rr is not None and fast:
                rr_feats, rr_rest, _ = _cache(dec, rr.ms, rr.pan, rr.lms, fast)
        adapter.attach(dec)

        calib = None
        if adapter.kind == "swift":
            with clock.stage("calibrate"):
                def probe_loss() -> Tensor:
                    out = dec.forward(ms_p, pan_p, lms_p)
                    return loss_fn(out, ms_p, pan_p, lms_p, reference, phase=phase,
                                   rho_max=rho_max)[0]
                calib = adapter.calibrate(probe_loss, cfg.calibration_batches)

        curve: list[float] = []
        parts_first: dict[str, float] = {}
        parts_last: dict[str, float] = {}
        diverged_at = None
        params = adapter.trainable_parameters()
        if params and cfg.steps > 0:
            with clock.stage("train"):
                curve, parts_first, parts_last, diverged_at = _train(
                    dec, adapter, params, loss_fn, cfg, (ms_p, pan_p, lms_p), reference,
                    phase, feats, rest, rho_max, fast, use_amp, dev, progress,
                    rr=(rr, rr_feats, rr_rest))
    finally:
        torch.random.set_rng_state(gen_state)

    def run_adapted(t_ms: Tensor, t_pan: Tensor, t_lms: Tensor) -> Tensor:
        adapter.set_condition(t_ms, t_pan, t_lms)
        return run_model(t_ms, t_pan, t_lms)

    def run_direct(t_ms: Tensor, t_pan: Tensor, t_lms: Tensor) -> Tensor:
        return run_model(t_ms, t_pan, t_lms, net=source)

    model.eval()
    decision = None
    if cfg.decide:
        with clock.stage("decide"):
            decision = _decide(run_direct, run_adapted, (ms, pan, lms), reduced, sensor,
                               ratio, scale, cfg)
    chosen = run_direct if decision is not None and decision.choice == "direct" else run_adapted
    with clock.stage("infer"):
        overlap, margin = _blending(cfg, chosen, n_bands, ratio, dev)
        tile = fitted_tile(*pan.shape[-2:], cfg.tile, overlap, ratio)
        if chosen is run_direct and direct is not None:
            fused = direct.copy()
        else:
            fused = tiled_fuse(chosen, ms[0], pan[0, 0], lms[0], ratio=ratio, tile=tile,
                               overlap=overlap, margin=margin,
                               batch_size=cfg.inference_batch, device=dev, progress=progress)
    fused *= scale
    if direct is not None:
        direct *= scale
    if scene.nodata is not None:
        fused[:, scene.nodata] = 0
        if direct is not None:
            direct[:, scene.nodata] = 0

    report = _report(model, scene, cfg, dev, dec, adapter, sample_info, calib, curve,
                     parts_first, parts_last, clock.times, phase, (overlap, margin), harmony)
    report["inference"]["tile"] = tile
    report["decision"] = decision.to_dict() if decision is not None else None
    report["bands"] = plan.to_dict(cfg.other_bands)
    report["model"].update(state_sha256=digest,
                           weights_sha256=getattr(getattr(model, "weights_record", None),
                                                  "sha256", None))
    report["loss"].update(diverged=diverged_at is not None, diverged_at_step=diverged_at)
    if compare:
        from tta.evaluation import evaluate

        with clock.stage("evaluate"):
            report["metrics"] = {
                "direct": evaluate(scene, direct, "both" if scene.is_reduced else "fr", dev),
                "adapted": evaluate(scene, fused, "both" if scene.is_reduced else "fr", dev),
            }
        report["timings"]["evaluate"] = clock.times["evaluate"]
    return AdaptResult(fused=fused, report=report, adapter=adapter, decomposition=dec,
                       direct=direct)


def _adapt_split(model: nn.Module, scene: Any, plan: Any, cfg: AdaptConfig, *,
                 compare: bool, **kw: Any) -> AdaptResult:
    """:func:`adapt_scene` on the network's bands (:mod:`tta.engine.bands`), the others fused
    by ``cfg.other_bands``; products, report and metrics are of the whole scene, in its band
    order."""
    from tta.classical import fuse_scene
    from tta.device import resolve_device
    from tta.engine.bands import assemble

    res = adapt_scene(model, plan.part(scene, plan.net_index), config=cfg, compare=compare,
                      **kw)
    t0 = time.perf_counter()
    other = None
    if plan.other_index:
        other = fuse_scene(plan.part(scene, plan.other_index), cfg.other_bands,
                           device=resolve_device(kw.get("device", "auto")))
    t_other = time.perf_counter() - t0
    fused = assemble(plan, scene.shape, res.fused, other)
    direct = None if res.direct is None else assemble(plan, scene.shape, res.direct, other)
    report = res.report
    report["scene"] = {"source": scene.source, "sensor": scene.sensor.name,
                       "shape": list(scene.shape), "ratio": scene.ratio,
                       "max_value": scene.max_value}
    report["bands"] = plan.to_dict(cfg.other_bands)
    report["timings"]["other_bands"] = t_other
    report["timings"]["adapt_and_infer"] += t_other
    if compare:
        from tta.evaluation import evaluate

        protocol = "both" if scene.is_reduced else "fr"
        report["metrics"] = {"direct": evaluate(scene, direct, protocol, kw.get("device")),
                             "adapted": evaluate(scene, fused, protocol, kw.get("device"))}
    return AdaptResult(fused=fused, report=report, adapter=res.adapter,
                       decomposition=res.decomposition, direct=direct,
                       extras={**res.extras, "band_plan": plan})


def _harmonise(h: Any, model: nn.Module, forward_fn: ForwardFn, reduced: Any, ratio: int,
               seed: int) -> Any:
    """:func:`tta.engine.radiometry.choose_gain` with the direct network's reduced-resolution
    Q2n on windows of the degraded scene as the self-check."""
    from tta.engine.decision import fuse_batched
    from tta.engine.radiometry import choose_gain
    from tta.engine.reduced import reduced_pairs
    from tta.metrics import q2n

    pairs = reduced_pairs(reduced, ratio, 128, 16, seed=seed)
    if pairs is None:
        return h

    def check(gain: float) -> float:
        def fn(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
            return forward_fn(model, a * gain, b * gain, c * gain) / gain

        fused = fuse_batched(fn, pairs.ms, pairs.pan, pairs.lms).double()
        return float(q2n(pairs.ref.double() * h.divisor, fused * h.divisor).mean())

    return choose_gain(h, check)


def _decide(run_direct: Callable[..., Tensor], run_adapted: Callable[..., Tensor],
            scene_t: tuple[Tensor, Tensor, Tensor], reduced: Any, sensor: Any, ratio: int,
            dn: float, cfg: AdaptConfig) -> Any:
    """:mod:`tta.engine.decision` on check windows of the scene and of its degraded copy."""
    from tta.engine.decision import check_windows, decide, score_candidate
    from tta.engine.reduced import reduced_pairs

    gains = tuple(sensor.mtf_ms)
    fr = check_windows(*scene_t, ratio, seed=cfg.seed)
    rr = reduced_pairs(reduced, ratio, 128, 16, seed=cfg.seed) if reduced is not None else None
    kw = {"gains": gains, "ratio": ratio, "dn": dn}
    windows = {"fr": int(fr[0].shape[0]), "fr_side": int(fr[1].shape[-1]),
               "rr": len(rr) if rr is not None else 0,
               "rr_side": rr.patch if rr is not None else None}
    return decide(score_candidate(run_direct, fr, rr, **kw),
                  score_candidate(run_adapted, fr, rr, **kw),
                  tolerance=cfg.decision_tolerance, windows=windows)


_PROBE = 128  # side of the receptive-field probe (PAN pixels)


def _blending(cfg: AdaptConfig, fn: Callable[[Tensor, Tensor, Tensor], Tensor], n_bands: int,
              ratio: int, dev: torch.device) -> tuple[int, int]:
    """``(overlap, margin)`` of the inference tiles.

    The margin (tile-edge pixels given zero weight) is the measured receptive radius rounded
    up to the ratio, so for a translation-equivariant network the tiled fusion equals the
    untiled one; the overlap adds a cross-fade ramp of ``4 * ratio`` pixels. A network whose
    output depends on the whole input (the radius reaches the probe's border, e.g. KSDiff's
    image-wide prior) cannot be tiled exactly at any size: its tiles overlap by half a tile.
    A configured overlap is used as given (margin a quarter of it).
    """
    if cfg.overlap is not None:
        return cfg.overlap, cfg.overlap // 4
    r = receptive_radius(fn, n_bands, ratio, device=dev, size=_PROBE)
    if r >= _PROBE:  # image-wide context (e.g. KSDiff's prior): no tile is exact; half overlap
        overlap = ratio * (cfg.tile // 2 // ratio)
        return overlap, overlap // 4
    margin = ratio * math.ceil(max(r, 1) / ratio)
    overlap = 2 * margin + 4 * ratio
    limit = cfg.tile - ratio
    if overlap > limit:
        raise InputError(f"tile {cfg.tile} is too small for this model's receptive radius "
                         f"({r} px, overlap {overlap}); use a tile of at least "
                         f"{overlap + ratio}")
    return overlap, margin


@torch.no_grad()
def _cache(dec: Decomposition, ms_p: Tensor, pan_p: Tensor, lms_p: Tensor, fast: bool
           ) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """Source output on the patches, and (fast path) interface features and ``rest``."""
    store: dict[str, Tensor] = {}
    handles = []
    if fast:
        def grab_in(_m, args):
            store["f"] = args[0].detach()

        def grab_out(_m, _args, out):
            store["m"] = out.detach()

        handles = [dec.mapper.register_forward_pre_hook(grab_in),
                   dec.mapper.register_forward_hook(grab_out)]
    try:
        ref = dec.forward(ms_p, pan_p, lms_p).detach()
    finally:
        for h in handles:
            h.remove()
    if not fast:
        return None, None, ref
    return store["f"], ref - store["m"], ref


def _train(dec: Decomposition, adapter: Any, params: list[nn.Parameter], loss_fn: nn.Module,
           cfg: AdaptConfig, patches: tuple[Tensor, Tensor, Tensor], reference: Tensor,
           phase: Tensor | None, feats: Tensor | None, rest: Tensor | None,
           rho_max: Tensor | None, fast: bool,
           use_amp: bool, dev: torch.device, progress: bool,
           rr: tuple[Any, Tensor | None, Tensor | None] = (None, None, None)
           ) -> tuple[list[float], dict[str, float], dict[str, float], int | None]:
    """AdamW steps on the physics loss (plus the reduced-resolution term when ``rr`` holds
    pairs); returns the loss curve, first/last loss parts and the step where the loss
    diverged (None if it did not; the parameters are then reset to their initial values,
    i.e. the direct network)."""
    from tqdm.auto import tqdm

    ms_p, pan_p, lms_p = patches
    pairs, rr_feats, rr_rest = rr
    rr_border = pan_p.shape[-1] // ms_p.shape[-1]  # one MS pixel of the degraded pairs
    own = {id(p) for p in adapter.parameters()}
    groups = [
        {"params": [p for p in params if id(p) in own], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if id(p) not in own], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.learning_rate,
                            fused=dev.type == "cuda" or None)
    n = ms_p.shape[0]
    bs = n if cfg.batch_size is None else min(cfg.batch_size, n)
    gen = torch.Generator().manual_seed(cfg.seed)
    curve: list[float] = []
    first: dict[str, float] = {}
    last_parts: dict[str, Tensor] = {}
    if not fast:
        dec.model.train(False)  # keep eval-mode layers (no batch-norm statistics updates)
    def forward_loss(b_ms: Tensor, b_pan: Tensor, b_lms: Tensor, b_ref: Tensor,
                     b_feats: Tensor | None, b_rest: Tensor | None, b_rho: Tensor | None
                     ) -> tuple[Tensor, dict[str, Tensor]]:
        ctx = torch.autocast("cuda", torch.bfloat16) if use_amp else nullcontext()
        with ctx:
            if fast:
                out = dec.mapper(b_feats) + b_rest
            else:
                out = dec.forward(b_ms, b_pan, b_lms)
        total, parts = loss_fn(out.float(), b_ms, b_pan, b_lms, b_ref, phase=phase,
                               rho_max=b_rho)
        if pairs is not None:
            adapter.set_condition(pairs.ms, pairs.pan, pairs.lms)
            with ctx:
                if fast:
                    out_r = dec.mapper(rr_feats) + rr_rest
                else:
                    out_r = dec.forward(pairs.ms, pairs.pan, pairs.lms)
            b = rr_border
            parts["reduced"] = (out_r.float() - pairs.ref)[..., b:-b, b:-b].abs().mean()
            total = total + cfg.rr_weight * parts["reduced"]
        return total, parts

    step_fn = forward_loss
    if cfg.compile is not None and fast:  # shapes are fixed within a run: not dynamic
        # Only the cached-feature path (mapper + loss) is compiled: through a whole network,
        # torch 2.13's inductor fails on the loss's replication-pad backward (stride check).
        step_fn = torch.compile(forward_loss, mode=cfg.compile, dynamic=False)
    bar = tqdm(range(cfg.steps), desc="train", disable=not progress, leave=False)
    losses = []
    guard = DivergenceGuard(params)
    for step in bar:
        idx = (torch.randperm(n, generator=gen)[:bs].to(dev) if bs < n else None)

        def pick(t: Tensor | None, idx=idx) -> Tensor | None:
            return t if t is None or idx is None else t[idx]

        b_ms, b_pan, b_lms, b_ref = pick(ms_p), pick(pan_p), pick(lms_p), pick(reference)
        adapter.set_condition(b_ms, b_pan, b_lms)
        loss, parts = step_fn(b_ms, b_pan, b_lms, b_ref, pick(feats), pick(rest),
                              pick(rho_max))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        if step == 0:
            first = {k: float(v.detach()) for k, v in parts.items()}
        last_parts = parts
        if guard.stop(loss):
            break
    diverged = guard.finish()
    curve = [float(v) for v in torch.stack(losses).cpu()] if losses else []
    last = {k: float(v.detach()) for k, v in last_parts.items()}
    return curve, first, last, guard.step if diverged else None


def _report(model: nn.Module, scene: Any, cfg: AdaptConfig, dev: torch.device,
            dec: Decomposition, adapter: Any, sample_info: dict[str, Any],
            calib: dict[str, Any] | None, curve: list[float], first: dict[str, float],
            last: dict[str, float], times: dict[str, float], phase: Tensor | None,
            overlap: tuple[int, int], harmony: Any) -> dict[str, Any]:
    from tta import __version__

    record = getattr(model, "weights_record", None)
    dev_name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                else f"cpu ({torch.get_num_threads()} threads)")
    summary = dec.summary()
    summary.pop("candidates", None)
    timings = dict(times)
    timings["adapt"] = sum(times.get(k, 0.0) for k in ("prepare", "sample", "decompose",
                                                      "cache", "calibrate", "train",
                                                      "decide"))
    timings["adapt_and_infer"] = timings["adapt"] + times.get("infer", 0.0)
    return {
        "tta_version": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": dev_name,
        "model": {
            "class": type(model).__name__,
            "arch": getattr(model, "arch", None) or type(model).__name__,
            "weights": getattr(record, "file", None),
            "weights_sensor": getattr(record, "sensor", None),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "scene": {"source": scene.source, "sensor": scene.sensor.name,
                  "shape": list(scene.shape), "ratio": scene.ratio,
                  "max_value": scene.max_value},
        "config": cfg.to_dict(),
        "decomposition": summary,
        "adapter": {"kind": adapter.kind, "config": adapter.config(),
                    "trainable": adapter.num_trainable(), "swift": calib},
        "sampling": sample_info,
        "radiometry": harmony.to_dict(),
        "coregistration_phase": phase.tolist() if phase is not None else None,
        "loss": {"curve": curve, "first": first, "last": last},
        "inference": {"tile": cfg.tile, "max_tile": cfg.tile, "overlap": overlap[0],
                      "margin": overlap[1]},
        "timings": timings,
    }
