"""Adapt once, apply many: a saved adapter fuses other scenes of its sensor without
re-adapting.

:func:`save_adapted` writes the adapter state (:func:`adapters.save_adapter`, format
``tta-adapter/1``) with, in its ``meta["record"]``, what is needed to rebuild the run:
the model (spec, weights path, weights sha256 and the sha256 of its tensors), the interface,
the adapter kind and config, the sensor and band layouts (scene and network, and the classical
method of the other bands), the radiometric gain, the never-harm decision and the
adaptation config (inference tiling). Files written before this record existed still load
with :func:`adapters.load_adapter`; :func:`fuse_with_adapter` refuses them, saying why.

:func:`fuse_with_adapter` reproduces the inference of :func:`tta.engine.adapt_scene`
(same normalisation, gain, tiling and blending), so on the scene it was adapted to it gives
the adapted product. The radiometric gain policy is *fixed*: the divisor and gain chosen on
the adapted scene are applied to every scene (the adapter was trained at that level).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tta.errors import InputError

__all__ = ["adapter_record", "fuse_with_adapter", "read_adapter_file", "save_adapted",
           "state_digest"]

RECORD_VERSION = 1


def state_digest(model: nn.Module) -> str:
    """sha256 of a model's tensors (names, dtypes, shapes, bytes), whatever file they came
    from."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _as_path(value: str | Path | None) -> str | None:
    """A file argument made absolute (so another folder can rebuild the model); names stay."""
    if value is None:
        return None
    p = Path(value)
    return str(p.resolve()) if p.is_file() else str(value)


def adapter_record(report: dict[str, Any], *, model_spec: str | None = None,
                   weights: str | Path | None = None) -> dict[str, Any]:
    """The rebuild record of an adaptation run, from its report (see the module docstring)."""
    decision = report.get("decision") or {}
    diverged = bool(report.get("loss", {}).get("diverged"))
    radiometry = report.get("radiometry") or {}
    return {
        "version": RECORD_VERSION,
        "model": {"spec": _as_path(model_spec),
                  "weights": _as_path(weights),
                  "arch": report["model"]["arch"],
                  "weights_sha256": report["model"].get("weights_sha256"),
                  "state_sha256": report["model"]["state_sha256"]},
        "interface": report["decomposition"]["mapper"],
        "adapter": {"kind": report["adapter"]["kind"], "config": report["adapter"]["config"]},
        "sensor": report["scene"]["sensor"],
        "ratio": report["scene"]["ratio"],
        "bands": report["bands"],
        "radiometry": {"policy": "fixed", "divisor": float(radiometry["divisor"]),
                       "gain": float(radiometry["gain"])},
        "network": "direct" if decision.get("choice") == "direct" or diverged else "adapted",
        "config": report["config"],
        "adapted_on": report["scene"]["source"],
    }


def save_adapted(result: Any, path: str | Path, *, model_spec: str | None = None,
                 weights: str | Path | None = None, overwrite: bool = False,
                 meta: dict[str, Any] | None = None) -> Path:
    """Save ``result.adapter`` (an :class:`~tta.engine.AdaptResult`) with its rebuild record.

    ``model_spec``/``weights`` (as given to :func:`tta.resolve_model`) let
    :func:`fuse_with_adapter` rebuild the network alone; without them pass ``model=`` there.
    """
    from adapters import save_adapter

    record = adapter_record(result.report, model_spec=model_spec, weights=weights)
    extra = {"model": model_spec, "weights": None if weights is None else str(weights),
             **(meta or {}), "record": record}
    return save_adapter(result.adapter, path, overwrite=overwrite, meta=extra)


def read_adapter_file(path: str | Path) -> dict[str, Any]:
    """The payload of an adapter file, with its rebuild record checked to be present.

    Raises:
        InputError: Missing/unreadable file, another format, or no rebuild record.
    """
    from adapters import read_adapter_payload

    p = Path(path)
    payload = read_adapter_payload(p)
    record = (payload.get("meta") or {}).get("record")
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise InputError(f"{p}: this adapter file does not record its sensor, bands and "
                         "weights (saved by an older tta); adapt again with --save-adapter")
    return payload


def _check_scene(record: dict[str, Any], scene: Any, path: Path) -> None:
    from tta.sensors.bands import format_layout, same_layout

    bands = record["bands"]["scene"]
    own = list(scene.sensor.bands)
    if scene.sensor.name != record["sensor"]:
        raise InputError(f"{path}: adapter is for sensor {record['sensor']} "
                         f"({format_layout(bands)}), {scene.source} is {scene.sensor.name} "
                         f"({format_layout(own)}); adapt to this scene instead")
    if not same_layout(bands, own):
        raise InputError(f"{path}: adapter is for bands {format_layout(bands)} of "
                         f"{record['sensor']}, {scene.source} has {format_layout(own)}")
    if int(scene.ratio) != int(record["ratio"]):
        raise InputError(f"{path}: adapter is for ratio {record['ratio']}, {scene.source} has "
                         f"ratio {scene.ratio}")


def _load_model(record: dict[str, Any], weights: str | Path | None, path: Path) -> nn.Module:
    from tta.models import resolve_model

    spec = record["model"]["spec"]
    if spec is None:
        raise InputError(f"{path}: the adapter does not name its model; pass model= (API)")
    return resolve_model(spec, weights=weights if weights is not None
                         else record["model"]["weights"])


def fuse_with_adapter(scene: Any, adapter_path: str | Path, *, model: nn.Module | None = None,
                      weights: str | Path | None = None, device: str | torch.device = "auto",
                      progress: bool = False, forward_fn: Any = None
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Fuse ``scene`` with a network and the adapter saved by :func:`save_adapted`.

    Args:
        scene: A :class:`~tta.io.Scene` of the adapter's sensor and band layout.
        adapter_path: File written by :func:`save_adapted` (``tta adapt --save-adapter``).
        model: The source network; default: rebuilt from the record's model spec and
            weights path (``weights`` overrides that path).
        weights: Checkpoint path replacing the recorded one (its tensors must be the same).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        progress: Show a progress bar.
        forward_fn: Call convention of the model (default
            :func:`tta.decomposition.default_forward`).

    Returns:
        ``(fused, info)``: float32 DN ``(C, H, W)`` in the scene's band order, and what was
        applied (record, band plan, network used, timings).

    Raises:
        InputError: Another sensor, band layout or ratio than the adapter's, other weights
            (sha256 of the tensors), an adapter file without a record.
    """
    import time

    from adapters import load_adapter
    from tta.classical import fuse_scene
    from tta.decomposition import decompose, default_forward
    from tta.device import resolve_device
    from tta.engine.bands import assemble, plan_bands
    from tta.engine.config import AdaptConfig
    from tta.engine.runtime import Runtime, run_adapted_fn, to_tensor
    from tta.engine.tiling import fit_tiles, tiled_fuse
    from tta.physics import interp23tap

    path = Path(adapter_path)
    forward_fn = forward_fn or default_forward
    record = read_adapter_file(path)["meta"]["record"]
    _check_scene(record, scene, path)
    model = model if model is not None else _load_model(record, weights, path)
    digest = state_digest(model)
    if digest != record["model"]["state_sha256"]:
        raise InputError(f"{path}: adapter was trained on other weights (sha256 of the "
                         f"tensors {record['model']['state_sha256'][:12]}..., this model "
                         f"{digest[:12]}...)")
    plan = plan_bands(model, scene)
    known = {f.name for f in fields(AdaptConfig)}
    cfg = AdaptConfig(**{k: v for k, v in record["config"].items() if k in known})
    dev = resolve_device(device)
    t0 = time.perf_counter()
    part = plan.part(scene, plan.net_index) if plan.split else scene
    ratio = int(scene.ratio)
    divisor, gain = record["radiometry"]["divisor"], record["radiometry"]["gain"]
    net = copy.deepcopy(model).to(dev).eval()
    ms = to_tensor(part.ms, dev, divisor)[None]
    pan = to_tensor(part.pan, dev, divisor)[None, None]
    if gain != 1.0:
        ms, pan = ms * gain, pan * gain
    lms = interp23tap(ms, ratio)
    rt = Runtime(dev, cfg.amp and dev.type == "cuda", forward_fn)
    n_bands = part.n_bands
    fn = partial(rt.run, net)
    if record["network"] == "adapted":
        side = min(cfg.patch, *part.pan.shape)
        side -= side % ratio
        probe = (ms[..., :side // ratio, :side // ratio], pan[..., :side, :side],
                 lms[..., :side, :side])
        dec = decompose(net, n_bands=n_bands, ratio=ratio, interface=record["interface"],
                        forward_fn=forward_fn, probe=probe)
        adapter = load_adapter(path, dec)
        fn = partial(run_adapted_fn, rt, adapter, net)

    with torch.no_grad():
        tile, overlap, margin = fit_tiles(fn, *pan.shape[-2:], cfg.tile, cfg.overlap, n_bands,
                                          ratio, dev)  # as tta adapt
        fused = tiled_fuse(fn, ms[0], pan[0, 0], lms[0], ratio=ratio, tile=tile,
                           overlap=overlap, margin=margin, batch_size=cfg.inference_batch,
                           device=dev, progress=progress)
    fused *= divisor / gain
    if part.nodata is not None:
        fused[:, part.nodata] = 0
    method = record["bands"].get("other_method") or cfg.other_bands
    if plan.split:
        other = (fuse_scene(plan.part(scene, plan.other_index), method, device=dev)
                 if plan.other_index else None)
        fused = assemble(plan, scene.shape, fused, other)
    info = {"record": record, "bands": plan.to_dict(method), "network": record["network"],
            "device": str(dev), "seconds": time.perf_counter() - t0,
            "inference": {"tile": cfg.tile, "overlap": overlap, "margin": margin}}
    return fused, info
