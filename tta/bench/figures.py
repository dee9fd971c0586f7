"""PNG figures of a benchmark: RGB quick-looks with error maps, and quality versus time.

Rendered with matplotlib's Agg backend (no display needed); each function returns PNG bytes.
RGB uses the bands named red/green/blue (the sensor presets' names), stretched between the 1st
and 99th percentiles of the reference (the ground truth at reduced resolution, the MS
otherwise) so every panel shares one scale.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["quicklook_png", "rgb_indices", "tradeoff_png"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def rgb_indices(band_names: Sequence[str]) -> tuple[int, int, int]:
    """Indices of the red, green and blue bands (the first three bands when unnamed)."""
    names = [b.lower() for b in band_names]
    if all(c in names for c in ("red", "green", "blue")):
        return names.index("red"), names.index("green"), names.index("blue")
    n = len(names)
    return (min(2, n - 1), min(1, n - 1), 0)


def _stretch(img: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = (img - lo[:, None, None]) / np.maximum(hi - lo, 1e-6)[:, None, None]
    return np.clip(out, 0, 1).transpose(1, 2, 0)


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def quicklook_png(scene: Any, fused: Mapping[str, np.ndarray], *, title: str = "",
                  max_side: int = 384) -> bytes:
    """RGB panels: the MS (nearest-upsampled), the PAN and every product; for a reduced
    scene the ground truth first and a second row of mean absolute error maps (DN, one scale).

    The centre ``max_side`` square (PAN pixels) is shown so details stay visible.
    """
    plt = _pyplot()
    r = scene.ratio
    h, w = scene.pan.shape
    side = min(max_side, h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    win = (slice(y0, y0 + side), slice(x0, x0 + side))
    idx = list(rgb_indices(scene.band_names))
    ms_up = np.repeat(np.repeat(scene.ms, r, axis=1), r, axis=2)[:, win[0], win[1]]
    ref = scene.gt[:, win[0], win[1]] if scene.gt is not None else ms_up
    lo = np.percentile(ref[idx], 1, axis=(1, 2))
    hi = np.percentile(ref[idx], 99, axis=(1, 2))
    panels: list[tuple[str, np.ndarray, str]] = [
        (f"MS (nearest ×{r})", _stretch(ms_up[idx], lo, hi), "rgb")]
    pan = scene.pan[win]
    plo, phi = np.percentile(pan, [1, 99])
    panels.append(("PAN", np.clip((pan - plo) / max(phi - plo, 1e-6), 0, 1), "gray"))
    if scene.gt is not None:
        panels.append(("reference (gt)", _stretch(ref[idx], lo, hi), "rgb"))
    names = list(fused)
    for name in names:
        panels.append((name, _stretch(fused[name][:, win[0], win[1]][idx], lo, hi), "rgb"))
    errors = []
    if scene.gt is not None:
        for name in names:
            errors.append((name, np.abs(fused[name][:, win[0], win[1]] - ref).mean(axis=0)))
    ncols = len(panels)
    nrows = 2 if errors else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.5 * nrows), squeeze=False)
    for ax, (name, img, kind) in zip(axes[0], panels, strict=True):
        ax.imshow(img, cmap="gray" if kind == "gray" else None, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    if errors:
        vmax = float(np.percentile(np.stack([e for _, e in errors]), 99)) or 1.0
        offset = ncols - len(errors)
        for ax in axes[1][:offset]:
            ax.set_visible(False)
        im = None
        for ax, (name, err) in zip(axes[1][offset:], errors, strict=True):
            im = ax.imshow(err, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_title(f"|{name} − gt|", fontsize=8)
        if im is not None:
            fig.colorbar(im, ax=list(axes[1][offset:]), shrink=0.8,
                         label="DN, mean over bands")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(f"{title} (centre {side}×{side} PAN px)", fontsize=9)
    return _png(fig)


def tradeoff_png(rows: Sequence[Mapping[str, Any]], protocol: str, key: str) -> bytes:
    """Quality (``key``, seed mean ± std) against adapt+infer time (log scale), one panel per
    target; colour = method, marker = source; classical and in-sensor rows in grey."""
    from tta.evaluation import BETTER

    plt = _pyplot()
    targets = list(dict.fromkeys(r["target"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows if r["kind"] in ("direct",
                                                                             "adapted")))
    sources = list(dict.fromkeys(r["source"] for r in rows if r["source"] != "-"))
    colours = plt.get_cmap("tab10")
    markers = "osD^vP*Xh<>"
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets), 3.8),
                             squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        for r in (r for r in rows if r["target"] == target):
            t, q = r.get("t_adapt_and_infer", math.nan), r.get(key, math.nan)
            if not (math.isfinite(t) and math.isfinite(q)):
                continue
            t = max(t, 1e-3)
            if r["kind"] in ("classical", "reference"):
                ax.scatter(t, q, color="0.55", marker="_" if r["kind"] == "reference" else "x",
                           s=80)
                ax.annotate(r["method"], (t, q), fontsize=6, color="0.4",
                            xytext=(3, 2), textcoords="offset points")
                continue
            c = colours(methods.index(r["method"]) % 10)
            m = markers[sources.index(r["source"]) % len(markers)]
            std = r.get(f"{key}_std", 0.0)
            ax.errorbar(t, q, yerr=std if math.isfinite(std) and r["n"] > 1 else None,
                        color=c, marker=m, ms=5, capsize=2, lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("adapt + infer time per scene (s)")
        ax.set_ylabel(f"{key} ({'higher' if BETTER[key] == 'up' else 'lower'} is better)")
        ax.set_title(f"{target} ({protocol.upper()})", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], color=colours(i % 10), marker="o", ls="", label=m)
               for i, m in enumerate(methods)]
    handles += [plt.Line2D([], [], color="k", marker=markers[i % len(markers)], ls="",
                           label=s) for i, s in enumerate(sources)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               frameon=False)
    fig.tight_layout()
    return _png(fig)
