"""Our own trained weights ("the zoo"): safetensors files with YAML model cards.

Layout (both folders inside the package; ``tta train --out pretrained/weights --cards
pretrained/cards`` writes there):

* ``pretrained/weights/<arch>_<sensor>.safetensors`` - the state_dict, with metadata ``arch``,
  ``n_bands``, ``arch_kwargs`` (JSON), ``sensor``, ``bands``, ``ratio``, ``max_value``, ``stage``;
  the metadata alone is enough to rebuild the model;
* ``pretrained/cards/<arch>_<sensor>.yaml`` - the model card (architecture, parameter count,
  training data files and licences, recipe, epochs, seed, device, date, held-out scores); read
  next to the weights when absent from the cards folder.

:func:`load_zoo` is what ``--model ARCH[:SENSOR]`` without ``--weights`` resolves to
(:func:`tta.models.resolve_model`); :func:`list_zoo` lists the cards. Every shipped file with a
card is a :class:`~pretrained.registry.WeightsRecord` (``origin="zoo"``) in the one record set
of :func:`pretrained.list_weights`, built once from the cards (:func:`shipped_records`);
:func:`load_zoo` attaches that record to the model it loads.
:func:`save_weights` / :func:`read_weights` / :func:`model_from_weights` are the one place that
reads and writes these files (training uses them for ``--init``, ``--teacher`` ...).
Cards are read and written by :mod:`pretrained.card` (:class:`ModelCard`, :func:`read_card`).

Example::

    import pretrained
    net = pretrained.load_zoo("fose")          # pretrained/weights/fose_wv3.safetensors
    net = pretrained.load_zoo("fose:qb")       # the QuickBird weights
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from pretrained._base import PansharpeningNet
from pretrained.card import ModelCard, read_card
from pretrained.checkpoint import Checkpoint, read_checkpoint, sha256_file
from pretrained.registry import (
    WeightsRecord,
    build_for_state_dict,
    check_bands,
    find_weights_record,
    model_class,
    register_weights_source,
)
from pretrained.spec import (
    CARDS_DIR,
    DEFAULT_SENSOR,
    WEIGHTS_DIR,
    parse_model_spec,
    sensor_name,
    zoo_stem,
)
from tta.checks import MAX_BANDS
from tta.errors import InputError

__all__ = [
    "CARDS_DIR",
    "DEFAULT_SENSOR",
    "FORMAT",
    "WEIGHTS_DIR",
    "ModelCard",
    "file_record",
    "list_zoo",
    "load_zoo",
    "model_from_weights",
    "read_card",
    "read_weights",
    "save_weights",
    "shipped_records",
    "zoo_record",
    "zoo_stem",
]

FORMAT = "tta-zoo/1"


# ----------------------------------------------------------------------------- files
def save_weights(model: PansharpeningNet, path: str | Path, *,
                 metadata: Mapping[str, Any] | None = None, overwrite: bool = False) -> str:
    """Write ``model``'s state_dict as safetensors, atomically; return the file's sha256.

    The metadata always holds ``format``, ``arch`` and ``n_bands``; values of ``metadata``
    are stored as strings (dicts and lists as JSON).

    Raises:
        OutputError: ``path`` exists without ``overwrite`` or its folder is missing.
    """
    from safetensors.torch import save

    from tta.io import atomic_output

    meta = {"format": FORMAT, "arch": model.arch, "n_bands": str(model.n_bands)}
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = save(sd, metadata=meta)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(blob)
    return sha256_file(path)


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """State_dict and metadata of a weights file (``.safetensors``, or a torch file without
    metadata), by :func:`pretrained.checkpoint.read_checkpoint`.

    Raises:
        InputError: Missing or unreadable file.
    """
    ck = read_checkpoint(path)
    return ck.state_dict, ck.metadata


def _arch_kwargs(meta: Mapping[str, str], source: str) -> dict[str, Any]:
    text = meta.get("arch_kwargs", "{}")
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"{source}: metadata 'arch_kwargs' is not JSON") from None
    if not isinstance(kwargs, dict):
        raise InputError(f"{source}: metadata 'arch_kwargs' must be a JSON object")
    return kwargs


def model_from_weights(path: str | Path | Checkpoint, arch: str | None = None,
                       **overrides: Any) -> PansharpeningNet:
    """Build and load the model a weights file describes (eval mode, CPU).

    A safetensors file written by :func:`save_weights` names its architecture, band count and
    options; a torch file needs ``arch`` (band count read from the tensors). Keys are checked
    strictly (:func:`pretrained.registry.load_state_dict`).

    Args:
        path: Weights file, or a :class:`~pretrained.checkpoint.Checkpoint` already read.
        arch: Expected architecture (checked against the file's when it names one).
        **overrides: Architecture options to change (e.g. the teacher's ``steps``).

    Raises:
        InputError: Unreadable file, unknown/mismatching architecture, keys that do not fit.
    """
    ck = path if isinstance(path, Checkpoint) else read_checkpoint(path)
    sd, meta, src = ck.state_dict, ck.metadata, str(ck.path)
    file_arch = meta.get("arch")
    if arch is not None and file_arch is not None and file_arch != arch:
        raise InputError(f"{src}: holds a {file_arch!r} model, not {arch!r}")
    name = file_arch or arch
    if name is None:
        raise InputError(f"{src}: the file does not name its architecture; pass it")
    cls = model_class(name)
    kwargs = {**_arch_kwargs(meta, src), **overrides}
    found = cls.bands_in(cls.map_state_dict(sd, src))
    n_bands = _meta_bands(meta, src) if "n_bands" in meta else found or 8
    if found is not None and found != n_bands:
        raise InputError(f"{src}: metadata says {n_bands} bands but the weights have {found}")
    return build_for_state_dict(name, sd, src, n_bands, **kwargs).eval()


def _meta_bands(meta: Mapping[str, str], source: str) -> int:
    text = meta["n_bands"]
    if not text.isdigit() or not 1 <= int(text) <= MAX_BANDS:
        raise InputError(f"{source}: metadata 'n_bands' must be an integer in 1..{MAX_BANDS}, "
                         f"got {text[:40]!r}")
    return int(text)


# ----------------------------------------------------------------------------- zoo
def _parse(name: str, sensor: Any) -> tuple[str, str]:
    spec = parse_model_spec(name, zoo=True)
    return spec.arch, sensor_name(sensor if sensor is not None else spec.zoo_sensor)


def _card_for(stem: str, weights_dir: Path, cards_dir: Path) -> Path | None:
    for folder in (cards_dir, weights_dir):
        p = folder / f"{stem}.yaml"
        if p.is_file():
            return p
    return None


def load_zoo(name: str, sensor: Any = None, *, weights_dir: str | Path | None = None,
             cards_dir: str | Path | None = None) -> PansharpeningNet:
    """Load our shipped weights of architecture ``name`` for ``sensor`` (eval mode, CPU).

    Args:
        name: Registered architecture, optionally ``NAME:SENSOR`` (``"fose:qb"``).
        sensor: Sensor name or preset; default the one in ``name``, else WV3.
        weights_dir: Folder of the safetensors files (default ``pretrained/weights``).
        cards_dir: Folder of the cards (default ``pretrained/cards``).

    Returns:
        The model, with ``model.weights_record`` (a :class:`~pretrained.registry.WeightsRecord`)
        and ``model.card`` (the card dict, ``{}`` when there is none).

    Raises:
        InputError: Unknown architecture; no weights file for it and the sensor (the message
            says how to get them); a file that does not fit.
        SensorError: Unknown sensor.
    """
    arch, sensor_name = _parse(name, sensor)
    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    cdir = Path(cards_dir) if cards_dir is not None else CARDS_DIR
    stem = zoo_stem(arch, sensor_name)
    path = wdir / f"{stem}.safetensors"
    if not path.is_file():
        raise InputError(
            f"no shipped weights for '{arch}' (sensor {sensor_name}) yet; pass --weights FILE "
            f"or train them with tta train --arch {arch} --sensor {sensor_name} --data ... "
            f"--out {wdir}")
    ck = read_checkpoint(path)  # the one read of the file: tensors, metadata, digest
    model = model_from_weights(ck, arch=arch)
    check_bands(model.n_bands, sensor_name, path)
    card_path = _card_for(stem, wdir, cdir)
    card = read_card(card_path) if card_path else ModelCard()
    model.weights_record = file_record(ck, arch, model.n_bands, sensor=sensor_name, card=card,
                                       card_path=card_path)
    model.card = card
    return model


def file_record(ck: Checkpoint, arch: str, n_bands: int, *, sensor: str | None = None,
                card: ModelCard | None = None, card_path: Path | None = None
                ) -> WeightsRecord | None:
    """The :class:`~pretrained.registry.WeightsRecord` of a ``tta train`` weights file, named
    (:func:`load_zoo`) or given as a path (:func:`pretrained.load_model`).

    A shipped file (its digest in the record set, same architecture) gets its record; any
    other file (another folder, or not the one its card describes) one built from its own
    metadata (sensor, bands, ratio, max value), ``sensor`` filling a missing sensor.

    Returns:
        The record, or None when neither the metadata nor ``sensor`` names a sensor.
    """
    record = find_weights_record(ck.sha256)
    if record is not None and record.origin == "zoo" and record.arch == arch:
        return record
    fields = {"sensor": sensor, **_meta_fields(ck.metadata)}
    if not fields["sensor"]:
        return None
    return zoo_record(arch, ck.path.name, ck.sha256, fields, card or ModelCard(), card_path,
                      n_bands=n_bands)


def _meta_fields(meta: Mapping[str, str]) -> dict[str, Any]:
    """The record fields a zoo file's metadata holds (``bands`` comma-separated)."""
    fields: dict[str, Any] = {k: meta[k] for k in ("sensor", "ratio", "max_value") if k in meta}
    fields["bands"] = [b for b in meta.get("bands", "").split(",") if b]
    return fields


def zoo_record(arch: str, file: str, sha256: str, fields: Mapping[str, Any],
               card: ModelCard, card_path: Path | None, *, n_bands: int | None = None
               ) -> WeightsRecord:
    """The :class:`~pretrained.registry.WeightsRecord` of a zoo file.

    Args:
        arch: Architecture the file holds.
        file: File name in its weights folder.
        sha256: The file's digest.
        fields: ``sensor``, ``bands`` (sequence), ``ratio`` and ``max_value``, from the card
            (shipped records) or the file's metadata (same values: ``tta train`` writes both).
        card: The model card (training data and licences), possibly empty.
        card_path: Where the card was read, or None.
        n_bands: The model's band count (default the card's ``n_bands``): band names that
            do not number it fall back to the sensor's.
    """
    from tta.sensors import get_sensor

    sensor = str(fields.get("sensor") or DEFAULT_SENSOR)
    n_bands = n_bands if n_bands is not None else card.get("n_bands")
    bands = tuple(str(b) for b in fields.get("bands") or ())
    if not bands or (isinstance(n_bands, int) and len(bands) != n_bands):
        bands = get_sensor(sensor).bands
    return WeightsRecord(
        arch=arch,
        file=file,
        sha256=sha256,
        sensor=sensor,
        bands=bands,
        ratio=int(fields.get("ratio", 4)),
        max_value=float(fields.get("max_value", 2047.0)),
        training_data=", ".join(card.training_files) or "see the model card",
        licence="; ".join(card.licences) or "see the model card",
        source=f"tta train ({card_path.name if card_path else 'no card'})",
        origin="zoo",
        card=card_path.name if card_path else None,
    )


def shipped_records(cards_dir: str | Path | None = None) -> list[WeightsRecord]:
    """The records of the shipped zoo, one per card that names its weights file and digest
    (``weights: {file, sha256}``, as ``tta train`` writes it), read from the cards alone.

    Raises:
        InputError: A card that is not a YAML mapping.
    """
    cdir = Path(cards_dir) if cards_dir is not None else CARDS_DIR
    out = []
    for card_path in sorted(cdir.glob("*.yaml")) if cdir.is_dir() else []:
        card = read_card(card_path)
        weights = card.get("weights")
        if not (isinstance(weights, dict) and weights.get("sha256") and card.get("arch")):
            continue
        out.append(zoo_record(str(card["arch"]), str(weights.get("file", f"{card_path.stem}"
                                                                 ".safetensors")),
                              str(weights["sha256"]), card, card, card_path))
    return out


register_weights_source(shipped_records)


def list_zoo(weights_dir: str | Path | None = None, cards_dir: str | Path | None = None
             ) -> list[dict[str, Any]]:
    """The model cards of the zoo, sorted by name.

    Every ``*.safetensors`` in ``weights_dir`` and every ``*.yaml`` card in ``cards_dir``
    gives one entry: the card (``{}`` plus the name when a file has none) with added keys
    ``name`` (the stem), ``weights`` (path or None) and ``weights_present``.
    """
    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    cdir = Path(cards_dir) if cards_dir is not None else CARDS_DIR
    stems = {p.stem for p in wdir.glob("*.safetensors")} if wdir.is_dir() else set()
    if cdir.is_dir():
        stems |= {p.stem for p in cdir.glob("*.yaml")}
    out = []
    for stem in sorted(stems):
        card_path = _card_for(stem, wdir, cdir)
        card = read_card(card_path).to_dict() if card_path else {}
        weights = wdir / f"{stem}.safetensors"
        card = {**card, "name": stem, "weights": str(weights) if weights.is_file() else None,
                "weights_present": weights.is_file()}
        out.append(card)
    return out
