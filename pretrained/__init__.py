"""Pretrained pansharpening architectures and their checkpoint registry (the model zoo).

Every model is a :class:`PansharpeningNet` with ``forward(ms, pan, lms) -> hrms`` on images
divided by the sensor's max value (see :mod:`pretrained._base`). Architectures (one file each,
following the DLPan-Toolbox definitions): ``fusionnet``, ``pannet``, ``pnn``, ``dicnn``,
``msdcnn``; and the architectures we train ourselves (``tta train``): ``lagconv``,
``diffusion_teacher``, ``diffusion_student``, ``fose`` and ``ksdiff``. :func:`load` reads a
checkpoint from a path; :func:`load_zoo` loads our trained weights from ``pretrained/weights`` (see
:mod:`pretrained.zoo`); :func:`list_weights` is the one set of known weights
(DLPan-Toolbox checkpoints and the shipped zoo); :func:`load_model` takes any ``--model`` form
(:mod:`pretrained.spec`, the one grammar; :mod:`pretrained.checkpoint`, the one reader)::

    import pretrained
    pretrained.list_models()          # ['dicnn', 'diffusion_student', ..., 'pnn']
    net = pretrained.load("fusionnet", weights="path/to/wv3/fusionnet.pth", sensor="WV3")
    net = pretrained.load_zoo("fose:wv3")
"""

from pretrained._base import PansharpeningNet
from pretrained.registry import (
    WeightsRecord,
    create_model,
    find_weights_record,
    is_model,
    list_models,
    list_weights,
    load,
    load_state_dict,
    model_class,
    register_model,
    register_weights,
    register_weights_source,
)

# Importing the architecture modules registers them.
from pretrained.dicnn import DiCNN  # noqa: E402  isort: skip
from pretrained.diffusion import DiffusionTeacher, OneStepStudent  # noqa: E402  isort: skip
from pretrained.fose import Fose  # noqa: E402  isort: skip
from pretrained.fusionnet import FusionNet  # noqa: E402  isort: skip
from pretrained.ksdiff import KSDiff  # noqa: E402  isort: skip
from pretrained.lagconv import LAGConvNet  # noqa: E402  isort: skip
from pretrained.msdcnn import MSDCNN  # noqa: E402  isort: skip
from pretrained.pannet import PanNet  # noqa: E402  isort: skip
from pretrained.pnn import PNN  # noqa: E402  isort: skip
from pretrained.zoo import list_zoo, load_zoo  # noqa: E402  isort: skip
from pretrained.spec import ModelSpec, parse_model_spec  # noqa: E402  isort: skip
from pretrained.loader import load_model  # noqa: E402  isort: skip

__all__ = [
    "MSDCNN",
    "PNN",
    "DiCNN",
    "DiffusionTeacher",
    "Fose",
    "FusionNet",
    "KSDiff",
    "LAGConvNet",
    "ModelSpec",
    "OneStepStudent",
    "PanNet",
    "PansharpeningNet",
    "WeightsRecord",
    "create_model",
    "find_weights_record",
    "is_model",
    "list_models",
    "list_weights",
    "list_zoo",
    "load",
    "load_model",
    "load_state_dict",
    "load_zoo",
    "model_class",
    "parse_model_spec",
    "register_model",
    "register_weights",
    "register_weights_source",
]
