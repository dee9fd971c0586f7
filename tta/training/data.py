"""Training data: Wald reduced-resolution pairs, a held-out split, and random augmented patches.

Sources. Every ``--data`` spec (any scene spec of :mod:`tta.io`, an h5 file giving all its
samples) is read through :func:`tta.io.iter_scenes`. A scene with a reference (``gt``, the
``*_rr`` files) is used as it is; a full-resolution scene is degraded by the Wald protocol
(:func:`tta.physics.degrade_scene`: MTF-matched MS low-pass and decimation, bicubic PAN
reduction, ``gt`` = the original MS). A spec may end in ``@DY,DX`` to correct a known integer
PAN/MS misregistration first: the PAN content is displaced by ``(DY, DX)`` PAN pixels relative
to the MS (positive = down/right, the convention of the shared data README), and the pair is
cropped so that ``pan[y + DY, x + DX]`` lines up with the MS (e.g. ``wv3_shanghai_fr.h5@3,0``
for the Shanghai tile whose PAN sits ~2.75 px low).

Sensor. Files that name their sensor must name the one being trained for (a WV2 scene cannot
go into a WV3 model); files that do not are read as ``sensor``.

Validation split (documented in every model card):

* with ``val_data`` specs, those whole scenes are held out and every ``data`` scene trains;
* otherwise the bottom ``val_fraction`` of the rows of each scene (rounded down to a multiple of
  the ratio, at least 16 PAN rows) is held out, provided the rows left still hold one training
  patch; smaller scenes go whole to training (so tiny patch files never give validation).

The two parts become separate images before anything is computed on them (``lms`` is
interpolated within each), so no training patch sees a held-out pixel. Validation images are
fused whole and scored with :func:`tta.metrics.rr_metrics` without the toolbox's 21-pixel
border cut (the strips are only a few dozen rows tall).

Patches. Square ``patch`` x ``patch`` PAN-grid crops at multiples of the ratio (so the MS crop
is exact), from a scene chosen with probability proportional to its number of crop positions;
positions whose window holds nodata are never drawn. Augmentation: a random rot90 (k = 0..3)
and horizontal flip, applied alike to ``ms``, ``pan``, ``lms``, ``gt`` (and the distillation
target). A flip moves the MS-pixel/PAN-block phase by one PAN pixel; the networks trained here
read ``pan`` and ``lms`` only. Values are DN divided by each scene's ``max_value``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tta.errors import InputError, SensorError

__all__ = [
    "DataSource",
    "LoadedData",
    "Pair",
    "PatchSampler",
    "held_out_pairs",
    "file_digests",
    "load_pairs",
    "parse_data_spec",
    "resolve_spec",
    "shift_pan",
    "split_rows",
    "to_pair",
]

MIN_VAL_ROWS = 16


@dataclass(frozen=True)
class DataSource:
    """A ``--data`` entry: scene spec and optional PAN shift ``(dy, dx)`` in PAN pixels."""

    spec: str
    pan_shift: tuple[int, int] | None = None

    @property
    def text(self) -> str:
        if self.pan_shift is None:
            return self.spec
        return f"{self.spec}@{self.pan_shift[0]},{self.pan_shift[1]}"


def resolve_spec(text: str, root: str | Path | None) -> str:
    """``text`` with every relative file of the spec joined to ``root`` (``@``/``#`` kept)."""
    if root is None:
        return str(text)
    body, sep, shift = str(text).rpartition("@")
    if not sep:
        body, shift = str(text), ""
    parts = [p if Path(p).is_absolute() else str(Path(root) / p) for p in body.split("+")]
    return "+".join(parts) + (f"@{shift}" if sep else "")


def parse_data_spec(text: str) -> DataSource:
    """Parse ``SPEC`` or ``SPEC@DY,DX`` (see the module docstring).

    Raises:
        InputError: A malformed shift.
    """
    spec, sep, shift = str(text).rpartition("@")
    if not sep:
        return DataSource(str(text))
    parts = shift.split(",")
    try:
        dy, dx = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"{text}: the PAN shift after '@' must be two integers DY,DX "
                         "(PAN pixels, positive = PAN content displaced down/right)") from None
    return DataSource(spec, (dy, dx))


@dataclass
class Pair:
    """One reduced-resolution image as tensors divided by ``max_value``.

    Attributes:
        ms: ``(C, h, w)``; pan: ``(1, H, W)``; lms: ``(C, H, W)`` (23-tap interpolation of
            ``ms``); gt: ``(C, H, W)``.
        source: Where it comes from (file, sample, rows).
        ratio: PAN/MS ratio; max_value: the DN divisor.
        valid: ``(H, W)`` bool, False on nodata, or None (all valid).
        target: Optional extra target ``(C, H, W)`` (the teacher's output when distilling).
    """

    ms: Tensor
    pan: Tensor
    lms: Tensor
    gt: Tensor
    source: str
    ratio: int
    max_value: float
    valid: Tensor | None = None
    target: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pan.shape[-2]), int(self.pan.shape[-1])

    def batch(self) -> dict[str, Tensor]:
        """The whole image as a batch of one."""
        out = {"ms": self.ms[None], "pan": self.pan[None], "lms": self.lms[None],
               "gt": self.gt[None]}
        if self.target is not None:
            out["target"] = self.target[None]
        return out


@dataclass
class LoadedData:
    """Training and validation pairs plus the provenance recorded in the model card."""

    train: list[Pair]
    val: list[Pair]
    sensor: Any
    records: list[dict[str, Any]] = field(default_factory=list)
    split: str = ""


# ----------------------------------------------------------------------------- scenes
def shift_pan(scene: Any, dy: int, dx: int) -> Any:
    """Crop a scene so that PAN content displaced by ``(dy, dx)`` PAN px lines up with the MS.

    Keeps MS rows/columns ``i0..i0+k`` and PAN rows ``r*i0 + dy ..`` (likewise for columns),
    the largest ``k`` that fits; ``meta["pan_shift"]`` records the correction.

    Raises:
        InputError: Nothing is left after the crop.
    """
    r = int(scene.ratio)
    c, h, w = scene.ms.shape
    big_h, big_w = scene.pan.shape

    def axis(d: int, n_ms: int, n_pan: int) -> tuple[int, int, int]:
        i0 = 0 if d >= 0 else -(d // r)  # ceil(-d / r)
        p0 = r * i0 + d
        k = min(n_ms - i0, (n_pan - p0) // r)
        return i0, p0, k

    iy, py, ky = axis(int(dy), h, big_h)
    ix, px, kx = axis(int(dx), w, big_w)
    if ky < 1 or kx < 1:
        raise InputError(f"{scene.source}: PAN shift ({dy}, {dx}) leaves no overlap")
    nodata = None
    if scene.nodata is not None:
        nodata = scene.nodata[py:py + r * ky, px:px + r * kx]
    meta = {**scene.meta, "pan_shift": [int(dy), int(dx)]}
    return scene.with_(ms=scene.ms[:, iy:iy + ky, ix:ix + kx],
                       pan=scene.pan[py:py + r * ky, px:px + r * kx],
                       gt=None if scene.gt is None else scene.gt[:, py:py + r * ky,
                                                                  px:px + r * kx],
                       nodata=nodata, transform=None, meta=meta,
                       source=f"{scene.source} (PAN shifted by {dy},{dx})")


def split_rows(scene: Any, val_fraction: float, patch: int) -> tuple[Any, Any | None]:
    """Split a reduced-resolution scene into top (training) and bottom (validation) rows.

    Returns ``(train, val)``; ``val`` is None when the scene is too small to split (see the
    module docstring).
    """
    r = int(scene.ratio)
    big_h = scene.pan.shape[0]
    val_rows = int(val_fraction * big_h) // r * r
    if val_fraction <= 0 or val_rows < MIN_VAL_ROWS or big_h - val_rows < patch:
        return scene, None
    cut = big_h - val_rows

    def part(a: int, b: int, label: str) -> Any:
        nodata = None if scene.nodata is None else scene.nodata[a:b]
        if nodata is not None and not nodata.any():
            nodata = None
        return scene.with_(ms=scene.ms[:, a // r:b // r], pan=scene.pan[a:b],
                           gt=scene.gt[:, a:b], nodata=nodata, transform=None,
                           source=f"{scene.source} rows {a}:{b} ({label})")

    return part(0, cut, "train"), part(cut, big_h, "held out")


def to_pair(scene: Any) -> Pair:
    """Tensors of a reduced-resolution scene divided by its max value (``lms`` by 23-tap)."""
    from tta.physics import interp23tap

    mv = float(scene.max_value)
    ms = torch.from_numpy(scene.ms).to(torch.float64)[None] / mv
    lms = interp23tap(ms, int(scene.ratio))[0].to(torch.float32)
    valid = None
    if scene.nodata is not None and scene.nodata.any():
        valid = torch.from_numpy(~scene.nodata)
    return Pair(ms=ms[0].to(torch.float32),
                pan=torch.from_numpy(scene.pan)[None].to(torch.float32) / mv,
                lms=lms,
                gt=torch.from_numpy(scene.gt).to(torch.float32) / mv,
                source=scene.source, ratio=int(scene.ratio), max_value=mv, valid=valid)


def _read(source: DataSource, sensor: Any) -> list[Any]:
    """Scenes of one spec, checked against the training sensor."""
    from tta.io import iter_scenes

    try:
        scenes = list(iter_scenes(source.spec))
        named = True
    except (InputError, SensorError) as exc:
        msg = str(exc)
        unnamed = "not name its sensor" in msg or "not name their sensor" in msg
        if sensor is None or not unnamed:
            raise
        scenes = list(iter_scenes(source.spec, sensor=sensor))
        named = False
    if sensor is not None and named:
        for s in scenes:
            if s.sensor.name != sensor.name:
                raise InputError(f"{s.source}: is {s.sensor.name} data; a {sensor.name} model "
                                 f"must be trained on {sensor.name} scenes only")
    return scenes


def _record(source: DataSource, scene: Any, used: str) -> dict[str, Any]:
    attrs = scene.meta.get("attrs", {}) if isinstance(scene.meta, dict) else {}
    return {
        "file": source.spec,
        "sample": scene.meta.get("index") if isinstance(scene.meta, dict) else None,
        "sensor": scene.sensor.name,
        "resolution": "reduced" if scene.is_reduced else "full (Wald-degraded for training)",
        "pan_shift": list(source.pan_shift) if source.pan_shift else None,
        "ms_shape": list(scene.ms.shape),
        "pan_shape": list(scene.pan.shape),
        "licence": attrs.get("license") or attrs.get("licence"),
        "origin": attrs.get("source"),
        "used_as": used,
    }


def load_pairs(data: list[str], sensor: Any = None, *, val_data: list[str] = (),
               val_fraction: float = 0.2, patch: int = 64,
               root: str | Path | None = None) -> LoadedData:
    """Read, degrade and split the training data (see the module docstring).

    Args:
        data: Scene specs (optionally ``SPEC@DY,DX``) to train on.
        sensor: Training sensor (name or preset); default the data's own (must be one).
        val_data: Whole scenes to hold out instead of the row split.
        val_fraction: Share of rows held out per scene when ``val_data`` is empty.
        patch: Training patch side (scenes whose training part cannot hold it are errors).
        root: Folder that relative specs are relative to (recorded as given).

    Raises:
        InputError: Unreadable data, mixed or wrong sensors, scenes smaller than a patch.
    """
    from tta.physics import degrade_scene
    from tta.sensors import get_sensor

    if not data:
        raise InputError("no training data: give at least one --data SPEC")
    wanted = get_sensor(sensor) if sensor is not None else None
    train_scenes: list[Any] = []
    val_scenes: list[Any] = []
    records: list[dict[str, Any]] = []
    for is_val, specs in ((False, list(data)), (True, list(val_data))):
        for text in specs:
            src = parse_data_spec(text)
            for scene in _read(parse_data_spec(resolve_spec(text, root)), wanted):
                if wanted is None:
                    wanted = scene.sensor
                elif scene.sensor.name != wanted.name:
                    raise InputError(f"{scene.source}: is {scene.sensor.name} data but the "
                                     f"other data are {wanted.name}; train one sensor at a time")
                if src.pan_shift is not None:
                    scene = shift_pan(scene, *src.pan_shift)
                rr = scene if scene.is_reduced else degrade_scene(scene)
                if is_val or val_data:
                    (val_scenes if is_val else train_scenes).append(rr)
                    records.append(_record(src, scene, "held out" if is_val else "train"))
                    continue
                tr, va = split_rows(rr, val_fraction, patch)
                train_scenes.append(tr)
                used = "train (too small to split)"
                if va is not None:
                    val_scenes.append(va)
                    used = (f"train rows 0:{tr.pan.shape[0]}, held out rows "
                            f"{tr.pan.shape[0]}:{rr.pan.shape[0]} (PAN grid of the RR pair)")
                records.append(_record(src, scene, used))
    for s in train_scenes:
        if min(s.pan.shape) < patch:
            raise InputError(f"{s.source}: {s.pan.shape[0]}x{s.pan.shape[1]} (reduced "
                             f"resolution) is smaller than --patch {patch}; use a smaller patch")
    split = (f"whole scenes held out: {', '.join(val_data)}" if val_data else
             f"bottom {val_fraction:g} of the rows of each scene (multiple of the ratio, >= "
             f"{MIN_VAL_ROWS} rows, only where the rest holds a {patch}-px patch)")
    return LoadedData(train=[to_pair(s) for s in train_scenes],
                      val=[to_pair(s) for s in val_scenes], sensor=wanted, records=records,
                      split=split)


def held_out_pairs(config: Mapping[str, Any], root: str | Path | None = None) -> list[Pair]:
    """The held-out pairs of a finished training run, re-read from its recorded config.

    Args:
        config: The ``config`` of the run's log (``<name>.log.json`` beside the card): its
            ``data``, ``val_data``, ``val_fraction``, ``patch`` and ``sensor`` are used, so
            the rows are exactly the ones the run never trained on.
        root: Folder the relative data specs are relative to (default the recorded
            ``data_root``).

    Raises:
        InputError: A config without data, data that cannot be read.
    """
    try:
        data = list(config["data"])
        val_data = list(config.get("val_data") or ())
        fraction, patch = float(config["val_fraction"]), int(config["patch"])
    except (KeyError, TypeError, ValueError):
        raise InputError("a training log's config needs data, val_fraction and patch") from None
    root = root if root is not None else config.get("data_root")
    return load_pairs(data, config.get("sensor"), val_data=val_data, val_fraction=fraction,
                      patch=patch, root=root).val


# ----------------------------------------------------------------------------- patches
class PatchSampler:
    """Random augmented patches from training pairs (see the module docstring).

    Args:
        pairs: Training images (all with the same ratio and bands).
        patch: PAN-grid side, a multiple of the ratio.
        batch: Patches per batch.
        augment: Random rot90 and flips.
        seed: Seed of the sampler's own CPU generator.

    Raises:
        InputError: ``patch`` not a multiple of the ratio, or no valid window anywhere.
    """

    def __init__(self, pairs: list[Pair], patch: int, batch: int, *, augment: bool = True,
                 seed: int = 0) -> None:
        if not pairs:
            raise InputError("no training images")
        r = pairs[0].ratio
        if patch % r:
            raise InputError(f"--patch {patch} must be a multiple of the ratio {r}")
        self.pairs, self.patch, self.batch, self.augment, self.ratio = (pairs, patch, batch,
                                                                        augment, r)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.positions = [self._positions(p) for p in pairs]
        counts = torch.tensor([float(len(p)) for p in self.positions])
        if counts.sum() == 0:
            raise InputError(f"no {patch}x{patch} window free of nodata in the training data")
        self.weights = counts / counts.sum()

    def _positions(self, pair: Pair) -> Tensor:
        """Top-left corners ``(N, 2)`` (multiples of the ratio) of nodata-free windows."""
        big_h, big_w = pair.shape
        p, r = self.patch, self.ratio
        ys = torch.arange(0, big_h - p + 1, r)
        xs = torch.arange(0, big_w - p + 1, r)
        grid = torch.cartesian_prod(ys, xs)
        if pair.valid is None or grid.numel() == 0:
            return grid
        bad = (~pair.valid).to(torch.float64)
        integral = torch.nn.functional.pad(bad.cumsum(0).cumsum(1), (1, 0, 1, 0))
        y, x = grid[:, 0], grid[:, 1]
        count = (integral[y + p, x + p] - integral[y, x + p] - integral[y + p, x]
                 + integral[y, x])
        return grid[count == 0]

    def sample(self) -> dict[str, Tensor]:
        """One batch: ``ms (B, C, p/r, p/r)``, ``pan (B, 1, p, p)``, ``lms``, ``gt`` (and
        ``target``) ``(B, C, p, p)``."""
        p, r = self.patch, self.ratio
        picks = torch.multinomial(self.weights, self.batch, replacement=True,
                                  generator=self.gen).tolist()
        out: dict[str, list[Tensor]] = {}
        for i in picks:
            pair = self.pairs[i]
            pos = self.positions[i]
            y, x = pos[int(torch.randint(len(pos), (1,), generator=self.gen))].tolist()
            crops = {"ms": pair.ms[:, y // r:(y + p) // r, x // r:(x + p) // r],
                     "pan": pair.pan[:, y:y + p, x:x + p],
                     "lms": pair.lms[:, y:y + p, x:x + p],
                     "gt": pair.gt[:, y:y + p, x:x + p]}
            if pair.target is not None:
                crops["target"] = pair.target[:, y:y + p, x:x + p]
            if self.augment:
                k = int(torch.randint(4, (1,), generator=self.gen))
                flip = bool(torch.randint(2, (1,), generator=self.gen))
                for key, t in crops.items():
                    t = torch.rot90(t, k, dims=(1, 2))
                    crops[key] = torch.flip(t, dims=(2,)) if flip else t
            for key, t in crops.items():
                out.setdefault(key, []).append(t)
        return {k: torch.stack(v) for k, v in out.items()}


def file_digests(spec: str) -> dict[str, str]:
    """sha256 of every file a scene spec names (``{path: digest}``)."""
    import hashlib

    from tta.io import parse_spec

    out = {}
    for path in parse_spec(parse_data_spec(spec).spec).files:
        h = hashlib.sha256()
        with Path(path).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[str(path)] = h.hexdigest()
    return out
