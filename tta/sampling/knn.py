"""Exact k-nearest-neighbour graph of descriptor rows (faiss, with a torch fallback)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import Tensor

from tta.sampling._checks import check_features, check_int

__all__ = ["knn_graph"]

_LOG = logging.getLogger(__name__)


def _wants_gpu(device: torch.device | str | None) -> bool:
    """True for ``device=None`` (auto) or a CUDA device, when torch sees a GPU."""
    if device is not None and torch.device(device).type != "cuda":
        return False
    return torch.cuda.is_available()


def _faiss_search(x: np.ndarray, k: int, device: torch.device | str | None):
    """Exact L2 search of ``x`` against itself; GPU index when possible, else CPU."""
    import faiss  # lazy: heavy import, optional at run time

    index = faiss.IndexFlatL2(x.shape[1])
    if _wants_gpu(device):
        try:
            if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
                raise RuntimeError("this faiss build has no GPU support")
            gpu_id = torch.device(device).index if device is not None else None
            gpu_id = torch.cuda.current_device() if gpu_id is None else gpu_id
            resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(resources, gpu_id, index)
        except (AttributeError, RuntimeError) as err:  # no GPU faiss: CPU index is exact too
            if device is not None:
                warnings.warn(f"faiss GPU index unavailable ({err}); using the CPU index",
                              RuntimeWarning, stacklevel=3)
            _LOG.debug("faiss GPU index unavailable (%s); using the CPU index", err)
            index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    dist2, idx = index.search(x, k)
    return dist2, idx


def _torch_search(features: Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force squared distances with ``torch.cdist`` + ``topk`` (fallback without faiss)."""
    x = features.to(torch.float32)
    d = torch.cdist(x, x).square()
    d2, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
    return d2.cpu().numpy(), idx.cpu().numpy()


def knn_graph(
    features: Tensor, n_neighbors: int, *, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Each row's ``K`` nearest other rows (exact Euclidean search).

    The search runs on a faiss ``IndexFlatL2`` (float32). With ``device=None`` (auto) or a CUDA
    ``device``, and when torch sees a GPU, the index is moved to the GPU
    (``faiss.StandardGpuResources`` + ``faiss.index_cpu_to_gpu``); a faiss build without GPU
    support falls back to the CPU index (with a ``RuntimeWarning`` when CUDA was asked for
    explicitly). If faiss cannot be imported at all, the same search is done with
    ``torch.cdist`` + ``torch.topk`` on the features' device (O(N^2) memory).

    Each row is searched with ``K + 1`` neighbours and the row itself is removed (or, when
    exact duplicates push it out of the first ``K + 1``, the farthest of them is dropped).

    Args:
        features: Tensor ``(N, D)`` of finite values.
        n_neighbors: ``K >= 1``; clipped to ``N - 1``.
        device: Where to search: ``None`` (GPU if available), ``"cpu"`` or a CUDA device.

    Returns:
        ``(distances, indices)``: Tensors ``(N, K)`` in the features' dtype and ``(N, K)``
        int64, on the features' device, sorted by increasing distance. Distances are
        Euclidean (square roots of faiss's squared L2, clamped at 0); ties may come in any
        order. ``K = min(n_neighbors, N - 1)`` (``(N, 0)`` tensors for ``N == 1``).

    Raises:
        ValueError: ``features`` is not a finite ``(N, D)`` float tensor, or ``n_neighbors < 1``.

    Reference:
        Johnson, Douze and Jegou, "Billion-scale similarity search with GPUs" (faiss), exact
        flat L2 index.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [3.0]])
        >>> knn_graph(x, 1, device="cpu")[1].ravel().tolist()
        [1, 0, 1]
    """
    check_features(features)
    n = features.shape[0]
    k = min(check_int(n_neighbors, "n_neighbors", 1), n - 1)
    out_dev, out_dtype = features.device, features.dtype
    if k == 0:
        return (torch.zeros(n, 0, dtype=out_dtype, device=out_dev),
                torch.zeros(n, 0, dtype=torch.long, device=out_dev))
    try:
        x = np.ascontiguousarray(features.detach().cpu().numpy(), dtype=np.float32)
        dist2, idx = _faiss_search(x, k + 1, device)
    except ImportError:
        dist2, idx = _torch_search(features.detach(), k + 1)
    idx = np.asarray(idx, dtype=np.int64)
    dist2 = np.asarray(dist2, dtype=np.float64)
    # Drop the row itself; rows where it is absent (duplicates) drop their last column.
    is_self = idx == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    idx = idx[keep].reshape(n, k)
    dist = np.sqrt(np.clip(dist2[keep].reshape(n, k), 0.0, None))
    return (torch.from_numpy(dist).to(device=out_dev, dtype=out_dtype),
            torch.from_numpy(idx).to(device=out_dev))
