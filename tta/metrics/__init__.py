"""Pansharpening quality indexes, vectorised in torch (batched, CPU and CUDA).

Reduced resolution (with a reference; :mod:`tta.metrics.reference`): :func:`sam`,
:func:`ergas`, :func:`q_index`, :func:`q2n`, :func:`scc`, :func:`psnr` and the wrapper
:func:`rr_metrics` (toolbox ``indexes_evaluation.m``, 21-pixel border cut).

Full resolution (no reference; :mod:`tta.metrics.no_reference`): :func:`d_lambda`,
:func:`d_s`, :func:`qnr`, :func:`d_lambda_k`, :func:`hqnr` (toolbox QNR / HQNR), the
reprojection protocol :func:`reproject` / :func:`reprojection_metrics` (R-Q2n, R-Q,
R-SAM, R-ERGAS) and :func:`d_rho` (fr-pansh-eval-tool), and the wrapper :func:`fr_metrics`.

Conventions: reference first, fused second; images ``(B, C, H, W)`` (or unbatched
``(C, H, W)``) in sensor DN; results ``(B,)`` float64 tensors (0-d for unbatched inputs);
the wrappers return dicts of floats for unbatched inputs. Each docstring names the toolbox
file it follows and any deliberate difference.
"""

from tta.metrics.no_reference import (
    d_lambda,
    d_lambda_k,
    d_rho,
    d_s,
    fr_metrics,
    hqnr,
    local_cross_correlation,
    qnr,
    reproject,
    reprojection_metrics,
    reprojection_phases,
)
from tta.metrics.reference import ergas, onion_mult, psnr, q2n, q_index, rr_metrics, sam, scc

__all__ = [
    "d_lambda",
    "d_lambda_k",
    "d_rho",
    "d_s",
    "ergas",
    "fr_metrics",
    "hqnr",
    "local_cross_correlation",
    "onion_mult",
    "psnr",
    "q2n",
    "q_index",
    "qnr",
    "reproject",
    "reprojection_metrics",
    "reprojection_phases",
    "rr_metrics",
    "sam",
    "scc",
]
