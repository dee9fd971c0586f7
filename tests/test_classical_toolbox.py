"""tta.classical against slow NumPy re-statements of the toolbox MATLAB files.

Each ``ref_*`` function below follows one file of DLPan-Toolbox
``02-Test-toolbox-for-traditional-and-DL(Matlab)/`` line by line (images ``(H, W, C)`` as in
MATLAB, loops over bands), with its own NumPy/SciPy versions of ``fspecial``/``fwind1``
(``genMTF.m``, ``LPfilterGauss.m``), ``imfilter(.., 'replicate')``, ``interp23tap.m``,
``imresize(.., 'nearest')``, ``prctile``, ``ndwt2_working.m``/``indwt2_working.m``, ``cov``,
``std2``, backslash and ``lsqlin`` (as NNLS on the full problem). Shared with the package:
only MATLAB's bicubic ``imresize`` (:func:`tta.physics.pan_downsample` /
:func:`tta.physics.bicubic_upsample`, tested in ``test_physics.py``). Package convention kept
in the re-statements: every Gaussian FIR kernel is normalised to sum 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage, signal
from scipy.optimize import nnls

from tta.classical import pansharpen
from tta.physics import bicubic_upsample, mtf_kernels, pan_downsample
from tta.sensors import get_sensor

EPS = np.finfo(np.float64).eps
N_TAPS = 41


# ----------------------------------------------------------------------------- test data
def synthetic(sensor: str, h: int = 16, seed: int = 0, batch: int = 1):
    """Correlated, positive, textured MS ``(B, C, h, w)`` and PAN ``(B, 1, 4h, 4w)`` in DN."""
    s = get_sensor(sensor)
    rng = np.random.default_rng(seed)
    r, c = s.ratio, s.n_bands
    big = r * h
    ms, pan = [], []
    for _ in range(batch):
        base = ndimage.gaussian_filter(rng.normal(size=(big, big)), 2.0, mode="wrap")
        texture = ndimage.gaussian_filter(rng.normal(size=(big, big)), 0.7, mode="wrap")
        bands = []
        for k in range(c):
            own = ndimage.gaussian_filter(rng.normal(size=(big, big)), 3.0, mode="wrap")
            band = 600 + 40 * k + 500 * (0.8 + 0.1 * k / c) * base + 200 * own + 100 * texture
            bands.append(band)
        hr = np.stack(bands)  # (C, H, W) "true" HR MS
        lr = ndimage.uniform_filter(hr, size=(1, r, r), mode="wrap")[:, r // 2 :: r, r // 2 :: r]
        weights = rng.uniform(0.5, 1.5, size=c)
        weights /= weights.sum()
        p = np.tensordot(weights, hr, axes=1) + 10 * rng.normal(size=(big, big))
        ms.append(lr)
        pan.append(p[None])
    to = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a)))  # noqa: E731
    return to(ms), to(pan)


# ----------------------------------------------------------------------------- MATLAB pieces
def gauss_fir(gain: float, ratio: int, width: int) -> np.ndarray:
    """``fwind1(Hd, kaiser(N))`` of ``fspecial('gaussian', N, alpha)/max`` (unit sum).

    ``width`` is ``N - 1`` in ``genMTF.m`` / ``MTF_PAN.m`` and ``N`` in ``LPfilterGauss.m``.
    """
    n = N_TAPS
    alpha = np.sqrt((width * (1.0 / ratio) / 2.0) ** 2 / (-2.0 * np.log(gain)))
    t = np.arange(n) - (n - 1) / 2.0
    hh = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * alpha**2))
    hh[hh < EPS * hh.max()] = 0.0
    hh = hh / hh.sum()
    hd = hh / hh.max()
    rot = lambda a: np.rot90(a, 2)  # noqa: E731
    fsamp = rot(np.fft.fftshift(np.fft.ifft2(rot(np.fft.fftshift(rot(hd))))))
    t1 = (np.arange(n) - (n - 1) / 2.0) * 2.0 / (n - 1)
    t12 = np.sqrt(t1[None, :] ** 2 + t1[:, None] ** 2)
    outside = (t12 < t1[0]) | (t12 > t1[-1])
    win = np.interp(np.where(outside, 0.0, t12), t1, np.kaiser(n, 0.5))
    win[outside] = 0.0
    k = np.real(fsamp * win)
    return k / k.sum()


def imfilter_rep(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    return ndimage.correlate(img, k, mode="nearest")


def lp_filter_gauss(img: np.ndarray, ratio: int) -> np.ndarray:
    return imfilter_rep(img, gauss_fir(0.3, ratio, N_TAPS))


def gen_mtf(sensor, ratio: int) -> list[np.ndarray]:
    return [gauss_fir(g, ratio, N_TAPS - 1) for g in sensor.mtf_ms]


def nearest_down(img: np.ndarray, ratio: int) -> np.ndarray:
    """``imresize(img, 1/ratio, 'nearest')``: 1-based samples ``ratio/2 + 1 + ratio*k``."""
    return img[ratio // 2 :: ratio, ratio // 2 :: ratio]


CDF23_HALF = 2.0 * np.array([0.5, 0.305334091185, 0.0, -0.072698593239, 0.0, 0.021809577942,
                             0.0, -0.005192756653, 0.0, 0.000807762146, 0.0, -0.000060081482])


def interp23tap(img: np.ndarray, ratio: int) -> np.ndarray:
    """``interp23tap.m`` on a 2-D image (``ratio/2`` steps = ``log2(ratio)`` for 2 and 4)."""
    base = np.concatenate([CDF23_HALF[1:][::-1], CDF23_HALF])
    first = True
    for _ in range(ratio // 2):
        up = np.zeros((2 * img.shape[0], 2 * img.shape[1]))
        if first:
            up[1::2, 1::2] = img
            first = False
        else:
            up[0::2, 0::2] = img
        up = ndimage.correlate1d(up, base, axis=0, mode="wrap")
        img = ndimage.correlate1d(up, base, axis=1, mode="wrap")
    return img


def interp_ms(ms_lr: np.ndarray, ratio: int) -> np.ndarray:
    return np.stack([interp23tap(ms_lr[..., k], ratio) for k in range(ms_lr.shape[-1])], -1)


def imresize_bicubic(img: np.ndarray, ratio: int, down: bool) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.atleast_3d(img), -1, 0)))[None]
    out = pan_downsample(t, ratio) if down else bicubic_upsample(t, ratio)
    out = np.moveaxis(out[0].numpy(), 0, -1)
    return out[..., 0] if img.ndim == 2 else out


def std2(a: np.ndarray) -> float:
    return float(np.std(a, ddof=1))


def cov12(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.cov(a.ravel(), b.ravel())[0, 1])


def backslash(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(a, b, rcond=None)[0]


# ndwt2_working.m / indwt2_working.m with the filters of LPfilterPlusDec.m and AWLP.m
_B3 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_DELTA = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
WF = (math.sqrt(2) * _B3, math.sqrt(2) * (_DELTA - _B3),
      math.sqrt(2) * _B3, math.sqrt(2) * (_DELTA + _B3))


def _conv_rows(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    return signal.convolve2d(x, f[None, :], mode="full")


def _wdec1d(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, transpose: bool):
    if transpose:
        x = x.T
    lf, lx = len(lo), x.shape[1]
    lc = lx + lf - 1
    x = np.concatenate([x[:, lf - 2 :: -1], x, x[:, ::-1][:, :lf]], axis=1)  # 'sym'
    low, high = _conv_rows(x, lo), _conv_rows(x, hi)
    n = low.shape[1]
    low, high = low[:, lf - 1 : n - lf + 1], high[:, lf - 1 : n - lf + 1]
    first = (low.shape[1] - lc) // 2
    low, high = low[:, first : first + lc], high[:, first : first + lc]
    return (low.T, high.T) if transpose else (low, high)


def ndwt2(x: np.ndarray, level: int) -> dict:
    lod, hid = WF[0], WF[1]
    sizes = [None] * (level + 1)
    sizes[level] = x.shape
    cfs: list[np.ndarray] = []
    for k in range(1, level + 1):
        a_lo, d_hi = _wdec1d(x, lod, hid, False)
        d11, d12 = _wdec1d(a_lo, lod, hid, True)
        d21, d22 = _wdec1d(d_hi, lod, hid, True)
        dec = [d11, d21, d12, d22]  # reshape(dec, 4, 1): column-major order of the 2x2 cell
        x = d11
        sizes[level - k] = x.shape
        cfs = dec + (cfs[1:] if k > 1 else [])
    return {"dec": cfs, "sizes": sizes, "level": level}


def indwt2(wt: dict) -> np.ndarray:
    lor, hir = WF[2], WF[3]
    cfs = list(wt["dec"])
    idx = 0
    x = None
    for k in range(1, wt["level"] + 1):
        d11, d21, d12, d22 = cfs[idx : idx + 4]
        s_ini = wt["sizes"][k]
        w1 = _conv_rows(d11.T, lor).T + _conv_rows(d12.T, hir).T
        w2 = _conv_rows(d21.T, lor).T + _conv_rows(d22.T, hir).T
        x = (_conv_rows(w1, lor) + _conv_rows(w2, hir)) / 4.0
        f = [(x.shape[i] - s_ini[i]) // 2 for i in range(2)]
        c = [-(-(x.shape[i] - s_ini[i]) // 2) for i in range(2)]
        x = x[f[0] : x.shape[0] - c[0], f[1] : x.shape[1] - c[1]]
        cfs[idx + 3] = x
        idx += 3
    return x


def wavelet_lowpass(img: np.ndarray, ratio: int) -> np.ndarray:
    wt = ndwt2(img, math.ceil(math.log2(ratio)))
    wt["dec"] = [wt["dec"][0]] + [np.zeros_like(d) for d in wt["dec"][1:]]
    return indwt2(wt)


def lp_filter_plus_dec(img: np.ndarray, ratio: int) -> np.ndarray:
    return nearest_down(wavelet_lowpass(img, ratio), ratio)


# ----------------------------------------------------------------------------- methods
def ref_bt_h(i_ms, i_pan, ratio):
    """BT-H/BroveyRegHazeMin.m."""
    nb = i_ms.shape[2]
    if nb == 4:
        fr = [0.95, 0.45, 0.40, 0.05]
        min_ms = np.array([fr[k] * np.percentile(i_ms[..., k].ravel(), 1, method="hazen")
                           for k in range(4)])
    else:
        min_ms = np.array([i_ms[..., k].min() for k in range(nb)])
    image_hr_lr = lp_filter_gauss(i_pan, ratio)
    h = backslash(i_ms.reshape(-1, nb, order="F"), image_hr_lr.reshape(-1, order="F"))
    intensity = np.sum((i_ms - min_ms) * h, axis=2)
    image_hr = ((i_pan - image_hr_lr.mean()) * (std2(intensity) / std2(image_hr_lr))
                + intensity.mean())
    i_ms_l = i_ms - min_ms
    i_ms_l[i_ms_l < 0] = 0
    return i_ms_l * (image_hr / (intensity + EPS))[..., None] + min_ms


def ref_gsa(i_ms, i_pan, i_ms_lr, ratio):
    """GS/GSA.m."""
    nb = i_ms.shape[2]
    lr0 = i_ms - i_ms.mean(axis=(0, 1))
    lr_lp0 = i_ms_lr - i_ms_lr.mean(axis=(0, 1))
    hr0 = lp_filter_plus_dec(i_pan - i_pan.mean(), ratio)
    regs = np.concatenate([lr_lp0, np.ones(i_ms_lr.shape[:2] + (1,))], axis=2)
    alpha = backslash(regs.reshape(-1, nb + 1, order="F"), hr0.reshape(-1, order="F"))
    regs_hr = np.concatenate([lr0, np.ones(i_ms.shape[:2] + (1,))], axis=2)
    intensity = np.sum(regs_hr * alpha, axis=2)
    i0 = intensity - intensity.mean()
    g = np.ones(nb + 1)
    for ii in range(nb):
        g[ii + 1] = cov12(i0, lr0[..., ii]) / np.var(i0.ravel(), ddof=1)
    delta = (i_pan - i_pan.mean()) - i0
    v = np.concatenate([i0[..., None], lr0], axis=2)
    v_hat = v + delta[..., None] * g
    fused = v_hat[..., 1:]
    for ii in range(nb):
        fused[..., ii] = fused[..., ii] - fused[..., ii].mean() + i_ms[..., ii].mean()
    return fused


def ref_bdsd_pc(i_ms, i_pan, ratio, sensor):
    """BDSD/BDSD_PC.m (lsqlin with A = eye, A(1,1) = -1, A g <= 0 as NNLS with sign flips)."""
    nb = i_ms.shape[2]
    i_gt = imresize_bicubic(i_ms, ratio, down=True)
    ks = gen_mtf(sensor, ratio)
    i_ms_lr = np.stack([imfilter_rep(i_gt[..., k], ks[k]) for k in range(nb)], -1)
    i_pan_lr = nearest_down(imfilter_rep(i_pan, gauss_fir(sensor.mtf_pan, ratio, N_TAPS - 1)),
                            ratio)
    hmat = np.concatenate([i_pan_lr.reshape(-1, 1, order="F"),
                           i_ms_lr.reshape(-1, nb, order="F")], axis=1)
    flip = np.diag([1.0] + [-1.0] * nb)
    hr = np.concatenate([i_pan.reshape(-1, 1, order="F"), i_ms.reshape(-1, nb, order="F")], 1)
    fused = np.zeros_like(i_ms)
    for ii in range(nb):
        target = (i_gt[..., ii] - i_ms_lr[..., ii]).reshape(-1, order="F")
        beta = nnls(hmat @ flip, target, maxiter=1000)[0]
        gamma = flip @ beta
        fused[..., ii] = i_ms[..., ii] + (hr @ gamma).reshape(i_pan.shape, order="F")
    return fused


def ref_mtf_glp_fs(i_ms, i_pan, sensor, ratio):
    """GLP/MTF_GLP_FS.m."""
    ks = gen_mtf(sensor, ratio)
    fused = np.zeros_like(i_ms)
    for ii in range(i_ms.shape[2]):
        pan_lp = interp23tap(nearest_down(imfilter_rep(i_pan, ks[ii]), ratio), ratio)
        msb = i_ms[..., ii]
        g_fs = cov12(msb, i_pan) / cov12(pan_lp, i_pan)
        fused[..., ii] = msb + g_fs * (i_pan - pan_lp)
    return fused


def ref_mtf_glp_hpm(i_ms, i_pan, sensor, ratio):
    """GLP/MTF_GLP_HPM.m."""
    nb = i_ms.shape[2]
    image_hr = np.repeat(i_pan[..., None], nb, axis=2)
    for ii in range(nb):
        p = image_hr[..., ii]
        gain = std2(i_ms[..., ii]) / std2(lp_filter_gauss(p, ratio))
        image_hr[..., ii] = (p - p.mean()) * gain + i_ms[..., ii].mean()
    ks = gen_mtf(sensor, ratio)
    pan_lp = np.zeros_like(i_ms)
    for ii in range(nb):
        t = nearest_down(imfilter_rep(image_hr[..., ii], ks[ii]), ratio)
        pan_lp[..., ii] = interp23tap(t, ratio)
    return i_ms * (image_hr / (pan_lp + EPS))


def ref_awlp(i_ms, i_pan, ratio):
    """AWLP/AWLP.m."""
    bands = i_ms.shape[2]
    sum_image = np.sum(i_ms, axis=2) / bands
    intensity_ratio = i_ms / (sum_image + EPS)[..., None]
    pans = np.repeat(i_pan[..., None], bands, axis=2)
    image_hr_lr = imresize_bicubic(imresize_bicubic(pans, ratio, True), ratio, False)
    for ii in range(bands):
        p = pans[..., ii]
        pans[..., ii] = ((p - p.mean()) * (std2(i_ms[..., ii]) / std2(image_hr_lr[..., ii]))
                         + i_ms[..., ii].mean())
    fused = np.zeros_like(i_ms)
    for i in range(bands):
        details = pans[..., i] - wavelet_lowpass(pans[..., i], ratio)
        fused[..., i] = details * intensity_ratio[..., i] + i_ms[..., i]
    return fused


def reference(method: str, ms_lr: np.ndarray, pan: np.ndarray, sensor) -> np.ndarray:
    """Toolbox re-statement for one sample: ``ms_lr`` ``(h, w, C)``, ``pan`` ``(H, W)``."""
    r = sensor.ratio
    i_ms = interp_ms(ms_lr, r)
    if method == "exp":
        return i_ms
    if method == "bt-h":
        return ref_bt_h(i_ms, pan, r)
    if method == "gsa":
        return ref_gsa(i_ms, pan, ms_lr, r)
    if method == "bdsd-pc":
        return ref_bdsd_pc(i_ms, pan, r, sensor)
    if method == "mtf-glp-fs":
        return ref_mtf_glp_fs(i_ms, pan, sensor, r)
    if method == "mtf-glp-hpm":
        return ref_mtf_glp_hpm(i_ms, pan, sensor, r)
    if method == "awlp":
        return ref_awlp(i_ms, pan, r)
    raise AssertionError(method)


# ----------------------------------------------------------------------------- tests
def test_gauss_fir_matches_physics_kernels():
    """The re-statement's genMTF kernels equal tta.physics.mtf_kernels (same convention)."""
    for gain in (0.15, 0.3, 0.355):
        k = mtf_kernels([gain], 4, dtype=torch.float64)[0].numpy()
        np.testing.assert_allclose(gauss_fir(gain, 4, N_TAPS - 1), k, rtol=0, atol=1e-15)


def test_wavelet_lowpass_restatement_properties():
    """The literal ndwt2/indwt2 port: sizes grow by 4 per level, constants are kept."""
    wt = ndwt2(np.ones((20, 24)), 2)
    assert [d.shape for d in wt["dec"][:1]] == [(28, 32)]
    assert len(wt["dec"]) == 7
    np.testing.assert_allclose(wavelet_lowpass(np.full((20, 24), 3.0), 4), 3.0, rtol=1e-14)


def test_ndwt_lowpass_matches_literal_port():
    from tta.classical._common import ndwt_lowpass

    rng = np.random.default_rng(3)
    for ratio, shape in ((2, (13, 17)), (4, (32, 24)), (8, (40, 40))):
        img = rng.normal(size=shape)
        got = ndwt_lowpass(torch.from_numpy(img)[None, None], ratio)[0, 0].numpy()
        np.testing.assert_allclose(got, wavelet_lowpass(img, ratio), rtol=0, atol=1e-13)


CASES = [("WV3", 0), ("GF2", 1), ("QB", 2)]
METHODS = ["exp", "bt-h", "gsa", "bdsd-pc", "mtf-glp-fs", "mtf-glp-hpm", "awlp"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("sensor_name", "seed"), CASES)
def test_matches_toolbox_restatement(method, sensor_name, seed):
    sensor = get_sensor(sensor_name)
    ms, pan = synthetic(sensor_name, seed=seed)
    got = pansharpen(method, ms, pan, sensor=sensor)[0].numpy()
    ref = reference(method, np.moveaxis(ms[0].numpy(), 0, -1), pan[0, 0].numpy(), sensor)
    ref = np.moveaxis(ref, -1, 0)
    assert got.shape == ref.shape == (sensor.n_bands, *pan.shape[-2:])
    assert np.isfinite(got).all()
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err < 1e-9, f"{method} on {sensor_name}: max relative deviation {err:.2e}"
    # not a trivial pass: the method changes I_MS (except EXP)
    if method != "exp":
        i_ms = np.moveaxis(interp_ms(np.moveaxis(ms[0].numpy(), 0, -1), sensor.ratio), -1, 0)
        assert np.abs(got - i_ms).max() > 1.0
