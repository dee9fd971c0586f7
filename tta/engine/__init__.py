"""Adaptation engine: train an adapter on a few patches, then fuse the whole scene.

* :func:`adapt` / :func:`adapt_scene` - the whole run (sample, decompose, cache, train, infer).
* :class:`AdaptConfig` - its settings (YAML-loadable).
* :class:`AdaptReport` - its typed report (``to_json()`` is the ``--report`` file).
* :func:`tiled_fuse` - batched, seamless tiled inference over scenes of any size.
"""

from tta.engine.adapt import AdaptResult, adapt, adapt_scene, model_max_value, receptive_radius
from tta.engine.config import AdaptConfig
from tta.engine.report import AdaptReport
from tta.engine.tiling import blend_window, tile_corners, tiled_fuse

__all__ = [
    "AdaptConfig",
    "AdaptReport",
    "AdaptResult",
    "adapt",
    "adapt_scene",
    "blend_window",
    "model_max_value",
    "receptive_radius",
    "tile_corners",
    "tiled_fuse",
]
