"""The model card of a zoo weights file: read and written in one place.

A card is the YAML mapping ``tta train`` writes beside the weights
(``pretrained/cards/<name>.yaml``): architecture and options, parameter counts, the weights
file and its sha256, training data files (sha256, licence, how they were used), validation
split, recipe, epochs, seed, device, date, duration, held-out scores, notes, the log's name.
:meth:`ModelCard.build` makes the card of a training run (keys in :data:`CARD_KEYS` order),
:meth:`ModelCard.write` writes it atomically, :func:`read_card` reads any card; a card written
and read back is equal, and a shipped card re-serialised is its file's text.

Reference: Hugging Face model cards (metadata plus free text), written here as plain YAML
(``yaml.safe_dump(sort_keys=False, allow_unicode=True)``) so the key order is the build order.

Example::

    card = read_card("pretrained/cards/lagconv_qb.yaml")
    card["held_out"]["Q2n"], card.training_files, card.licences
    card.write("copy.yaml")
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tta.errors import InputError

__all__ = ["CARD_KEYS", "ModelCard", "read_card"]

#: The keys of a card ``tta train`` writes, in file order.
CARD_KEYS = ("name", "arch", "arch_kwargs", "stage", "n_bands", "sensor", "bands", "ratio",
             "max_value", "parameters", "trainable_parameters", "channel_mapper", "weights",
             "training", "held_out", "notes", "log")


@dataclass(frozen=True)
class ModelCard(Mapping[str, Any]):
    """A model card: typed fields for what loading reads, and the whole mapping behind them
    (``card["held_out"]["Q2n"]``).

    Attributes:
        data: The card's mapping (empty when a weights file has no card).
        path: Where it was read from (or last written to), or None.
    """

    data: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def build(cls, *, name: str, arch: str, arch_kwargs: Mapping[str, Any], stage: str,
              n_bands: int, sensor: str, bands: list[str], ratio: int, max_value: float,
              parameters: int, trainable_parameters: int, channel_mapper: str | None,
              weights_file: str, weights_sha256: str, training: Mapping[str, Any],
              held_out: Mapping[str, Any] | None, notes: str | None, log: str) -> ModelCard:
        """The card of one training run (:mod:`tta.training.trainer`), keys in
        :data:`CARD_KEYS` order; ``training`` holds data, split, init, recipe, schedule,
        seed, device, date, duration and software versions."""
        values = {"name": name, "arch": arch, "arch_kwargs": arch_kwargs, "stage": stage,
                  "n_bands": n_bands, "sensor": sensor, "bands": bands, "ratio": ratio,
                  "max_value": max_value, "parameters": parameters,
                  "trainable_parameters": trainable_parameters,
                  "channel_mapper": channel_mapper,
                  "weights": {"file": weights_file, "sha256": weights_sha256},
                  "training": training, "held_out": held_out, "notes": notes, "log": log}
        return cls({k: values[k] for k in CARD_KEYS})

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def training_data(self) -> list[dict[str, Any] | str]:
        """Entries of ``training.data`` (dicts with ``file`` and ``licence``, or strings)."""
        training = self.data.get("training")
        return list(training.get("data") or []) if isinstance(training, dict) else []

    @property
    def training_files(self) -> list[str]:
        return [d.get("file", str(d)) if isinstance(d, dict) else str(d)
                for d in self.training_data]

    @property
    def licences(self) -> list[str]:
        return sorted({str(d["licence"]) for d in self.training_data
                       if isinstance(d, dict) and d.get("licence")})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)

    def to_yaml(self) -> str:
        """The card's YAML text (keys in their order, Unicode kept)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def write(self, path: str | Path, *, overwrite: bool = False) -> ModelCard:
        """Write :meth:`to_yaml` to ``path`` atomically (:func:`tta.io.atomic_output`);
        return the card with its new ``path``.

        Raises:
            OutputError: ``path`` exists without ``overwrite`` or its folder is missing.
        """
        from tta.io import atomic_output

        text = self.to_yaml()
        with atomic_output(path, overwrite=overwrite) as tmp:
            tmp.write_text(text)
        return ModelCard(self.data, Path(path))


def read_card(path: str | Path) -> ModelCard:
    """A model card (YAML mapping), the one reader of cards.

    Raises:
        InputError: Missing file or not a YAML mapping.
    """
    from tta.io.yaml_file import read_yaml

    p = Path(path)
    data = read_yaml(p, "model card")
    if not isinstance(data, dict):
        raise InputError(f"{p}: a model card must be a YAML mapping")
    return ModelCard(data, p)
