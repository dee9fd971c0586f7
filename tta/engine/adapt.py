"""Test-time adaptation of a pretrained network to one scene, then whole-scene fusion.

Typed stages (each timed in the report): *prepare* (normalise; Wald-degrade the scene once for
the reduced-resolution terms; radiometric harmonisation, :mod:`tta.engine.radiometry`;
upsample the MS with interp23tap; find each band's coregistration phase) -> :class:`Inputs`;
*sample* (tile the PAN grid into patches, describe them, select a few with
:mod:`tta.sampling`) -> :class:`Patches`; *decompose* (find the extractor | mapper interface,
:mod:`tta.decomposition`); *cache* (the decomposition runs the frozen model once on the
selected patches and on windows of the degraded scene, :mod:`tta.engine.reduced`, keeping
the interface features and the rest of the output) -> :class:`TrainData`; *calibrate* (for
adapters that calibrate, e.g. SWIFT's gradient ranking); *train* (AdamW on the physics-aware
unsupervised loss of :mod:`tta.losses` plus the reduced-resolution self-supervision) ->
:class:`~tta.engine.report.LossReport`; *decide* (never harm: the adapted or the direct
network, :mod:`tta.engine.decision`); *infer* (batched tiles with smooth blending over the
whole scene; the overlap policy is :func:`tta.engine.tiling.blend_geometry`). The run's
report is an :class:`~tta.engine.report.AdaptReport`.

When the adapter leaves the extractor frozen and the output is ``mapper(f) + rest``, training
runs on the cached ``f`` and ``rest`` only (the mapper and the tailor per step); otherwise
(SWIFT, full fine-tuning, non-additive tails) each step runs the whole model on the patches.
The engine never asks which adapter it runs: each owns its learning rate, calibration and
conditioning (:class:`adapters.Adapter`). No stage reads a scene's ``gt``.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from tta.checks import check_adapt_scene
from tta.decomposition import Decomposition, FeatureCache, ForwardFn, decompose, default_forward
from tta.engine.config import AdaptConfig
from tta.engine.divergence import DivergenceGuard
from tta.engine.protocols import AdapterLike, SceneLike
from tta.engine.report import (
    AdapterInfo,
    AdaptReport,
    InferenceInfo,
    LossReport,
    ModelInfo,
    SceneInfo,
)
from tta.engine.runtime import Runtime, run_adapted_fn, to_tensor
from tta.engine.tiling import fit_tiles, receptive_radius
from tta.errors import InputError

if TYPE_CHECKING:
    from tta.engine.bands import BandPlan
    from tta.engine.decision import Decision
    from tta.engine.radiometry import Harmonisation
    from tta.engine.reduced import ReducedPairs
    from tta.losses import PhysicsLoss

__all__ = ["AdaptResult", "Inputs", "Patches", "TrainData", "adapt", "adapt_scene",
           "model_max_value", "receptive_radius"]

#: Stages whose times add up to the report's ``adapt`` time.
ADAPT_STAGES = ("prepare", "sample", "decompose", "cache", "calibrate", "train", "decide")


@dataclass
class AdaptResult:
    """Everything an adaptation run produced.

    Attributes:
        fused: Adapted fusion of the whole scene, float32 DN ``(C, H, W)`` (None when
            :func:`adapt_scene` ran with ``fuse=False``).
        report: The run's :class:`~tta.engine.report.AdaptReport` (``report.to_json()``).
        adapter: The attached adapter (save it with :func:`adapters.save_adapter`).
        decomposition: Where the model was split.
        direct: Direct-transfer fusion (DN), when the run compared.
    """

    fused: np.ndarray | None
    report: AdaptReport
    adapter: AdapterLike
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

    def timings(self) -> dict[str, float]:
        """Seconds per stage plus ``adapt`` (the adaptation stages) and ``adapt_and_infer``."""
        out = dict(self.times)
        out["adapt"] = sum(self.times.get(k, 0.0) for k in ADAPT_STAGES)
        out["adapt_and_infer"] = out["adapt"] + self.times.get("infer", 0.0)
        return out


@dataclass
class Inputs:
    """The *prepare* stage: the scene normalised (``DN / scale``), batched, on the device.

    Attributes:
        ms: ``(1, C, h, w)``; pan: ``(1, 1, H, W)``; lms: interp23tap of ms ``(1, C, H, W)``.
        reduced: The Wald-degraded scene (ms, pan, lms, reference), or None when unused.
        phase: Each band's coregistration phase ``(C, 2)``, or None.
        harmony: The radiometric harmonisation applied.
    """

    ms: Tensor
    pan: Tensor
    lms: Tensor
    reduced: tuple[Tensor, ...] | None
    phase: Tensor | None
    harmony: Harmonisation

    @property
    def scale(self) -> float:
        """DN per normalised unit."""
        return self.harmony.divisor / self.harmony.gain

    @property
    def triple(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.ms, self.pan, self.lms


@dataclass
class Patches:
    """The *sample* stage: the selected training patches and how they were chosen."""

    ms: Tensor
    pan: Tensor
    lms: Tensor
    info: dict[str, Any]

    @property
    def triple(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.ms, self.pan, self.lms

    def __len__(self) -> int:
        return int(self.ms.shape[0])


@dataclass
class TrainData:
    """The *cache* stage: what every training step reads.

    Attributes:
        patches: The training patches.
        cache: The frozen model's output on them (features and rest when split).
        rho_max: The Z-PNN threshold of the patches, or None.
        rr: Reduced-resolution pairs of the self-supervision, or None.
        rr_cache: Their cache (split only), or None.
    """

    patches: Patches
    cache: FeatureCache
    rho_max: Tensor | None = None
    rr: ReducedPairs | None = None
    rr_cache: FeatureCache | None = None


def model_max_value(model: nn.Module, default: float) -> float:
    """The DN divisor the model was trained with (its weights record), else ``default``."""
    record = getattr(model, "weights_record", None)
    value = getattr(record, "max_value", None)
    return float(value) if value else float(default)


def adapt(model: nn.Module, scene: SceneLike, *, config: AdaptConfig | None = None,
          device: str | torch.device = "auto", interface: str | None = None,
          compare: bool = False, progress: bool = False,
          forward_fn: ForwardFn = default_forward, **overrides: Any
          ) -> tuple[np.ndarray, AdaptReport]:
    """Adapt ``model`` to ``scene`` without ground truth and fuse the whole scene.

    Args:
        model: A pretrained pansharpening network taking ``(ms, pan, lms)`` divided by its
            training max DN (any ``nn.Module``; see :func:`tta.decomposition.decompose`).
        scene: A :class:`tta.io.Scene` (DN), or anything :class:`SceneLike`.
        config: Settings; keyword ``overrides`` replace single fields
            (e.g. ``adapter="cat", steps=50``).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        interface: Mapper module name, overriding the automatic decomposition.
        compare: Also fuse by direct transfer and score both with the FR indexes (and RR ones
            when the scene has ``gt``) in ``report["metrics"]``.
        progress: Show progress bars.
        forward_fn: Call convention of the model.

    Returns:
        ``(fused, report)``: the adapted fusion as float32 DN ``(C, H, W)`` and the report
        (an :class:`~tta.engine.report.AdaptReport`, readable as a mapping).
    """
    result = adapt_scene(model, scene, config=config, device=device, interface=interface,
                         compare=compare, progress=progress, forward_fn=forward_fn,
                         **overrides)
    return result.fused, result.report


def _prepare(scene: SceneLike, model: nn.Module, cfg: AdaptConfig, harmony: Harmonisation,
             rt: Runtime) -> Inputs:
    """The *prepare* stage (see the module docstring)."""
    from tta.engine.reduced import reduced_scene
    from tta.physics import coregistration_phases, interp23tap

    ratio, sensor, dev = int(scene.ratio), scene.sensor, rt.device
    ms = to_tensor(scene.ms, dev, harmony.divisor)[None]
    pan = to_tensor(scene.pan, dev, harmony.divisor)[None, None]
    reduced = None
    if cfg.rr_weight > 0 or cfg.decide or (cfg.harmonise and harmony.candidate != 1.0):
        reduced = reduced_scene(ms, pan, tuple(sensor.mtf_ms), ratio)
    if cfg.harmonise and reduced is not None:
        harmony = _harmonise(harmony, model, rt.forward_fn, reduced, ratio, cfg.seed)
    if harmony.gain != 1.0:
        ms, pan = ms * harmony.gain, pan * harmony.gain
        reduced = tuple(t * harmony.gain for t in reduced)
    lms = interp23tap(ms, ratio)
    phase = coregistration_phases(ms, pan, sensor.mtf_ms, ratio)[0] if cfg.coregister else None
    return Inputs(ms, pan, lms, reduced, phase, harmony)


def _sample(scene: SceneLike, inputs: Inputs, cfg: AdaptConfig, device: torch.device
            ) -> Patches:
    """The *sample* stage: tile, describe and select training patches."""
    from tta.sampling import (
        describe_patches,
        extract_patches,
        extract_scene_patches,
        patch_grid,
        select_patches,
    )

    ms, pan, lms = inputs.triple
    ratio = scene.ratio
    big_h, big_w = pan.shape[-2:]
    patch = cfg.patch  # a multiple of the ratio inside the scene (check_adapt_scene)
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
    return Patches(*extract_scene_patches(ms, pan, lms, chosen.to(device), patch, ratio), info)


def _cache(dec: Decomposition, patches: Patches, inputs: Inputs, loss_fn: PhysicsLoss,
           cfg: AdaptConfig, ratio: int, split: bool) -> TrainData:
    """The *cache* stage: the decomposition's cache of the patches (and of the degraded
    windows), and the Z-PNN threshold."""
    from tta.engine.reduced import reduced_pairs

    data = TrainData(patches, dec.cache(*patches.triple, split=split).channels_last())
    if cfg.spatial_loss == "zpnn":
        from tta.losses import zpnn_rho_max

        data.rho_max = zpnn_rho_max(patches.lms, patches.pan, ratio, kernels=loss_fn.kernels)
    if cfg.rr_weight > 0 and inputs.reduced is not None:
        data.rr = reduced_pairs(inputs.reduced, ratio, cfg.patch, max(len(patches), 1),
                                seed=cfg.seed)
    if data.rr is not None and split:
        data.rr_cache = dec.cache(data.rr.ms, data.rr.pan, data.rr.lms,
                                  split=split).channels_last()
    return data


def adapt_scene(model: nn.Module, scene: SceneLike, *, config: AdaptConfig | None = None,
                device: str | torch.device = "auto", interface: str | None = None,
                compare: bool = False, progress: bool = False,
                forward_fn: ForwardFn = default_forward, fuse: bool = True,
                **overrides: Any) -> AdaptResult:
    """:func:`adapt` returning the full :class:`AdaptResult` (adapter and decomposition too).

    With ``fuse=False`` the whole-scene fusion is skipped (``result.fused`` is None) and
    ``result.extras`` holds what fuses any window of the scene the same way: ``fuse_fn`` (the
    chosen network on normalised inputs), ``divisor`` and ``gain`` (normalised =
    DN / divisor * gain; output DN = output * ``scale``) and the tile ``overlap``/``margin``
    (:mod:`tta.engine.stream` uses them to fuse a scene read by window).

    The adapter is attached to a copy of ``model`` (``model`` itself is left unchanged), so
    ``result.adapter`` can be saved with :func:`adapters.save_adapter` or merged into a plain
    network with ``result.adapter.merge()``.
    """
    from tta.engine.bands import plan_bands

    cfg = (config or AdaptConfig()).replace(**overrides)
    check_adapt_scene(cfg, scene)
    plan = plan_bands(model, scene)
    if plan.split:
        return _adapt_split(model, scene, plan, cfg, device=device, interface=interface,
                            compare=compare, progress=progress, forward_fn=forward_fn)
    run = _start(model, scene, cfg, device, forward_fn, progress)
    with _seeded(cfg.seed):
        _select(run, interface, compare)
        _fit(run)
    chosen = _choose(run, fuse)
    _infer(run, chosen, fuse, compare)
    report = _report(run, plan)
    if compare:
        _evaluate(run, report)
    return AdaptResult(fused=run.fused, report=report, adapter=run.adapter,
                       decomposition=run.dec, direct=run.direct, extras=run.extras(chosen))


@dataclass
class _Run:
    """One run of :func:`adapt_scene`, filled stage by stage: what the later stages and the
    report read.

    Attributes:
        scene, cfg, rt, clock, progress: The run's scene, settings, runtime, stage timer and
            progress-bar switch.
        model: The working copy of the network (the adapter attaches to it).
        digest: sha256 of the caller's model's tensors (:func:`tta.engine.reuse.state_digest`).
        inputs: The *prepare* stage's result.
        use_direct: Whether the *decide* stage chose the direct network.
        split: Whether training ran on cached interface features (frozen extractor, additive
            tail); the decision then scores both candidates from one extractor pass.
        patches, dec, adapter, source: The later stages' results (``source`` is the direct
            network: a copy of ``model`` taken before the adapter attaches, when deciding).
        calibration, loss, decision, inference: What the report shows of them.
        direct, fused: The direct-transfer fusion (when comparing) and the product, DN.
        both: Both candidates' whole-scene fusions ``(2C, H, W)`` (direct, adapted;
            normalised), when the decision scored windows cut from them.
        pair: Both candidates from one extractor pass (:func:`_paired_fn`), when the
            decision built it.
    """

    scene: SceneLike
    cfg: AdaptConfig
    rt: Runtime
    clock: _Clock
    model: nn.Module
    digest: str
    progress: bool
    inputs: Inputs
    use_direct: bool = False
    split: bool = False
    patches: Patches | None = None
    dec: Decomposition | None = None
    adapter: AdapterLike | None = None
    source: nn.Module | None = None
    calibration: dict[str, Any] | None = None
    loss: LossReport = field(default_factory=LossReport)
    decision: Decision | None = None
    inference: InferenceInfo | None = None
    direct: np.ndarray | None = None
    fused: np.ndarray | None = None
    both: np.ndarray | None = None
    pair: Any = None

    @property
    def ratio(self) -> int:
        return int(self.scene.ratio)

    @property
    def n_bands(self) -> int:
        return self.scene.n_bands

    @property
    def device(self) -> torch.device:
        return self.rt.device

    def extras(self, chosen: Any) -> dict[str, Any]:
        """What fuses any window of the scene as the run did (see :func:`adapt_scene`)."""
        return {"fuse_fn": chosen, "divisor": self.inputs.harmony.divisor,
                "gain": self.inputs.harmony.gain, "scale": self.inputs.scale,
                "overlap": self.inference.overlap, "margin": self.inference.margin}


def _start(model: nn.Module, scene: SceneLike, cfg: AdaptConfig, device: str | torch.device,
           forward_fn: ForwardFn, progress: bool) -> _Run:
    """Device, band check, runtime, the radiometric level, the model's digest, its working
    copy (the caller's model is never modified) and the *prepare* stage."""
    from tta.device import resolve_device
    from tta.engine.radiometry import level_gain
    from tta.engine.reuse import state_digest

    dev = resolve_device(device)
    clock = _Clock(dev)
    n_bands = scene.n_bands
    model_bands = getattr(model, "n_bands", n_bands)
    if model_bands != n_bands:
        raise InputError(f"model has {model_bands} bands but {scene.source} has {n_bands}; "
                         "use a model trained on a sensor with the same bands")
    rt = Runtime(dev, cfg.amp and dev.type == "cuda", forward_fn)
    if rt.use_amp:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    harmony = level_gain(scene.pan, model_max_value(model, scene.max_value),
                         source_level=getattr(getattr(model, "weights_record", None),
                                              "pan_level", None), nodata=scene.nodata)
    digest = state_digest(model)
    # Work on a copy: the caller's model is never modified (the adapter attaches to the copy,
    # reachable as result.adapter.decomposition.model).
    work = copy.deepcopy(model).to(dev).eval()
    with clock.stage("prepare"):
        inputs = _prepare(scene, work, cfg, harmony, rt)
    return _Run(scene, cfg, rt, clock, work, digest, progress, inputs)


@contextmanager
def _seeded(seed: int):
    """Torch's global generator seeded with ``seed`` inside, restored after."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def _select(run: _Run, interface: str | None, compare: bool) -> None:
    """The *sample* and *decompose* stages, and the direct-transfer fusion when comparing
    without a decision (the working copy is adapted in place then; with a decision the
    direct network is kept and :func:`_infer` fuses it, with the adapted one when both come
    from one extractor pass)."""
    cfg, clock = run.cfg, run.clock
    with clock.stage("sample"):
        run.patches = _sample(run.scene, run.inputs, cfg, run.device)
    with clock.stage("decompose"):
        run.dec = decompose(run.model, n_bands=run.n_bands, ratio=run.ratio,
                            interface=interface, forward_fn=run.rt.forward_fn,
                            probe=tuple(t[:1] for t in run.patches.triple))
    if compare and not cfg.decide:
        with clock.stage("direct_infer"):
            run.direct = _fuse(partial(run.rt.run, run.model), run.inputs, cfg, run.n_bands,
                               run.ratio, run.device, run.progress)[0]


def _fit(run: _Run) -> None:
    """The *cache*, *calibrate* and *train* stages: the adapter attached and trained."""
    from adapters import create_adapter
    from tta.losses import PhysicsLoss

    cfg, clock, dec = run.cfg, run.clock, run.dec
    adapter = create_adapter(cfg.adapter, **cfg.adapter_options)
    run.source = copy.deepcopy(run.model) if cfg.decide else run.model  # the direct network
    split = run.split = not adapter.trains_extractor and dec.additive
    loss_fn = PhysicsLoss.from_sensor(run.scene.sensor, weights=cfg.loss_weights,
                                      spatial_kind=cfg.spatial_loss).to(run.device)
    with clock.stage("cache"):
        data = _cache(dec, run.patches, run.inputs, loss_fn, cfg, run.ratio, split)
    adapter.attach(dec)
    run.adapter = adapter
    if adapter.calibrates:
        with clock.stage("calibrate"):
            run.calibration = adapter.calibrate(
                partial(_probe_loss, dec, loss_fn, data, run.inputs.phase),
                cfg.calibration_batches)
    params = adapter.trainable_parameters()
    if params and cfg.steps > 0:
        with clock.stage("train"):
            run.loss = _train(dec, adapter, params, loss_fn, cfg, data, run.inputs.phase,
                              run.rt, run.progress)


def _choose(run: _Run, fuse: bool) -> Any:
    """The *decide* stage: the network that fuses (adapted, or direct when adapting would
    harm; ``run.use_direct`` says which).

    When both candidates come from one extractor pass and the check windows are the whole
    scene (:func:`tta.engine.decision.windows_cover`: scenes up to 16 windows of 128²), the
    scene is fused once by both (the *infer* stage, :func:`_fuse_both`) and the full-resolution
    windows are cut from those products instead of fused again on their own (without
    ``fuse`` too, so that a run that fuses later, by blocks, decides alike)."""
    run_adapted = partial(run_adapted_fn, run.rt, run.adapter, run.model)
    run_direct = partial(run.rt.run, run.source)
    run.model.eval()
    loss, cfg = run.loss, run.cfg
    if cfg.decide and run.calibration is None and (not loss.curve or loss.diverged):
        from tta.engine.decision import unchanged

        run.decision = unchanged(loss.diverged_at_step, cfg.decision_tolerance)
    elif cfg.decide:
        from tta.engine.decision import windows_cover

        pair = run.pair = (_paired_fn(run.dec, run.source, run.adapter, run.rt)
                           if run.split else None)
        if pair is not None and windows_cover(*run.inputs.pan.shape[-2:], run.ratio):
            # also without ``fuse``: the decision is then the one a fused run makes (the
            # streaming path adapts on the scene this way and fuses it by blocks)
            with run.clock.stage("infer" if fuse else "decide"):
                run.both, run.inference = _fuse_both(pair, run)
        with run.clock.stage("decide"):
            run.decision = _decide(run_direct, run_adapted, run.inputs, run.scene.sensor,
                                   run.ratio, cfg, pair, run.both)
    run.use_direct = run.decision is not None and run.decision.choice == "direct"
    return run_direct if run.use_direct else run_adapted


def _infer(run: _Run, chosen: Any, fuse: bool, compare: bool = False) -> None:
    """The *infer* stage: the chosen network's tiling and (``fuse``) whole-scene fusion, in
    DN; when comparing, the direct fusion too: cut from both candidates' fusions when they
    come from one extractor pass (one tiled pass for the two), else fused on its own
    (*direct_infer*) unless the direct network was chosen."""
    cfg, inputs, dev, c = run.cfg, run.inputs, run.device, run.n_bands
    direct_fn = partial(run.rt.run, run.source)
    with run.clock.stage("infer"):
        if (compare and fuse and run.direct is None and run.both is None
                and run.pair is not None):
            run.both, run.inference = _fuse_both(run.pair, run)
        if not fuse:
            fused, run.inference = None, _tiles(chosen, inputs, cfg, c, run.ratio, dev)
        elif run.use_direct and run.direct is not None:
            fused = run.direct.copy()
            run.inference = _tiles(chosen, inputs, cfg, c, run.ratio, dev)
        elif run.both is not None:  # fused by both candidates already (see _choose)
            fused = np.ascontiguousarray(run.both[:c] if run.use_direct else run.both[c:])
            if compare and run.direct is None:
                run.direct = run.both[:c] if not run.use_direct else fused.copy()
        else:
            fused, run.inference = _fuse(chosen, inputs, cfg, c, run.ratio, dev, run.progress)
    if compare and run.direct is None:
        if run.use_direct and fused is not None:
            run.direct = fused.copy()
        else:
            with run.clock.stage("direct_infer"):
                run.direct = _fuse(direct_fn, inputs, cfg, c, run.ratio, dev,
                                   run.progress)[0]
    run.both = None
    run.fused = None if fused is None else _to_dn(fused, inputs.scale, run.scene.nodata)
    if run.direct is not None:
        run.direct = _to_dn(run.direct, inputs.scale, run.scene.nodata)


def _evaluate(run: _Run, report: AdaptReport) -> None:
    """The comparison: FR (and RR with ``gt``) indexes of the direct and adapted products."""
    from tta.evaluation import evaluate

    scene = run.scene
    with run.clock.stage("evaluate"):
        report.metrics = {
            "direct": evaluate(scene, run.direct, "both" if scene.is_reduced else "fr",
                               run.device),
            "adapted": evaluate(scene, run.fused, "both" if scene.is_reduced else "fr",
                                run.device),
        }
    report.timings["evaluate"] = run.clock.times["evaluate"]


def _adapt_split(model: nn.Module, scene: SceneLike, plan: BandPlan, cfg: AdaptConfig, *,
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
    report.scene = SceneInfo(scene.source, scene.sensor.name, list(scene.shape), scene.ratio,
                             scene.max_value)
    report.bands = plan.to_dict(cfg.other_bands)
    report.timings["other_bands"] = t_other
    report.timings["adapt_and_infer"] += t_other
    if compare:
        from tta.evaluation import evaluate

        protocol = "both" if scene.is_reduced else "fr"
        report.metrics = {"direct": evaluate(scene, direct, protocol, kw.get("device")),
                          "adapted": evaluate(scene, fused, protocol, kw.get("device"))}
    return AdaptResult(fused=fused, report=report, adapter=res.adapter,
                       decomposition=res.decomposition, direct=direct,
                       extras={**res.extras, "band_plan": plan})


def _tiles(fn: Any, inputs: Inputs, cfg: AdaptConfig, n_bands: int, ratio: int,
           dev: torch.device) -> InferenceInfo:
    """The tiling's policy (:func:`tta.engine.tiling.fit_tiles`) for ``fn`` on the scene."""
    tile, overlap, margin = fit_tiles(fn, *inputs.pan.shape[-2:], cfg.tile, cfg.overlap,
                                      n_bands, ratio, dev)
    return InferenceInfo(tile, cfg.tile, overlap, margin)


def _fuse(fn: Any, inputs: Inputs, cfg: AdaptConfig, n_bands: int, ratio: int,
          dev: torch.device, progress: bool) -> tuple[np.ndarray, InferenceInfo]:
    """Whole-scene tiled fusion by ``fn`` (normalised units) with the tiling's policy;
    returns the fusion and its tiles."""
    from tta.engine.tiling import tiled_fuse

    t = _tiles(fn, inputs, cfg, n_bands, ratio, dev)
    fused = tiled_fuse(fn, inputs.ms[0], inputs.pan[0, 0], inputs.lms[0], ratio=ratio,
                       tile=t.tile, overlap=t.overlap, margin=t.margin,
                       batch_size=cfg.inference_batch, device=dev, progress=progress)
    return fused, t


def _fuse_both(pair: Any, run: _Run) -> tuple[np.ndarray, InferenceInfo]:
    """Both candidates' whole-scene fusions ``(2C, H, W)`` (direct bands first, normalised)
    from one tiled pass of ``pair`` (:func:`_paired_fn`), tiled for the pair's receptive field
    (the adapted network's: its tailor only widens the direct one's)."""
    from tta.engine.tiling import tiled_fuse

    def both(ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        return torch.cat(pair(ms, pan, lms), dim=1)

    cfg, inputs, c = run.cfg, run.inputs, run.n_bands
    tile, overlap, margin = fit_tiles(both, *inputs.pan.shape[-2:], cfg.tile, cfg.overlap, c,
                                      run.ratio, run.device)
    fused = tiled_fuse(both, inputs.ms[0], inputs.pan[0, 0], inputs.lms[0], ratio=run.ratio,
                       tile=tile, overlap=overlap, margin=margin,
                       batch_size=cfg.inference_batch, device=run.device,
                       progress=run.progress, out_bands=2 * c)
    return fused, InferenceInfo(tile, cfg.tile, overlap, margin)


def _to_dn(fused: np.ndarray, scale: float, nodata: np.ndarray | None) -> np.ndarray:
    """Normalised units to DN in place; nodata pixels set to 0."""
    fused *= scale
    if nodata is not None:
        fused[:, nodata] = 0
    return fused


def _probe_loss(dec: Decomposition, loss_fn: PhysicsLoss, data: TrainData,
                phase: Tensor | None) -> Tensor:
    """The loss of the attached model on the training patches (calibration probe)."""
    p = data.patches
    out = dec.forward(*p.triple)
    return loss_fn(out, p.ms, p.pan, p.lms, data.cache.reference, phase=phase,
                   rho_max=data.rho_max)[0]


def _harmonise(h: Harmonisation, model: nn.Module, forward_fn: ForwardFn,
               reduced: tuple[Tensor, ...], ratio: int, seed: int) -> Harmonisation:
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


def _decide(run_direct: Any, run_adapted: Any, inputs: Inputs, sensor: Any, ratio: int,
            cfg: AdaptConfig, pair: Any = None, both: np.ndarray | None = None) -> Decision:
    """:mod:`tta.engine.decision` on check windows of the scene and of its degraded copy.

    ``pair(ms, pan, lms) -> (direct, adapted)``, when given, fuses a batch with both candidates
    at once (one feature-extractor pass, :func:`_paired_fn`); else each candidate runs alone.
    ``both``, when given, holds both candidates' whole-scene fusions (direct bands first):
    the full-resolution windows are cut from them.
    """
    from tta.engine.decision import (
        check_windows,
        cut_windows,
        decide,
        fuse_pair_batched,
        score_candidate,
        score_outputs,
    )
    from tta.engine.reduced import reduced_pairs

    reduced = inputs.reduced
    fr = check_windows(*inputs.triple, ratio, seed=cfg.seed)
    rr = reduced_pairs(reduced, ratio, 128, 16, seed=cfg.seed) if reduced is not None else None
    kw = {"gains": tuple(sensor.mtf_ms), "ratio": ratio, "dn": inputs.scale}
    windows = {"fr": int(fr[0].shape[0]), "fr_side": int(fr[1].shape[-1]),
               "rr": len(rr) if rr is not None else 0,
               "rr_side": rr.patch if rr is not None else None}
    if pair is None:
        scores = [score_candidate(run, fr, rr, **kw) for run in (run_direct, run_adapted)]
    else:
        if both is None:
            out_fr = fuse_pair_batched(pair, *fr)
        else:
            scene = torch.from_numpy(both)[None]
            c = scene.shape[1] // 2
            out_fr = tuple(cut_windows(part, ratio, seed=cfg.seed).to(fr[0].device)
                           for part in (scene[:, :c], scene[:, c:]))
        out_rr = (None, None) if rr is None else fuse_pair_batched(pair, rr.ms, rr.pan, rr.lms)
        scores = [score_outputs(out_fr[i], out_rr[i], fr, rr, **kw) for i in (0, 1)]
    return decide(*scores, tolerance=cfg.decision_tolerance, windows=windows)


def _paired_fn(dec: Decomposition, source: nn.Module, adapter: AdapterLike, rt: Runtime) -> Any:
    """Both candidates of an additive decomposition whose extractor was not trained, from one
    run of ``source``: direct = its output, adapted = the tailored mapper on the same
    interface features plus the same rest (the ``split`` training form)."""
    frozen = replace(dec, model=source)

    def both(ms: Tensor, pan: Tensor, lms: Tensor) -> tuple[Tensor, Tensor]:
        with rt.autocast():
            cache = frozen.cache(ms, pan, lms, split=True)
            adapter.set_condition(ms, pan, lms)
            return cache.reference.float(), cache.output(dec.mapper).float()

    return both


def _train(dec: Decomposition, adapter: AdapterLike, params: list[nn.Parameter],
           loss_fn: PhysicsLoss, cfg: AdaptConfig, data: TrainData, phase: Tensor | None,
           rt: Runtime, progress: bool) -> LossReport:
    """AdamW steps on the physics loss (plus the reduced-resolution term when ``data.rr``
    holds pairs); on divergence the parameters are reset to their initial values, i.e. the
    direct network, and the report says at which step."""
    from tqdm.auto import tqdm

    from tta.engine.optim import AdamW

    p, cache, pairs, rr_cache = data.patches, data.cache, data.rr, data.rr_cache
    split = cache.split
    rr_border = p.pan.shape[-1] // p.ms.shape[-1]  # one MS pixel of the degraded pairs
    own = {id(q) for q in adapter.parameters()}
    groups = [
        {"params": [q for q in params if id(q) in own], "weight_decay": cfg.weight_decay},
        {"params": [q for q in params if id(q) not in own], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    opt = AdamW(groups, lr=cfg.learning_rate, fused=rt.device.type == "cuda" or None)
    n = len(p)
    bs = n if cfg.batch_size is None else min(cfg.batch_size, n)
    gen = torch.Generator().manual_seed(cfg.seed)
    first: dict[str, float] = {}
    last_parts: dict[str, Tensor] = {}
    if not split:
        dec.model.train(False)  # keep eval-mode layers (no batch-norm statistics updates)
    else:  # the cached features are channels-last: so are the tailor's and mapper's weights
        for module in (adapter, dec.mapper):
            module.to(memory_format=torch.channels_last)

    def forward_loss(b_ms: Tensor, b_pan: Tensor, b_lms: Tensor, b_ref: Tensor,
                     b_feats: Tensor | None, b_rest: Tensor | None, b_rho: Tensor | None
                     ) -> tuple[Tensor, dict[str, Tensor]]:
        with rt.autocast():
            out = dec.mapper(b_feats) + b_rest if split else dec.forward(b_ms, b_pan, b_lms)
        # the loss reads a contiguous image (the channels-last features' output is converted
        # once; inductor also mis-strides the replicate-pad backward of a channels-last one)
        total, parts = loss_fn(out.float().contiguous(), b_ms, b_pan, b_lms, b_ref,
                               phase=phase, rho_max=b_rho)
        if pairs is not None:
            adapter.set_condition(pairs.ms, pairs.pan, pairs.lms)
            with rt.autocast():
                if split:
                    out_r = dec.mapper(rr_cache.features) + rr_cache.rest
                else:
                    out_r = dec.forward(pairs.ms, pairs.pan, pairs.lms)
            b = rr_border
            parts["reduced"] = (out_r.float() - pairs.ref)[..., b:-b, b:-b].abs().mean()
            total = total + cfg.rr_weight * parts["reduced"]
        return total, parts

    step_fn = forward_loss
    if cfg.compile is not None and split:  # shapes are fixed within a run: not dynamic
        # Only the cached-feature path (mapper + loss) is compiled: through a whole network,
        # torch 2.13's inductor fails on the loss's replication-pad backward (stride check).
        step_fn = torch.compile(forward_loss, mode=cfg.compile, dynamic=False)
    bar = tqdm(range(cfg.steps), desc="train", disable=not progress, leave=False)
    losses = []
    guard = DivergenceGuard(params)
    for step in bar:
        idx = (torch.randperm(n, generator=gen)[:bs].to(rt.device) if bs < n else None)

        def pick(t: Tensor | None, idx=idx) -> Tensor | None:
            return t if t is None or idx is None else t[idx]

        b_ms, b_pan, b_lms = pick(p.ms), pick(p.pan), pick(p.lms)
        b = cache.select(idx)
        adapter.set_condition(b_ms, b_pan, b_lms)
        loss, parts = step_fn(b_ms, b_pan, b_lms, b.reference, b.features, b.rest,
                              pick(data.rho_max))
        opt.zero_grad()
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
    return LossReport(curve, first, last, guard.step if diverged else None)


def _device_name(dev: torch.device) -> str:
    return (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")


def _report(run: _Run, plan: BandPlan) -> AdaptReport:
    """The run's :class:`~tta.engine.report.AdaptReport` from its stages' results."""
    from tta import __version__

    model, scene, inputs, adapter = run.model, run.scene, run.inputs, run.adapter
    record = getattr(model, "weights_record", None)
    summary = run.dec.summary()
    summary.pop("candidates", None)
    phase = inputs.phase
    return AdaptReport(
        tta_version=__version__,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        device=_device_name(run.device),
        model=ModelInfo(cls=type(model).__name__,
                        arch=getattr(model, "arch", None) or type(model).__name__,
                        weights=getattr(record, "file", None),
                        weights_sensor=getattr(record, "sensor", None),
                        parameters=sum(q.numel() for q in model.parameters()),
                        state_sha256=run.digest,
                        weights_sha256=getattr(record, "sha256", None)),
        scene=SceneInfo(scene.source, scene.sensor.name, list(scene.shape), scene.ratio,
                        scene.max_value),
        config=run.cfg.to_dict(),
        decomposition=summary,
        adapter=AdapterInfo(adapter.kind, adapter.config(), adapter.num_trainable(),
                            run.calibration),
        sampling=run.patches.info,
        radiometry=inputs.harmony.to_dict(),
        coregistration_phase=phase.tolist() if phase is not None else None,
        loss=run.loss,
        inference=run.inference,
        timings=run.clock.timings(),
        decision=run.decision.to_dict() if run.decision is not None else None,
        bands=plan.to_dict(run.cfg.other_bands),
    )
