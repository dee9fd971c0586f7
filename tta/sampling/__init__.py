"""Patch tiling, description and selection for test-time adaptation on a few patches.

Test-time adaptation trains a small adapter on a few patches of the target scene. This
package cuts the scene into patches and picks an informative, diverse subset:

* :func:`patch_grid`, :func:`extract_patches`, :func:`extract_scene_patches` - ratio-aligned
  tiling of the PAN grid and vectorised window extraction (:mod:`tta.sampling.patches`);
* :func:`describe_patches`, :func:`descriptor_names` - standardised spectral / texture /
  MS-PAN descriptors, one row per patch (:mod:`tta.sampling.descriptors`);
* :func:`select_patches` with the registry :data:`SAMPLERS` (``random``, ``fps``,
  ``kmeans``, ``swift``; :func:`register_sampler` adds one) and the samplers
  (:mod:`tta.sampling.samplers`); :func:`swift_sampling` (density-weighted geodesic FPS,
  :mod:`tta.sampling.swift`) on :func:`knn_graph` (:mod:`tta.sampling.knn`).

Example::

    corners = patch_grid(H, W, 64, ratio=4)
    ms_p, pan_p, lms_p = extract_scene_patches(ms, pan, lms, corners, 64, 4)
    feats = describe_patches(ms_p, pan_p, lms_p)
    chosen = select_patches(feats, max(1, round(0.03 * len(feats))), "swift")
"""

from tta.sampling.descriptors import describe_patches, descriptor_names
from tta.sampling.knn import knn_graph
from tta.sampling.patches import extract_patches, extract_scene_patches, patch_grid
from tta.sampling.samplers import (
    SAMPLERS,
    farthest_point_sampling,
    kmeans_sampling,
    random_sampling,
    register_sampler,
    select_patches,
)
from tta.sampling.swift import local_density, swift_sampling

__all__ = [
    "SAMPLERS",
    "describe_patches",
    "descriptor_names",
    "extract_patches",
    "extract_scene_patches",
    "farthest_point_sampling",
    "kmeans_sampling",
    "knn_graph",
    "local_density",
    "patch_grid",
    "random_sampling",
    "register_sampler",
    "select_patches",
    "swift_sampling",
]
