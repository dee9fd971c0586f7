"""Training the zoo's networks (``tta train``): data, patches, stages, weights and cards.

* :mod:`tta.training.data` - Wald reduced-resolution pairs from the given scenes (ready RR
  sets used as they are), the held-out split, random augmented patches;
* :mod:`tta.training.trainer` - :func:`train` (one stage: ``teacher``, ``distill``, ``e2e``,
  ``fuse``, ``joint``), writing ``<name>.safetensors``, a YAML model card and a JSON log.

Example::

    from tta.training import train
    result = train("lagconv", ["wv3/wv3_patches_rr.h5", "wv3/wv3_cdif_rr.h5"], sensor="WV3",
                   epochs=50, out="pretrained/weights", cards="pretrained/cards")
    result.card_data["held_out"]["Q2n"]
"""

from tta.training.data import (
    DataSource,
    LoadedData,
    Pair,
    PatchSampler,
    held_out_pairs,
    load_pairs,
    parse_data_spec,
    shift_pan,
    split_rows,
)
from tta.training.trainer import (
    DEFAULT_LR,
    STAGES,
    TrainConfig,
    TrainResult,
    default_stage,
    run_training,
    train,
    validate,
    validate_classical,
)

__all__ = [
    "DEFAULT_LR",
    "STAGES",
    "DataSource",
    "LoadedData",
    "Pair",
    "PatchSampler",
    "TrainConfig",
    "TrainResult",
    "default_stage",
    "held_out_pairs",
    "load_pairs",
    "parse_data_spec",
    "run_training",
    "shift_pan",
    "split_rows",
    "train",
    "validate",
    "validate_classical",
]
