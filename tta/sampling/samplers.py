"""Choosing a few informative, diverse patches among the N patches of a scene.

Every sampler takes descriptors ``(N, D)`` (one row per patch, e.g. from
:func:`~tta.sampling.describe_patches`) and returns a LongTensor ``(k,)`` of distinct row
indices in the order they were selected; ``k`` is clipped to ``N``. The same seed gives the
same result. :func:`select_patches` dispatches by name:

* ``"random"`` - uniform sampling without replacement (:func:`random_sampling`);
* ``"fps"`` - classic Euclidean farthest point sampling (:func:`farthest_point_sampling`),
  maximally spread but drawn to outliers;
* ``"kmeans"`` - one representative per k-means cluster (:func:`kmeans_sampling`);
* ``"swift"`` - density-weighted geodesic FPS on the kNN graph (:func:`swift_sampling`,
  documented in :mod:`tta.sampling.swift`), the default.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from tta.registry import Registry
from tta.sampling._checks import check_features, check_int, check_k
from tta.sampling.knn import knn_graph
from tta.sampling.swift import swift_sampling

__all__ = [
    "SAMPLERS",
    "farthest_point_sampling",
    "kmeans_sampling",
    "knn_graph",
    "random_sampling",
    "register_sampler",
    "select_patches",
    "swift_sampling",
]

#: Samplers by name, accepted by :func:`select_patches`: a function
#: ``fn(features (N, D), k, *, seed, ...) -> LongTensor (k,)`` of distinct row indices; it
#: receives those of ``seed``, ``n_neighbors`` and ``device`` that its signature names.
SAMPLERS: Registry[Callable[..., Tensor]] = Registry("sampler")


def register_sampler(name: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator registering a sampling function as ``name`` in :data:`SAMPLERS`."""
    return SAMPLERS.register(name)


def random_sampling(features: Tensor, k: int, *, seed: int = 0) -> Tensor:
    """Uniformly random rows without replacement (the baseline).

    Args:
        features: Descriptors ``(N, D)`` (only ``N`` and the device are used).
        k: Number of samples ``>= 1``, clipped to ``N``.
        seed: Seed of a private ``torch.Generator`` (the global RNG is untouched).

    Returns:
        LongTensor ``(k,)`` of distinct indices on the features' device: the first ``k``
        entries of ``torch.randperm(N)``.

    Raises:
        ValueError: Bad ``features`` or ``k < 1``.

    Reference:
        Uniform random patch selection, the usual test-time adaptation baseline.
    """
    check_features(features)
    k = check_k(k, features.shape[0])
    gen = torch.Generator().manual_seed(check_int(seed, "seed", 0))
    return torch.randperm(features.shape[0], generator=gen)[:k].to(features.device)


def farthest_point_sampling(features: Tensor, k: int, *, seed: int = 0) -> Tensor:
    """Classic greedy farthest point sampling in Euclidean distance.

    Starts at the row nearest to the mean of all rows, then repeatedly adds the row whose
    distance to the nearest selected row is largest (ties -> lowest index). Runs on the
    features' device in their dtype (at least float32) without host synchronisation: each
    step is one ``(N, D)`` distance update.

    Args:
        features: Descriptors ``(N, D)``.
        k: Number of samples ``>= 1``, clipped to ``N``.
        seed: Accepted for a uniform sampler interface; FPS is deterministic and ignores it.

    Returns:
        LongTensor ``(k,)`` of distinct indices in selection order, on the features' device.

    Raises:
        ValueError: Bad ``features`` or ``k < 1``.

    Reference:
        Gonzalez, "Clustering to minimize the maximum intercluster distance" (TCS 1985),
        the greedy 2-approximation of the k-center problem, as FPS in PointNet++.
    """
    del seed  # deterministic by construction
    check_features(features)
    n = features.shape[0]
    k = check_k(k, n)
    dtype = torch.promote_types(features.dtype, torch.float32)
    x = features.detach().to(dtype)
    order = torch.empty(k, dtype=torch.long, device=x.device)
    first = (x - x.mean(dim=0)).square().sum(dim=1).argmin()
    order[0] = first
    min_d2 = (x - x[first]).square().sum(dim=1)
    chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
    chosen[first] = True
    for step in range(1, k):
        nxt = min_d2.masked_fill(chosen, -1.0).argmax()  # selected rows never come back
        order[step] = nxt
        chosen[nxt] = True
        min_d2 = torch.minimum(min_d2, (x - x[nxt]).square().sum(dim=1))
    return order


def kmeans_sampling(features: Tensor, k: int, *, seed: int = 0) -> Tensor:
    """One representative per k-means cluster: the member nearest to its centroid.

    Runs scikit-learn ``KMeans(n_clusters=k, n_init=4, random_state=seed)`` (k-means++ seeding)
    in float64 on the CPU. Clusters are visited from the largest to the smallest (ties ->
    lower cluster label), which is the selection order returned. A cluster left empty (only
    possible with duplicate rows) is represented by the unselected row nearest its centroid.

    Args:
        features: Descriptors ``(N, D)``.
        k: Number of samples (= clusters) ``>= 1``, clipped to ``N``.
        seed: ``random_state`` of ``KMeans``.

    Returns:
        LongTensor ``(k,)`` of distinct indices on the features' device.

    Raises:
        ValueError: Bad ``features`` or ``k < 1``.

    Reference:
        Lloyd's k-means with k-means++ initialisation (Arthur and Vassilvitskii, SODA 2007),
        scikit-learn implementation; medoid-like representative per cluster.
    """
    from sklearn.cluster import KMeans  # lazy: a ~2 s import the other samplers do not need
    from sklearn.exceptions import ConvergenceWarning

    check_features(features)
    n = features.shape[0]
    k = check_k(k, n)
    seed = check_int(seed, "seed", 0)
    x = features.detach().cpu().numpy().astype(np.float64)
    with warnings.catch_warnings():  # duplicates: "fewer distinct clusters than n_clusters"
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    centres, labels = km.cluster_centers_, km.labels_
    own = ((x - centres[labels]) ** 2).sum(axis=1)  # squared distance to own centroid
    by_cluster = np.lexsort((np.arange(n), own, labels))  # by label, then distance, then index
    first = np.ones(n, dtype=bool)
    first[1:] = labels[by_cluster[1:]] != labels[by_cluster[:-1]]
    best = np.full(k, -1, dtype=np.int64)
    best[labels[by_cluster[first]]] = by_cluster[first]  # nearest member of each cluster
    sizes = np.bincount(labels, minlength=k)
    clusters = np.lexsort((np.arange(k), -sizes))  # largest first, then by label
    taken = np.zeros(n, dtype=bool)
    order = []
    for c in clusters:
        i = int(best[c])
        if i < 0:  # empty cluster: nearest row not yet taken
            i = int(np.where(taken, np.inf, ((x - centres[c]) ** 2).sum(axis=1)).argmin())
        taken[i] = True
        order.append(i)
    return torch.tensor(order, dtype=torch.long, device=features.device)


def select_patches(
    features: Tensor,
    k: int,
    method: str = "swift",
    *,
    seed: int = 0,
    n_neighbors: int = 10,
    device: torch.device | str | None = None,
) -> Tensor:
    """Select ``k`` of the ``N`` descriptor rows with the named sampler.

    Args:
        features: Descriptors ``(N, D)``, one row per patch.
        k: Number of patches ``>= 1``; clipped to ``N``.
        method: One of :data:`SAMPLERS`.
        seed: Seed of the random parts (``random``, ``kmeans``); ``fps`` and ``swift`` are
            deterministic.
        n_neighbors: ``K`` of the kNN graph (``swift`` only).
        device: Where the kNN search runs (``swift`` only; ``None`` = GPU if available).

    Returns:
        LongTensor ``(k,)`` of distinct indices in selection order, on the features' device;
        the same arguments always give the same result.

    Raises:
        ValueError: Unknown ``method`` (the message lists :data:`SAMPLERS`), ``k < 1`` or bad
            ``features``.

    Reference:
        SWIFT ("Sensitive Weight Identification for Fast Transfer") patch selection, ~3% of
        the scene's patches.

    Example:
        >>> feats = torch.randn(100, 8)
        >>> select_patches(feats, 3, "fps").shape
        torch.Size([3])
    """
    fn = SAMPLERS.get(method)
    check_features(features)
    k = check_k(k, features.shape[0])
    offered = {"seed": seed, "n_neighbors": n_neighbors, "device": device}
    wanted = inspect.signature(fn).parameters
    return fn(features, k, **{name: v for name, v in offered.items() if name in wanted})


for _name, _fn in (("random", random_sampling), ("fps", farthest_point_sampling),
                   ("kmeans", kmeans_sampling), ("swift", swift_sampling)):
    register_sampler(_name)(_fn)
