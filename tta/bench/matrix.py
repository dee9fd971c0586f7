"""The benchmark matrix: source models × methods × samplers × seeds × target scenes, from YAML.

A matrix file (see ``tta/bench/matrices/*.yaml``)::

    name: cross_sensor
    data_root: ../shared/data          # scene files are relative to it (or absolute)
    weights_root: ../shared/weights    # weights files are relative to it (or absolute)
    steps: 100                         # AdaptConfig fields shared by every method
    seeds: [0, 1, 2]
    samplers: [swift]
    methods: [none, ft, cat, swift, mapper, full, zpnn]
    classical: [exp, gsa]
    sources:
      - {name: fusionnet-wv3, model: fusionnet, weights: dlpan/wv3/fusionnet.pth,
         trained_on: WV3, in_sensor: {WV2: dlpan/wv2/fusionnet.pth}}
    targets:
      - {name: wv2, file: wv2/wv2_grip_top_fr.h5, protocols: [rr, fr]}
    speed: {source: fusionnet-wv3, target: wv2, sizes: [512], repeats: 3, methods: [ft]}

Relative roots are taken from the working directory. A method is an adapter name, the
built-in recipe ``zpnn`` (:data:`BUILTIN_METHODS`), or a mapping ``{name, adapter, seeds, ...}``
of AdaptConfig fields; a method that sets ``sampler`` ignores the matrix's samplers, one that
sets ``seeds`` the matrix's seeds. ``none`` is
reported as ``direct``. A source only runs on targets with its band count; its ``in_sensor``
weights (per target sensor) give the upper reference row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from tta.engine.config import AdaptConfig
from tta.errors import InputError
from tta.training.data import resolve_spec

__all__ = [
    "BUILTIN_METHODS",
    "BenchMatrix",
    "Method",
    "Source",
    "SpeedSpec",
    "Target",
    "builtin_matrix",
    "load_matrix",
]

PROTOCOLS = ("rr", "fr")
MATRICES_DIR = Path(__file__).resolve().parent / "matrices"

#: Z-PNN target adaptation (Ciotola et al., TGRS 2022, and its published code): the whole
#: network fine-tuned on the whole target with L_spec + beta * L_struct (beta 0.36, its
#: WV2/WV3 value, for every target; no anchor), Adam at lr 1e-5 (WV2/WV3), 100 iterations
#: over the whole image. We feed the whole scene as its patch set every step (fraction 1);
#: Z-PNN keeps the lowest-loss weights, we keep the last ones. Nothing in it is random, so
#: one seed runs.
#:
#: lambda-PNN target adaptation (Ciotola et al., TGRS 2023, github.com/matciotola/Lambda-PNN
#: ``test.py``, ``tools/utils.py``): the whole network fine-tuned for 100 iterations with
#: ``alpha ERGAS + beta D_lambda,K`` of the reprojected output and ``gamma L_struct`` (the
#: Z-PNN structural term), its WorldView-2 settings (alpha 0.05, beta 1.0, gamma 6.0, Adam
#: lr 3.5e-5) for every target, on 16 patches chosen by k-means over patch descriptors (its
#: salient patches: k-means over MobileNet features, nearest patch to each centre). Ours: 128-px
#: patches instead of 256 (the smallest shared target has 160 PAN rows), AdamW without weight
#: decay on the network instead of Adam with an L2 of 1e-4.
#:
#: Neither peer uses our additions (reduced-resolution self-supervision, the never-harm
#: decision); both get the radiometric harmonisation, which is input handling.
_PEER = {"adapter": "full", "steps": 100, "weight_decay": 0.0, "spatial_loss": "zpnn",
         "seeds": [0], "rr_weight": 0.0, "decide": False}
BUILTIN_METHODS: dict[str, dict[str, Any]] = {
    "zpnn": {**_PEER, "lr": 1e-5, "fraction": 1.0, "min_patches": 1, "max_patches": 100_000,
             "sampler": "random", "loss_weights": {"spatial": 0.36, "anchor": 0.0}},
    "lambda-pnn": {**_PEER, "lr": 3.5e-5, "patch": 128, "fraction": 1.0, "min_patches": 1,
                   "max_patches": 16, "sampler": "kmeans",
                   "loss_weights": {"spectral": 0.0, "spatial": 6.0, "anchor": 0.0,
                                    "ergas": 0.05, "q2n": 1.0}},
}
_CONFIG_FIELDS = {f.name for f in fields(AdaptConfig)}


@dataclass(frozen=True)
class Method:
    """A named adaptation recipe: an adapter and its AdaptConfig overrides."""

    name: str
    adapter: str
    config: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        return "direct" if self.adapter == "none" else self.name

    @property
    def fixed_sampler(self) -> bool:
        return "sampler" in self.config or self.adapter == "none"


@dataclass(frozen=True)
class Source:
    """A pretrained source network (loaded by :func:`tta.models.resolve_model`)."""

    name: str
    model: str
    weights: str | None = None
    trained_on: str = ""
    in_sensor: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A target scene file (any format :func:`tta.io.read_scene` reads) and its protocols."""

    name: str
    file: str
    protocols: tuple[str, ...] = PROTOCOLS
    sensor: str | None = None
    crop: int | None = None
    samples: int = 1
    note: str = ""


@dataclass(frozen=True)
class SpeedSpec:
    """The timing part: one source on square crops of one target."""

    source: str
    target: str
    sizes: tuple[int, ...] = (512,)
    repeats: int = 3
    methods: tuple[str, ...] = ()


@dataclass
class BenchMatrix:
    """Everything ``tta bench`` runs. Build it with :func:`load_matrix`."""

    name: str
    sources: list[Source]
    targets: list[Target]
    methods: list[Method]
    samplers: list[str] = field(default_factory=lambda: ["swift"])
    seeds: list[int] = field(default_factory=lambda: [0])
    classical: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    data_root: Path = Path(".")
    weights_root: Path = Path(".")
    speed: SpeedSpec | None = None
    quicklook: list[str] = field(default_factory=list)
    path: Path | None = None

    def scene_path(self, target: Target) -> str:
        """The target's scene spec with the data root applied (``#K`` kept)."""
        return resolve_spec(target.file, self.data_root)

    def weights_path(self, rel: str | None) -> str | None:
        return None if rel is None else resolve_spec(rel, self.weights_root)

    def method_config(self, method: Method, sampler: str, seed: int) -> AdaptConfig:
        """The AdaptConfig of one run (matrix config, then the method's, then sampler/seed)."""
        merged = {**self.config, **method.config, "adapter": method.adapter, "seed": seed}
        if not method.fixed_sampler:
            merged["sampler"] = sampler
        return AdaptConfig(**merged)

    def seeds_of(self, method: Method) -> list[int]:
        """Seeds a method runs with: its own, one for ``none``, else the matrix's."""
        if method.seeds is not None:
            return list(method.seeds)
        return [self.seeds[0]] if method.adapter == "none" else list(self.seeds)

    def samplers_of(self, method: Method) -> list[str]:
        if method.fixed_sampler:
            return [str(method.config.get("sampler", self.config.get("sampler", "swift")))]
        return list(self.samplers)

    def restrict(self, *, targets: Sequence[Target] | None = None, seeds: Sequence[int] | None
                 = None, steps: int | None = None, methods: Sequence[str] | None = None,
                 sources: Sequence[str] | None = None) -> BenchMatrix:
        """A copy with some axes replaced or filtered (the CLI's overrides); the timing part
        is dropped when its source or target is no longer in the matrix."""
        out = replace(self)
        if targets is not None:
            out.targets = list(targets)
        if seeds is not None:
            out.seeds = list(seeds)
        if steps is not None:
            out.config = {**out.config, "steps": steps}
            out.methods = [replace(m, config={k: v for k, v in m.config.items()
                                              if k != "steps"}) for m in out.methods]
        if methods is not None:
            known = {m.name for m in out.methods}
            extra = [_method(n, f"--method {n}") for n in methods if n not in known]
            out.methods = [m for m in out.methods if m.name in methods] + extra
        if sources is not None:
            unknown = sorted(set(sources) - {s.name for s in out.sources})
            if unknown:
                raise InputError(f"--source: no source named {', '.join(unknown)} in the "
                                 f"matrix ({', '.join(s.name for s in out.sources)})")
            out.sources = [s for s in out.sources if s.name in sources]
        if out.speed is not None and (out.speed.source not in {s.name for s in out.sources}
                                      or out.speed.target not in {t.name for t in out.targets}):
            out.speed = None  # the timing's source or target was filtered out: no timing
        _check(out)
        return out


# ----------------------------------------------------------------------------- parsing
def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: expected a list of names")
    return list(value)


def _config_overrides(items: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(items) - _CONFIG_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown AdaptConfig field(s) {', '.join(unknown)}")
    return dict(items)


def _method(entry: Any, where: str) -> Method:
    item = {"name": entry} if isinstance(entry, str) else _mapping(entry, where)
    name = item.pop("name", None)
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: a method mapping needs a 'name'")
    base = dict(BUILTIN_METHODS.get(name, {}))
    adapter = item.pop("adapter", base.pop("adapter", name))
    seeds = item.pop("seeds", base.pop("seeds", None))
    if seeds is not None and (not isinstance(seeds, list) or not seeds
                              or not all(isinstance(x, int) for x in seeds)):
        raise InputError(f"{where} ({name}).seeds: expected a list of integers")
    config = {**base, **_config_overrides(item, f"{where} ({name})")}
    return Method(name, str(adapter), config, None if seeds is None else tuple(seeds))


def _source(entry: Any, where: str) -> Source:
    item = _mapping(entry, where)
    unknown = sorted(set(item) - {"name", "model", "weights", "trained_on", "in_sensor"})
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if "model" not in item:
        raise InputError(f"{where}: a source needs 'model'")
    in_sensor = {str(k).upper(): str(v) for k, v in _mapping(item.get("in_sensor") or {},
                                                               f"{where}.in_sensor").items()}
    return Source(name=str(item.get("name", item["model"])), model=str(item["model"]),
                  weights=None if item.get("weights") is None else str(item["weights"]),
                  trained_on=str(item.get("trained_on", "")), in_sensor=in_sensor)


def _target(entry: Any, where: str) -> Target:
    if isinstance(entry, str):
        entry = {"file": entry}
    item = _mapping(entry, where)
    unknown = sorted(set(item) - {"name", "file", "protocols", "sensor", "crop", "samples",
                                  "note"})
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if "file" not in item:
        raise InputError(f"{where}: a target needs 'file'")
    protocols = tuple(p.lower() for p in _strings(item.get("protocols", list(PROTOCOLS)),
                                                  f"{where}.protocols"))
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise InputError(f"{where}.protocols: expected some of rr, fr; got {protocols}")
    crop = item.get("crop")
    if crop is not None and (not isinstance(crop, int) or crop < 32):
        raise InputError(f"{where}.crop: expected a PAN side in pixels (>= 32)")
    samples = item.get("samples", 1)
    if not isinstance(samples, int) or samples < 1:
        raise InputError(f"{where}.samples: expected a positive integer")
    file = str(item["file"])
    name = str(item.get("name") or Path(file.split("#")[0].split("+")[0]).stem)
    return Target(name=name, file=file, protocols=protocols,
                  sensor=None if item.get("sensor") is None else str(item["sensor"]),
                  crop=crop, samples=samples, note=str(item.get("note", "")))


def _check(m: BenchMatrix) -> None:
    from tta.classical import list_methods
    from tta.sampling import SAMPLERS

    for what, items in (("source", [s.name for s in m.sources]),
                        ("target", [t.name for t in m.targets]),
                        ("method", [x.name for x in m.methods])):
        dup = sorted({n for n in items if items.count(n) > 1})
        if dup:
            raise InputError(f"{m.name}: duplicate {what} name(s) {', '.join(dup)}")
    for s in m.samplers:
        if s not in SAMPLERS:
            raise InputError(f"{m.name}: unknown sampler {s!r} ({', '.join(sorted(SAMPLERS))})")
    known = set(list_methods())
    for c in m.classical:
        if c not in known:
            raise InputError(f"{m.name}: unknown classical method {c!r}")
    if not m.seeds:
        raise InputError(f"{m.name}: no seeds")
    for method in m.methods:  # validates adapters and every config value before any work
        for sampler in m.samplers_of(method):
            m.method_config(method, sampler, m.seeds[0])
    if m.speed is not None:
        if m.speed.source not in {s.name for s in m.sources}:
            raise InputError(f"{m.name}: speed.source {m.speed.source!r} is not a source")
        if m.speed.target not in {t.name for t in m.targets}:
            raise InputError(f"{m.name}: speed.target {m.speed.target!r} is not a target")


def parse_matrix(data: Mapping[str, Any], *, name: str = "matrix", path: Path | None = None,
                 data_root: str | Path | None = None,
                 weights_root: str | Path | None = None) -> BenchMatrix:
    """A :class:`BenchMatrix` from already-loaded YAML data (see the module docstring).

    Raises:
        InputError: Unknown keys, missing fields, invalid values (one line each).
    """
    d = _mapping(data, name)
    allowed = {"name", "data_root", "weights_root", "sources", "targets", "methods",
               "samplers", "seeds", "classical", "speed", "quicklook", "description",
               *_CONFIG_FIELDS}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise InputError(f"{name}: unknown key(s) {', '.join(unknown)}")
    mname = str(d.get("name", name))
    config = {k: d[k] for k in d if k in _CONFIG_FIELDS and k not in ("adapter", "seed")}
    sources = [_source(s, f"{mname}.sources[{i}]") for i, s in enumerate(d.get("sources")
                                                                          or [])]
    targets = [_target(t, f"{mname}.targets[{i}]") for i, t in enumerate(d.get("targets")
                                                                          or [])]
    methods = [_method(x, f"{mname}.methods[{i}]")
               for i, x in enumerate(d.get("methods") or ["none", "ft"])]
    seeds = d.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise InputError(f"{mname}.seeds: expected a list of integers")
    speed = None
    if d.get("speed"):
        sp = _mapping(d["speed"], f"{mname}.speed")
        bad = sorted(set(sp) - {"source", "target", "sizes", "repeats", "methods"})
        if bad:
            raise InputError(f"{mname}.speed: unknown key(s) {', '.join(bad)}")
        sizes = sp.get("sizes", [512])
        if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 32
                                                  for s in sizes):
            raise InputError(f"{mname}.speed.sizes: expected PAN sides (integers >= 32)")
        speed = SpeedSpec(source=str(sp.get("source", sources[0].name if sources else "")),
                          target=str(sp.get("target", targets[0].name if targets else "")),
                          sizes=tuple(sizes), repeats=int(sp.get("repeats", 3)),
                          methods=tuple(_strings(sp.get("methods", []),
                                                 f"{mname}.speed.methods")))
        unknown_m = [x for x in speed.methods if x not in {m.name for m in methods}]
        if unknown_m:
            raise InputError(f"{mname}.speed.methods: {', '.join(unknown_m)} not in methods")
    droot = Path(data_root if data_root is not None else d.get("data_root", "."))
    wroot = Path(weights_root if weights_root is not None else d.get("weights_root", "."))
    matrix = BenchMatrix(
        name=mname, sources=sources, targets=targets, methods=methods,
        samplers=_strings(d.get("samplers", ["swift"]), f"{mname}.samplers"),
        seeds=list(seeds), classical=[c.lower() for c in _strings(d.get("classical", []),
                                                                  f"{mname}.classical")],
        config=_config_overrides(config, mname), data_root=droot, weights_root=wroot,
        speed=speed, quicklook=_strings(d.get("quicklook", []), f"{mname}.quicklook"),
        path=path)
    if not matrix.sources:
        raise InputError(f"{mname}: no sources")
    if not matrix.targets:
        raise InputError(f"{mname}: no targets")
    _check(matrix)
    return matrix


def load_matrix(path: str | Path, *, data_root: str | Path | None = None,
                weights_root: str | Path | None = None) -> BenchMatrix:
    """Read a matrix YAML file, or a built-in one by name (``quick``, ``cross_sensor``).

    Raises:
        InputError: Missing file, invalid YAML, or an invalid matrix.
    """
    p = Path(path)
    if not p.is_file() and (MATRICES_DIR / f"{path}.yaml").is_file():
        p = MATRICES_DIR / f"{path}.yaml"
    if not p.is_file():
        names = ", ".join(sorted(x.stem for x in MATRICES_DIR.glob("*.yaml")))
        raise InputError(f"{path}: matrix file not found (built-in matrices: {names})")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise InputError(f"{p}: not valid YAML{line}") from None
    return parse_matrix(data if data is not None else {}, name=p.stem, path=p,
                        data_root=data_root, weights_root=weights_root)


def builtin_matrix(name: str, **roots: Any) -> BenchMatrix:
    """One of the matrices shipped in ``tta/bench/matrices``."""
    return load_matrix(MATRICES_DIR / f"{name}.yaml", **roots)
