"""No-reference physics losses for test-time adaptation of pansharpening networks.

The fused output on the PAN grid must be consistent with the image formation: MTF-filtered
and decimated it gives back the MS (:func:`spectral_loss`), its bands correlate locally with
the PAN (:func:`spatial_loss`: the Z-PNN thresholded correlation or ``D_rho``), and it may be
held near the source model's output (:func:`anchor_loss`). :class:`PhysicsLoss` weighs them
for a sensor (weights from ``presets.yaml`` via :func:`loss_weights`).

Inputs are ``(B, C, H, W)`` tensors divided by the sensor's max DN; every term returns a 0-d
tensor in the fused image's dtype and device, differentiable in the fused image. The MTF,
decimation and correlation math come from :mod:`tta.physics` and :mod:`tta.metrics`.
"""

from tta.losses.physics import (
    LOSS_TERMS,
    LossTerm,
    PhysicsLoss,
    TermInputs,
    loss_weights,
    register_loss_term,
)
from tta.losses.terms import (
    GENERIC_GNYQ_MS,
    ZPNN_THRESHOLD_WINDOW,
    anchor_loss,
    default_border,
    ergas_loss,
    q2n_loss,
    reproject_fused,
    spatial_loss,
    spectral_loss,
    zpnn_rho_max,
)

__all__ = [
    "GENERIC_GNYQ_MS",
    "LOSS_TERMS",
    "ZPNN_THRESHOLD_WINDOW",
    "LossTerm",
    "PhysicsLoss",
    "TermInputs",
    "anchor_loss",
    "default_border",
    "ergas_loss",
    "loss_weights",
    "q2n_loss",
    "register_loss_term",
    "reproject_fused",
    "spatial_loss",
    "spectral_loss",
    "zpnn_rho_max",
]
