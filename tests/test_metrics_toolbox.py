"""The fast torch indexes against slow, loop-based NumPy restatements of the reference code.

Each ``mat_*`` function below restates one MATLAB file line by line (loops over blocks,
bands and windows as the original), from the public text of the Vivone et al. toolbox as
shipped in liangjiandeng/DLPan-Toolbox (``Quality_Indices/``) and of matciotola/
fr-pansh-eval-tool (``MATLAB/``). They live only here, as the yardstick of tta.metrics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

import tta.physics as ph
from tta.metrics import (
    d_lambda,
    d_rho,
    d_s,
    ergas,
    local_cross_correlation,
    q2n,
    q_index,
    reprojection_phases,
    sam,
    scc,
)

EPS = np.finfo(np.float64).eps


# ============================================================================ restatements
def mat_uint16(x):
    """MATLAB uint16(): NaN -> 0, round half away from zero, saturate."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    r = np.sign(x) * np.floor(np.abs(x) + 0.5)
    return np.clip(r, 0, 65535)


def norm_blocco(x):
    a = np.mean(x)
    c = np.std(x, ddof=1)
    if c == 0:
        c = EPS
    y = ((x - a) / c) + 1
    return y, a, c


def onion_mult(onion1, onion2):
    n = len(onion1)
    if n > 1:
        L = n // 2
        a = onion1[:L]
        b = onion1[L:]
        b = np.concatenate([b[:1], -b[1:]])
        c = onion2[:L]
        d = onion2[L:]
        d = np.concatenate([d[:1], -d[1:]])
        if n == 2:
            ris = np.concatenate([a * c - d * b, a * d + c * b])
        else:
            ris1 = onion_mult(a, c)
            ris2 = onion_mult(d, np.concatenate([b[:1], -b[1:]]))
            ris3 = onion_mult(np.concatenate([a[:1], -a[1:]]), d)
            ris4 = onion_mult(c, b)
            aux1 = ris1 - ris2
            aux2 = ris3 + ris4
            ris = np.concatenate([aux1, aux2])
    else:
        ris = onion1 * onion2
    return ris


def onion_mult2d(onion1, onion2):
    n3 = onion1.shape[2]
    if n3 > 1:
        L = n3 // 2
        a = onion1[:, :, :L]
        b = onion1[:, :, L:]
        b = np.concatenate([b[:, :, :1], -b[:, :, 1:]], axis=2)
        c = onion2[:, :, :L]
        d = onion2[:, :, L:]
        d = np.concatenate([d[:, :, :1], -d[:, :, 1:]], axis=2)
        if n3 == 2:
            ris = np.concatenate([a * c - d * b, a * d + c * b], axis=2)
        else:
            ris1 = onion_mult2d(a, c)
            ris2 = onion_mult2d(d, np.concatenate([b[:, :, :1], -b[:, :, 1:]], axis=2))
            ris3 = onion_mult2d(np.concatenate([a[:, :, :1], -a[:, :, 1:]], axis=2), d)
            ris4 = onion_mult2d(c, b)
            aux1 = ris1 - ris2
            aux2 = ris3 + ris4
            ris = np.concatenate([aux1, aux2], axis=2)
    else:
        ris = onion1 * onion2
    return ris


def onions_quality(dat1, dat2, size1):
    dat1 = dat1.astype(np.float64).copy()
    dat2 = dat2.astype(np.float64).copy()
    dat2 = np.concatenate([dat2[:, :, :1], -dat2[:, :, 1:]], axis=2)
    n3 = dat1.shape[2]
    size2 = size1
    for i in range(n3):
        a1, s, t = norm_blocco(dat1[:, :, i])
        dat1[:, :, i] = a1
        if s == 0:
            if i == 0:
                dat2[:, :, i] = dat2[:, :, i] - s + 1
            else:
                dat2[:, :, i] = -(-dat2[:, :, i] - s + 1)
        else:
            if i == 0:
                dat2[:, :, i] = ((dat2[:, :, i] - s) / t) + 1
            else:
                dat2[:, :, i] = -(((-dat2[:, :, i] - s) / t) + 1)
    m1 = np.zeros(n3)
    m2 = np.zeros(n3)
    mod_q1m = 0.0
    mod_q2m = 0.0
    mod_q1 = np.zeros((size1, size2))
    mod_q2 = np.zeros((size1, size2))
    for i in range(n3):
        m1[i] = np.mean(dat1[:, :, i])
        m2[i] = np.mean(dat2[:, :, i])
        mod_q1m = mod_q1m + m1[i] ** 2
        mod_q2m = mod_q2m + m2[i] ** 2
        mod_q1 = mod_q1 + dat1[:, :, i] ** 2
        mod_q2 = mod_q2 + dat2[:, :, i] ** 2
    mod_q1m = math.sqrt(mod_q1m)
    mod_q2m = math.sqrt(mod_q2m)
    mod_q1 = np.sqrt(mod_q1)
    mod_q2 = np.sqrt(mod_q2)
    termine2 = mod_q1m * mod_q2m
    termine4 = mod_q1m**2 + mod_q2m**2
    nn = size1 * size2
    int1 = nn / (nn - 1) * np.mean(mod_q1**2)
    int2 = nn / (nn - 1) * np.mean(mod_q2**2)
    termine3 = int1 + int2 - nn / (nn - 1) * (mod_q1m**2 + mod_q2m**2)
    mean_bias = 2 * termine2 / termine4
    if termine3 == 0:
        q = np.zeros(n3)
        q[n3 - 1] = mean_bias
    else:
        cbm = 2 / termine3
        qu = onion_mult2d(dat1, dat2)
        qm = onion_mult(m1, m2)
        qv = np.zeros(n3)
        for i in range(n3):
            qv[i] = nn / (nn - 1) * np.mean(qu[:, :, i])
        q = qv - nn / (nn - 1) * qm
        q = q * mean_bias * cbm
    return q


def _mirror_extend(a, n1, n2, est1, est2):
    ia = np.zeros((n1 + est1, n2 + est2))
    ia[:n1, :n2] = a
    ia[:, n2 : n2 + est2] = ia[:, n2 - est2 : n2][:, ::-1]  # ia(:,N2:-1:N2-est2+1)
    ia[n1 : n1 + est1, :] = ia[n1 - est1 : n1, :][::-1, :]  # ia(N1:-1:N1-est1+1,:)
    return ia


def mat_q2n(i_gt, i_f, q_blocks_size, q_shift, cast=True):
    """q2n.m on (H, W, C) arrays."""
    n1, n2, n3 = i_gt.shape
    size2 = q_blocks_size
    stepx = math.ceil(n1 / q_shift)
    stepy = math.ceil(n2 / q_shift)
    if stepy <= 0:
        stepy = 1
        stepx = 1
    est1 = (stepx - 1) * q_shift + q_blocks_size - n1
    est2 = (stepy - 1) * q_shift + q_blocks_size - n2
    if (est1 != 0) + (est2 != 0) > 0:
        i_gt = np.stack([_mirror_extend(i_gt[:, :, i], n1, n2, est1, est2)
                         for i in range(n3)], axis=2)
        i_f = np.stack([_mirror_extend(i_f[:, :, i], n1, n2, est1, est2)
                        for i in range(n3)], axis=2)
    if cast:
        i_f = mat_uint16(i_f)
        i_gt = mat_uint16(i_gt)
    n1, n2, n3 = i_gt.shape
    if math.ceil(math.log2(n3)) - math.log2(n3) != 0:
        ndif = 2 ** math.ceil(math.log2(n3)) - n3
        dif = np.zeros((n1, n2, ndif))
        i_gt = np.concatenate([i_gt, dif], axis=2)
        i_f = np.concatenate([i_f, dif], axis=2)
    n3 = i_gt.shape[2]
    valori = np.zeros((stepx, stepy, n3))
    for j in range(stepx):
        for i in range(stepy):
            r0, c0 = j * q_shift, i * q_shift
            o = onions_quality(i_gt[r0 : r0 + q_blocks_size, c0 : c0 + size2, :],
                               i_f[r0 : r0 + q_blocks_size, c0 : c0 + size2, :],
                               q_blocks_size)
            valori[j, i, :] = o
    q2n_map = np.sqrt(np.sum(valori**2, axis=2))
    return float(np.mean(q2n_map)), q2n_map


def img_qi(img1, img2, block_size):
    """Wang & Bovik img_qi.m (filter2(..., 'valid') is a 'valid' correlation)."""
    n = block_size**2
    sum2_filter = np.ones((block_size, block_size))
    img1_sq = img1 * img1
    img2_sq = img2 * img2
    img12 = img1 * img2
    img1_sum = correlate2d(img1, sum2_filter, mode="valid")
    img2_sum = correlate2d(img2, sum2_filter, mode="valid")
    img1_sq_sum = correlate2d(img1_sq, sum2_filter, mode="valid")
    img2_sq_sum = correlate2d(img2_sq, sum2_filter, mode="valid")
    img12_sum = correlate2d(img12, sum2_filter, mode="valid")
    img12_sum_mul = img1_sum * img2_sum
    img12_sq_sum_mul = img1_sum * img1_sum + img2_sum * img2_sum
    numerator = 4 * (n * img12_sum - img12_sum_mul) * img12_sum_mul
    denominator1 = n * (img1_sq_sum + img2_sq_sum) - img12_sq_sum_mul
    denominator = denominator1 * img12_sq_sum_mul
    quality_map = np.ones(denominator.shape)
    index = (denominator1 == 0) & (img12_sq_sum_mul != 0)
    quality_map[index] = 2 * img12_sum_mul[index] / img12_sq_sum_mul[index]
    index = denominator != 0
    quality_map[index] = numerator[index] / denominator[index]
    return float(np.mean(quality_map))


def mat_q(i1, i2):
    """Q.m: img_qi with 32x32 windows per band, averaged."""
    return float(np.mean([img_qi(i1[:, :, b], i2[:, :, b], 32) for b in range(i1.shape[2])]))


def mat_sam(i1, i2):
    prod_scal = np.sum(i1 * i2, axis=2).reshape(-1)
    norm_orig = np.sum(i1 * i1, axis=2)
    norm_fusa = np.sum(i2 * i2, axis=2)
    prod_norm = np.sqrt(norm_orig * norm_fusa).reshape(-1)
    z = prod_norm == 0
    prod_scal, prod_norm = prod_scal[~z], prod_norm[~z]
    angolo = np.sum(np.real(np.arccos((prod_scal / prod_norm).astype(complex)))) / prod_norm.size
    return float(angolo * 180 / np.pi)


def mat_ergas(i1, i2, ratio):
    err = i1 - i2
    acc = 0.0
    for b in range(err.shape[2]):
        acc = acc + np.mean(err[:, :, b] ** 2) / np.mean(i1[:, :, b]) ** 2
    return float((100 / ratio) * math.sqrt((1 / err.shape[2]) * acc))


SOBEL = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def mat_scc(i_f, i_gt):
    """SCC.m: imfilter (correlation, zero padding, 'same') of the 1-pixel-cut images."""

    def lap(img):
        out = np.zeros((img.shape[0] - 2, img.shape[1] - 2, img.shape[2]))
        for idim in range(img.shape[2]):
            inner = img[1:-1, 1:-1, idim]
            gy = correlate2d(inner, SOBEL, mode="same", boundary="fill")
            gx = correlate2d(inner, SOBEL.T, mode="same", boundary="fill")
            out[:, :, idim] = np.sqrt(gy**2 + gx**2)
        return out

    lf, lg = lap(i_f), lap(i_gt)
    s = np.sum(lf * lg)
    s = s / math.sqrt(np.sum(lf**2))
    s = s / math.sqrt(np.sum(lg**2))
    return float(s)


def uqi(x, y):
    x = x.ravel().astype(np.float64)
    y = y.ravel().astype(np.float64)
    mx, my = np.mean(x), np.mean(y)
    c = np.cov(x, y)
    return 4 * c[0, 1] * mx * my / (c[0, 0] + c[1, 1]) / (mx**2 + my**2)


def blockproc_uqi(band1, band2, s):
    """blockproc(band1, [S S], fun_uqi) with band2's block at the same location."""
    rows = range(0, band1.shape[0], s)
    cols = range(0, band1.shape[1], s)
    return np.array([[uqi(band1[r : r + s, c : c + s], band2[r : r + s, c : c + s])
                      for c in cols] for r in rows])


def mat_d_lambda(i_f, i_ms, s, p=1):
    nb = i_f.shape[2]
    acc = 0.0
    for i in range(nb - 1):
        for j in range(i + 1, nb):
            q_exp = np.mean(blockproc_uqi(i_ms[:, :, i], i_ms[:, :, j], s))
            q_fused = np.mean(blockproc_uqi(i_f[:, :, i], i_f[:, :, j], s))
            acc = acc + abs(q_fused - q_exp) ** p
    npairs = (nb**2 - nb) / 2
    return float((acc / npairs) ** (1 / p))


def mat_d_s(i_f, i_ms, i_pan, pan_filt, s, q=1):
    nb = i_f.shape[2]
    acc = 0.0
    for i in range(nb):
        q_high = np.mean(blockproc_uqi(i_f[:, :, i], i_pan, s))
        q_low = np.mean(blockproc_uqi(i_ms[:, :, i], pan_filt, s))
        acc = acc + abs(q_high - q_low) ** q
    return float((acc / nb) ** (1 / q))


def integral(img):
    """integralImage(img)(2:end, 2:end): inclusive 2-D cumulative sum."""
    return np.cumsum(np.cumsum(img, axis=0), axis=1)


def mat_xcorr(i, j, half_width):
    """local_cross_correlation.m for 2-D arrays (double instead of single)."""
    w = math.ceil(half_width)
    ep = 1e-20
    i = np.pad(i.astype(np.float64), w)
    j = np.pad(j.astype(np.float64), w)
    i_cum, j_cum = integral(i), integral(j)

    def box(cum):
        return (cum[2 * w :, 2 * w :] - cum[: -2 * w, 2 * w :] - cum[2 * w :, : -2 * w]
                + cum[: -2 * w, : -2 * w])

    i_mu = box(i_cum) / (4 * w**2)
    j_mu = box(j_cum) / (4 * w**2)
    i = i[w:-w, w:-w] - i_mu
    j = j[w:-w, w:-w] - j_mu
    i = np.pad(i, w)
    j = np.pad(j, w)
    sig2_ij = box(integral(i * j))
    sig2_i = np.maximum(ep, box(integral(i**2)))
    sig2_j = np.maximum(ep, box(integral(j**2)))
    return sig2_ij / ((sig2_i * sig2_j) ** 0.5 + ep)


def mat_d_rho(i, j, half_width):
    rho = np.stack([mat_xcorr(i[:, :, b], j, half_width) for b in range(i.shape[2])], axis=2)
    rho = np.clip(rho, -1.0, 1.0)
    return float(np.mean(1.0 - rho))


def mat_phases(ms, p_filtered, ratio):
    """generate_MTF_variables.m's search, on the PAN already filtered with h(:,:,1)."""
    nb = ms.shape[2]
    rho = np.zeros((ratio, ratio, nb))
    for i in range(ratio):
        for j in range(ratio):
            for b in range(nb):
                rho[i, j, b] = np.mean(mat_xcorr(ms[:, :, b], p_filtered[i::ratio, j::ratio], 2))
    out = np.zeros((nb, 2), dtype=int)
    for b in range(nb):
        pos = int(np.argmax(rho[:, :, b].ravel(order="F")))  # [~,pos] = max(x(:))
        out[b] = np.unravel_index(pos, (ratio, ratio), order="F")  # ind2sub
    return out


# ============================================================================ helpers
def hwc(t):
    """(C, H, W) tensor -> (H, W, C) float64 array."""
    return t.detach().cpu().double().numpy().transpose(1, 2, 0)


def dn_pair(rng, c, h, w, noise=120.0):
    """A smooth-ish random DN reference and a noisy, rescaled 'fused' version."""
    base = rng.uniform(100, 1900, size=(c, h, w))
    base = (base + np.roll(base, 1, -1) + np.roll(base, 1, -2)) / 3.0
    fused = base * rng.uniform(0.9, 1.1, size=(c, 1, 1)) + rng.normal(0, noise, (c, h, w))
    return torch.from_numpy(base), torch.from_numpy(fused)


def record(name, values):
    print(f"[agreement] {name}: max |torch - loop| = {max(values):.3e}")


# ============================================================================ Q2n
@pytest.mark.parametrize("c", [3, 4, 8, 1, 2])
def test_q2n_matches_loop_restatement(c, device):
    rng = np.random.default_rng(100 + c)
    diffs = []
    for h, w in [(70, 45), (64, 64), (33, 97)]:
        ref, fused = dn_pair(rng, c, h, w)
        got, gmap = q2n(ref.to(device), fused.to(device), return_map=True)
        want, wmap = mat_q2n(hwc(ref), hwc(fused), 32, 32)
        diffs.append(abs(float(got) - want))
        np.testing.assert_allclose(gmap.cpu().numpy(), wmap, atol=1e-9, rtol=0)
    record(f"Q2n C={c}", diffs)
    assert max(diffs) < 1e-6


def test_q2n_matches_loop_restatement_overlapping_blocks_and_no_cast(device):
    rng = np.random.default_rng(7)
    ref, fused = dn_pair(rng, 4, 40, 37)
    got = q2n(ref.to(device), fused.to(device), 16, 8)
    want, _ = mat_q2n(hwc(ref), hwc(fused), 16, 8)
    assert abs(float(got) - want) < 1e-9
    ref, fused = ref / 2047.0, fused / 2047.0  # normalised data: the cast would zero it
    got = q2n(ref.to(device), fused.to(device), dn_cast=False)
    want, _ = mat_q2n(hwc(ref), hwc(fused), 32, 32, cast=False)
    assert abs(float(got) - want) < 1e-9


def test_q2n_matches_loop_restatement_degenerate_blocks(device):
    """Flat blocks, zero blocks, a zero-mean reference band, saturation and rounding."""
    rng = np.random.default_rng(3)
    ref, fused = dn_pair(rng, 4, 64, 64)
    ref[:, :32, :32] = 500.0
    fused[:, :32, :32] = 500.0  # both flat and equal: termine3 == 0 branch
    ref[1, 32:, :32] = 0.0  # zero-mean reference band: the no-division branch
    fused[2, :, 32:] += 70000.0  # saturates in the cast
    fused[3, 32:, 32:] = 0.5  # rounds to 1 (half away from zero)
    got = q2n(ref.to(device), fused.to(device))
    want, _ = mat_q2n(hwc(ref), hwc(fused), 32, 32)
    assert abs(float(got) - want) < 1e-9


def test_onion_mult_matches_restatement():
    from tta.metrics import onion_mult as fast

    rng = np.random.default_rng(0)
    for n in (1, 2, 4, 8, 16):
        a, b = rng.normal(size=n), rng.normal(size=n)
        got = fast(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        np.testing.assert_allclose(got, onion_mult(a, b), atol=1e-14)


# ============================================================================ Q, SAM, ERGAS, SCC
@pytest.mark.parametrize("c", [1, 3, 4, 8])
def test_q_sam_ergas_scc_match_loop_restatements(c, device):
    rng = np.random.default_rng(200 + c)
    diffs = {"Q": [], "SAM": [], "ERGAS": [], "SCC": []}
    for h, w in [(70, 45), (32, 40), (50, 50)]:
        ref, fused = dn_pair(rng, c, h, w)
        x, y = ref.to(device), fused.to(device)
        a, b = hwc(ref), hwc(fused)
        diffs["Q"].append(abs(float(q_index(x, y)) - mat_q(a, b)))
        diffs["SAM"].append(abs(float(sam(x, y)) - mat_sam(a, b)))
        diffs["ERGAS"].append(abs(float(ergas(x, y, 4)) - mat_ergas(a, b, 4)))
        diffs["SCC"].append(abs(float(scc(x, y)) - mat_scc(b, a)))
    for name, vals in diffs.items():
        record(f"{name} C={c}", vals)
        # acos is ill-conditioned near 0 degrees: rounding of the cosine gives ~1e-8 degrees
        assert max(vals) < (1e-6 if name == "SAM" else 1e-9), name


def test_q_matches_restatement_on_flat_windows(device):
    ref = torch.full((2, 40, 40), 300.0, dtype=torch.float64)
    fused = ref.clone()
    fused[0, 20:, :] = 450.0  # some windows flat in both, with different means
    fused[1] = 0.0
    ref[1] = 0.0  # both zero: 0/0 -> the map keeps 1
    got = q_index(ref.to(device), fused.to(device))
    want = mat_q(hwc(ref), hwc(fused))
    assert abs(float(got) - want) < 1e-12


def test_sam_matches_restatement_with_zero_pixels(device):
    rng = np.random.default_rng(5)
    ref, fused = dn_pair(rng, 3, 20, 20)
    ref[:, :4, :] = 0.0
    fused[:, :, :3] = 0.0
    got = sam(ref.to(device), fused.to(device))
    assert abs(float(got) - mat_sam(hwc(ref), hwc(fused))) < 1e-9


# ============================================================================ QNR family
def test_d_lambda_and_d_s_match_loop_restatements(device):
    rng = np.random.default_rng(11)
    ms = torch.from_numpy(rng.uniform(200, 1800, size=(1, 4, 16, 24)))
    pan = torch.from_numpy(rng.uniform(200, 1800, size=(1, 1, 64, 96)))
    ms_up = ph.interp23tap(ms, 4)
    fused = ms_up + 0.3 * (pan - pan.mean())
    dl = d_lambda(ms_up.to(device), fused.to(device))
    ds = d_s(ms_up.to(device), pan.to(device), fused.to(device), 4)
    pan_filt = ph.interp23tap(ph.pan_downsample(pan, 4), 4)
    want_dl = mat_d_lambda(hwc(fused[0]), hwc(ms_up[0]), 32)
    want_ds = mat_d_s(hwc(fused[0]), hwc(ms_up[0]), pan[0, 0].numpy(), pan_filt[0, 0].numpy(),
                      32)
    record("D_lambda", [abs(float(dl[0]) - want_dl)])
    record("D_s", [abs(float(ds[0]) - want_ds)])
    assert abs(float(dl[0]) - want_dl) < 1e-9
    assert abs(float(ds[0]) - want_ds) < 1e-9
    # exponents p, q != 1
    dl3 = d_lambda(ms_up, fused, 32, p=3.0)
    assert abs(float(dl3[0]) - mat_d_lambda(hwc(fused[0]), hwc(ms_up[0]), 32, p=3)) < 1e-9


def test_d_lambda_partial_blocks_follow_blockproc(device):
    """Sizes that are not block multiples: edge blocks are evaluated on their real extent."""
    rng = np.random.default_rng(12)
    a = torch.from_numpy(rng.uniform(100, 2000, size=(3, 45, 70)))
    b = a + torch.from_numpy(rng.normal(0, 150, size=(3, 45, 70)))
    got = d_lambda(a.to(device), b.to(device))
    assert abs(float(got) - mat_d_lambda(hwc(b), hwc(a), 32)) < 1e-9


# ============================================================================ reprojection
@pytest.mark.parametrize("half_width", [2.0, 1.5, 1.0, 3.0])
def test_local_cross_correlation_matches_restatement(half_width, device):
    rng = np.random.default_rng(int(half_width * 10))
    x = rng.uniform(0, 1000, size=(2, 23, 31))
    y = x[:1] * 0.5 + rng.normal(0, 100, size=(1, 23, 31))
    x[1, :5, :5] = 7.0  # a flat corner: the eps floor
    y[0, :5, :5] = 7.0
    got = local_cross_correlation(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device),
                                  half_width).cpu().numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], mat_xcorr(x[b], y[0], half_width), atol=1e-10,
                                   rtol=0)


def test_d_rho_matches_restatement(device):
    rng = np.random.default_rng(21)
    pan = rng.uniform(100, 2000, size=(1, 1, 48, 40))
    fused = pan * rng.uniform(0.2, 0.5, size=(1, 4, 1, 1)) + rng.normal(0, 80, (1, 4, 48, 40))
    got = d_rho(torch.from_numpy(pan).to(device), torch.from_numpy(fused).to(device), 4)
    want = mat_d_rho(hwc(torch.from_numpy(fused[0])), pan[0, 0], 4 / 2)
    record("D_rho", [abs(float(got[0]) - want)])
    assert abs(float(got[0]) - want) < 1e-9


def test_reprojection_phases_match_restatement(device):
    rng = np.random.default_rng(31)
    gnyq = (0.3, 0.28, 0.27, 0.26)
    pan = torch.from_numpy(rng.uniform(100, 2000, size=(1, 1, 96, 80)))
    pan = ph.mtf_filter(pan, 0.15, 2)  # some spatial structure
    low = ph.mtf_filter(pan, gnyq[0], 4)
    shifts = [(1, 2), (2, 2), (3, 0), (0, 3)]
    ms = torch.stack([low[0, 0, dy::4, dx::4] for dy, dx in shifts])[None]
    ms = ms + torch.from_numpy(rng.normal(0, 5, size=ms.shape))
    got = reprojection_phases(ms.to(device), pan.to(device), gnyq, 4)
    want = mat_phases(hwc(ms[0]), low[0, 0].numpy(), 4)
    np.testing.assert_array_equal(got[0].cpu().numpy(), want)
    np.testing.assert_array_equal(want, np.array(shifts))
