"""Tests of tta.sampling: patch tiling and extraction, descriptors, kNN graph and samplers.

Run on GPU with ``pytest tests/test_sampling.py --device cuda``.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tta.sampling import (
    SAMPLERS,
    describe_patches,
    descriptor_names,
    extract_patches,
    extract_scene_patches,
    farthest_point_sampling,
    kmeans_sampling,
    knn_graph,
    local_density,
    patch_grid,
    random_sampling,
    select_patches,
    swift_sampling,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coverage(height: int, width: int, corners: torch.Tensor, patch: int) -> torch.Tensor:
    count = torch.zeros(height, width, dtype=torch.long)
    for y, x in corners.tolist():
        count[y:y + patch, x:x + patch] += 1
    return count


def _mixture(
    seed: int = 0, n_per: int = 80, dim: int = 6, n_out: int = 6, sep: float = 12.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """5 unit Gaussian clusters (centres at radius ``sep``) + ``n_out`` outliers at radius 50.

    Returns:
        ``(x, labels)``: float32 ``(5*n_per + n_out, dim)`` and cluster labels (-1: outlier).
    """
    g = _gen(seed)
    centres = torch.randn(5, dim, generator=g, dtype=F64)
    centres = sep * centres / centres.norm(dim=1, keepdim=True)
    pts = [c + torch.randn(n_per, dim, generator=g, dtype=F64) for c in centres]
    dirs = torch.randn(n_out, dim, generator=g, dtype=F64)
    outliers = 50 * dirs / dirs.norm(dim=1, keepdim=True)
    x = torch.cat([*pts, outliers]).float()
    labels = torch.cat([torch.arange(5).repeat_interleave(n_per), torch.full((n_out,), -1)])
    return x, labels


# --------------------------------------------------------------------------- patch_grid
@pytest.mark.parametrize(
    "height,width,patch,stride,ratio",
    [
        (64, 64, 16, None, 4),  # exact tiling
        (70, 52, 16, None, 2),  # flush last row/column
        (64, 96, 32, 12, 4),  # overlapping, flush
        (40, 40, 40, None, 4),  # one window
        (9, 13, 3, 1, 1),  # ratio 1, stride 1
    ],
)
def test_patch_grid_covers_image(height, width, patch, stride, ratio):
    corners = patch_grid(height, width, patch, stride, ratio=ratio)
    assert corners.dtype == torch.long and corners.ndim == 2 and corners.shape[1] == 2
    assert bool((corners % ratio == 0).all())
    assert bool((corners >= 0).all())
    assert int(corners[:, 0].max()) == height - patch  # flush with the bottom border
    assert int(corners[:, 1].max()) == width - patch  # flush with the right border
    assert bool((_coverage(height, width, corners, patch) > 0).all())
    # row-major: y slowest, and the list is the product of the distinct rows and columns
    keys = corners[:, 0] * width + corners[:, 1]
    assert bool((keys[1:] > keys[:-1]).all())
    ys, xs = corners[:, 0].unique(), corners[:, 1].unique()
    assert len(corners) == len(ys) * len(xs)


def test_patch_grid_default_stride_is_non_overlapping():
    corners = patch_grid(64, 128, 32, ratio=4)
    assert corners.tolist() == [[0, 0], [0, 32], [0, 64], [0, 96], [32, 0], [32, 32],
                                [32, 64], [32, 96]]
    assert bool((_coverage(64, 128, corners, 32) == 1).all())


def test_patch_grid_stride_overlaps():
    corners = patch_grid(64, 64, 16, 8, ratio=4)
    ys = corners[:, 0].unique()
    assert ys.tolist() == [0, 8, 16, 24, 32, 40, 48]
    assert int(_coverage(64, 64, corners, 16).max()) == 4  # 2x2 windows over an interior pixel
    # a flush last window overlaps its neighbour more than the stride says
    ys = patch_grid(68, 64, 16, 8, ratio=4)[:, 0].unique()
    assert ys.tolist()[-2:] == [48, 52]


@settings(max_examples=40, deadline=None)
@given(
    ratio=st.sampled_from([1, 2, 4]),
    hm=st.integers(2, 12),
    wm=st.integers(2, 12),
    pm=st.integers(1, 6),
    sm=st.integers(1, 6),
)
def test_patch_grid_property(ratio, hm, wm, pm, sm):
    height, width = ratio * hm, ratio * wm
    pm = min(pm, hm, wm)
    patch, stride = ratio * pm, ratio * min(sm, pm)
    corners = patch_grid(height, width, patch, stride, ratio=ratio)
    assert bool((corners % ratio == 0).all())
    assert bool((_coverage(height, width, corners, patch) > 0).all())
    assert bool((corners[:, 0] <= height - patch).all() and (corners[:, 1] <= width - patch).all())


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((64, 64, 18), {"ratio": 4}, "patch"),  # not a multiple of ratio
        ((64, 64, 128), {"ratio": 4}, "patch"),  # larger than the image
        ((64, 64, 0), {}, "patch"),
        ((64, 64, 16, 32), {"ratio": 4}, "stride"),  # stride > patch
        ((64, 64, 16, 2), {"ratio": 4}, "stride"),  # stride < ratio
        ((64, 64, 16, 6), {"ratio": 4}, "stride"),  # stride not a multiple of ratio
        ((66, 64, 16), {"ratio": 4}, "ratio"),  # grid not a multiple of ratio
        ((64, 64, 16), {"ratio": 0}, "ratio"),
        ((64, 64, 16.5), {}, "patch"),
        ((64, 64, True), {}, "patch"),
    ],
)
def test_patch_grid_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        patch_grid(*args, **kwargs)


# --------------------------------------------------------------------------- extraction
@pytest.mark.parametrize("batch", [1, 5])
def test_extract_patches_equals_slicing(device, batch):
    g = _gen(1)
    image = torch.rand(batch, 3, 20, 27, generator=g).to(device)
    patch = 6
    corners = torch.stack([torch.randint(0, 20 - patch + 1, (5,), generator=g),
                           torch.randint(0, 27 - patch + 1, (5,), generator=g)], dim=1)
    out = extract_patches(image, corners, patch)
    assert out.shape == (5, 3, patch, patch) and out.device == image.device
    assert out.is_contiguous()
    for n, (y, x) in enumerate(corners.tolist()):
        b = 0 if batch == 1 else n
        torch.testing.assert_close(out[n], image[b, :, y:y + patch, x:x + patch], rtol=0, atol=0)


def test_extract_patches_gradient(device):
    image = torch.rand(1, 2, 8, 8, dtype=F64, device=device, requires_grad=True)
    corners = torch.tensor([[0, 0], [2, 2], [4, 4]])
    extract_patches(image, corners, 4).sum().backward()
    expected = _coverage(8, 8, corners, 4).to(device=device, dtype=F64).expand(1, 2, 8, 8)
    torch.testing.assert_close(image.grad, expected)
    assert torch.autograd.gradcheck(
        lambda im: extract_patches(im, corners, 4), (image.detach().requires_grad_(),)
    )


@pytest.mark.parametrize(
    "corners,patch,batch,match",
    [
        (torch.tensor([[0, 5]]), 4, 1, "corners"),  # x + patch > W
        (torch.tensor([[-1, 0]]), 4, 1, "corners"),
        (torch.tensor([[0.0, 0.0]]), 4, 1, "integer"),
        (torch.tensor([0, 0]), 4, 1, r"\(N, 2\)"),
        (torch.tensor([[0, 0], [1, 1]]), 4, 3, "batch"),
        (torch.tensor([[0, 0]]), 9, 1, "patch"),
    ],
)
def test_extract_patches_errors(corners, patch, batch, match):
    with pytest.raises(ValueError, match=match):
        extract_patches(torch.zeros(batch, 1, 8, 8), corners, patch)


def test_extract_scene_patches_align_ms_and_pan(device):
    g = _gen(2)
    ratio, patch = 4, 16
    ms = torch.rand(1, 4, 12, 10, generator=g).to(device)
    pan = torch.rand(1, 1, 48, 40, generator=g).to(device)
    lms = torch.nn.functional.interpolate(ms, scale_factor=ratio, mode="nearest")
    corners = patch_grid(48, 40, patch, 8, ratio=ratio)
    ms_p, pan_p, lms_p = extract_scene_patches(ms, pan, lms, corners, patch, ratio)
    assert ms_p.shape == (len(corners), 4, 4, 4)
    assert pan_p.shape == (len(corners), 1, patch, patch)
    assert lms_p.shape == (len(corners), 4, patch, patch)
    for n, (y, x) in enumerate(corners.tolist()):
        torch.testing.assert_close(ms_p[n], ms[0, :, y // 4:y // 4 + 4, x // 4:x // 4 + 4])
        torch.testing.assert_close(pan_p[n], pan[0, :, y:y + patch, x:x + patch])
    # nearest upsampling of the MS patch is the lms patch: the windows match exactly
    up = torch.nn.functional.interpolate(ms_p, scale_factor=ratio, mode="nearest")
    torch.testing.assert_close(up, lms_p)
    assert extract_scene_patches(ms, pan, None, corners, patch, ratio)[2] is None


def test_extract_scene_patches_errors():
    ms, pan = torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 32, 32)
    with pytest.raises(ValueError, match="multiple"):
        extract_scene_patches(ms, pan, None, torch.tensor([[2, 0]]), 16, 4)
    with pytest.raises(ValueError, match="multiple"):
        extract_scene_patches(ms, pan, None, torch.tensor([[0, 0]]), 10, 4)
    with pytest.raises(ValueError, match="ratio"):
        extract_scene_patches(ms, torch.zeros(1, 1, 30, 32), None, torch.tensor([[0, 0]]), 16, 4)
    with pytest.raises(ValueError, match="lms"):
        extract_scene_patches(ms, pan, torch.zeros(1, 3, 32, 32), torch.tensor([[0, 0]]), 16, 4)


# --------------------------------------------------------------------------- descriptors
def _patches(n: int = 12, c: int = 4, seed: int = 3):
    g = _gen(seed)
    ms = torch.rand(n, c, 8, 8, generator=g)
    pan = torch.rand(n, 1, 32, 32, generator=g)
    lms = torch.rand(n, c, 32, 32, generator=g)
    return ms, pan, lms


def test_describe_patches_shape_and_standardisation(device):
    ms, pan, lms = (t.to(device) for t in _patches())
    ms[:, 0] = 0.25  # band 0 flat and equal in every patch: constant mean and std columns
    feats = describe_patches(ms, pan, lms)
    assert feats.shape == (12, 4 * 4 + 4) and feats.dtype == torch.float32
    assert feats.device == ms.device
    assert len(descriptor_names(4)) == feats.shape[1]
    assert describe_patches(ms, pan).shape == (12, 3 * 4 + 4)
    assert len(descriptor_names(4, with_lms=False)) == 3 * 4 + 4
    names = descriptor_names(4)
    const = [names.index("ms_mean_0"), names.index("ms_std_0")]
    assert bool((feats[:, const] == 0).all())  # constant columns -> 0
    rest = [j for j in range(feats.shape[1]) if j not in const]
    torch.testing.assert_close(feats[:, rest].mean(0), torch.zeros(len(rest), device=device),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(feats[:, rest].std(0, unbiased=False),
                               torch.ones(len(rest), device=device), atol=1e-5, rtol=0)


def test_describe_patches_texture_columns():
    n = 6
    ms = torch.full((n, 3, 8, 8), 0.3)
    pan = torch.full((n, 1, 32, 32), 0.4)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    pan[0, 0] += 0.2 * ((yy + xx) % 2).float()  # checkerboard: strong high frequencies
    pan[1, 0] += 0.01 * torch.rand(32, 32, generator=_gen(4))  # nearly flat
    feats = describe_patches(ms, pan)
    names = descriptor_names(3, with_lms=False)
    for col in ("pan_std", "pan_grad", "pan_laplacian"):
        j = names.index(col)
        assert feats[0, j] > feats[1, j] > feats[2, j], col  # textured > nearly flat > flat
        torch.testing.assert_close(feats[2:, j], feats[2, j].expand(n - 2))


def test_describe_patches_correlation_column():
    ms, pan, _ = _patches(n=3, c=2)
    lms = torch.empty(3, 2, 32, 32)
    lms[0] = pan[0]  # correlation +1
    lms[1] = 1 - pan[1]  # correlation -1
    lms[2] = torch.rand(2, 32, 32, generator=_gen(5))  # ~0
    feats = describe_patches(ms, pan, lms)
    j = descriptor_names(2).index("lms_pan_corr_0")
    assert feats[0, j] > feats[2, j] > feats[1, j]


def test_describe_patches_errors():
    ms, pan, lms = _patches()
    with pytest.raises(ValueError, match="same N"):
        describe_patches(ms[:3], pan)
    with pytest.raises(ValueError, match="lms_p"):
        describe_patches(ms, pan, lms[:, :2])
    with pytest.raises(ValueError, match="3x3"):
        describe_patches(ms[:, :, :1, :1], pan[:, :, :2, :2])


# --------------------------------------------------------------------------- knn_graph
def test_knn_graph_matches_brute_force():
    x = torch.randn(300, 7, generator=_gen(6))
    dist, idx = knn_graph(x, 8, device="cpu")
    assert dist.shape == idx.shape == (300, 8) and idx.dtype == torch.long
    d = torch.cdist(x.double(), x.double())
    d.fill_diagonal_(float("inf"))
    ref_d, ref_i = torch.topk(d, 8, dim=1, largest=False)
    torch.testing.assert_close(dist.double(), ref_d, atol=1e-4, rtol=1e-4)
    assert torch.equal(idx, ref_i)
    assert not bool((idx == torch.arange(300)[:, None]).any())


def test_knn_graph_without_faiss(monkeypatch):
    x = torch.randn(60, 3, generator=_gen(7))
    ref = knn_graph(x, 5, device="cpu")
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    got = knn_graph(x, 5, device="cpu")
    torch.testing.assert_close(got[0], ref[0], atol=1e-4, rtol=1e-4)
    assert torch.equal(got[1], ref[1])


def test_knn_graph_device(device):
    x = torch.randn(100, 4, generator=_gen(8))
    d_cpu, i_cpu = knn_graph(x, 6, device="cpu")
    d_dev, i_dev = knn_graph(x.to(device), 6, device=device)
    assert d_dev.device == x.to(device).device and i_dev.device == d_dev.device
    torch.testing.assert_close(d_dev.cpu(), d_cpu, atol=1e-4, rtol=1e-4)
    assert torch.equal(i_dev.cpu(), i_cpu)


def test_knn_graph_small_and_duplicates():
    x = torch.zeros(6, 2)
    x[5] = 1.0  # five duplicates and one other point
    dist, idx = knn_graph(x, 2, device="cpu")
    assert not bool((idx == torch.arange(6)[:, None]).any())  # never itself
    assert bool((dist[:5] == 0).all())
    dist, idx = knn_graph(x[:3], 10, device="cpu")
    assert idx.shape == (3, 2)  # clipped to N - 1
    assert knn_graph(x[:1], 3)[1].shape == (1, 0)
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_graph(x, 0)


def test_local_density_orders_points():
    dist = torch.tensor([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0], [0.0, 0.0], [1.0, 3.0]])
    rho = local_density(dist)  # mean distances 1, 2, 4, 0, 2: median 2
    assert rho.tolist() == pytest.approx([2.0, 1.0, 0.5, 1000.0, 1.0])  # duplicates capped


# --------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("method", SAMPLERS)
def test_sampler_contract(method, device):
    x = torch.randn(90, 5, generator=_gen(9)).to(device)
    sel = select_patches(x, 7, method, seed=3)
    assert sel.dtype == torch.long and sel.shape == (7,) and sel.device == x.device
    assert len(set(sel.tolist())) == 7
    assert bool((sel >= 0).all() and (sel < 90).all())
    assert torch.equal(sel, select_patches(x, 7, method, seed=3))  # deterministic
    perm = select_patches(x, 90, method)
    assert sorted(perm.tolist()) == list(range(90))  # k == N: a permutation
    assert torch.equal(select_patches(x[:10], 50, method).sort().values,
                       torch.arange(10, device=device))  # k clipped to N
    assert select_patches(x[:1], 3, method).tolist() == [0]


@pytest.mark.parametrize("method", SAMPLERS)
def test_sampler_duplicates_stay_distinct(method):
    x = torch.cat([torch.zeros(20, 3), torch.ones(5, 3), torch.randn(5, 3, generator=_gen(10))])
    sel = select_patches(x, 30, method)
    assert sorted(sel.tolist()) == list(range(30))
    assert len(set(select_patches(x, 12, method).tolist())) == 12


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_select_patches_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        select_patches(torch.randn(10, 2), k)


def test_select_patches_bad_method_and_features():
    with pytest.raises(ValueError, match="random, fps, kmeans, swift"):
        select_patches(torch.randn(10, 2), 3, "greedy")
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        select_patches(torch.randn(10), 3)
    with pytest.raises(ValueError, match="NaN"):
        select_patches(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="floating"):
        select_patches(torch.ones(4, 2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="alpha"):
        swift_sampling(torch.randn(10, 2), 3, alpha=-1.0)


def test_random_sampling_seeds():
    x = torch.randn(200, 2)
    a, b = random_sampling(x, 10, seed=0), random_sampling(x, 10, seed=1)
    assert not torch.equal(a, b)
    assert torch.equal(a, random_sampling(x, 10, seed=0))


def test_fps_prefers_outliers():
    x, labels = _mixture()
    sel = farthest_point_sampling(x, 8)
    first = (x - x.mean(0)).square().sum(1).argmin()
    assert int(sel[0]) == int(first)  # starts at the point nearest to the mean
    assert bool((labels[sel[1:7]] == -1).all())  # then the six outliers, before any cluster
    # every pick is the farthest from the ones before it
    for t in range(1, 8):
        dmin = torch.cdist(x, x[sel[:t]]).min(1).values
        assert float(dmin[sel[t]]) == pytest.approx(float(dmin.max()), rel=1e-5)


@pytest.mark.parametrize("sep", [5.0, 12.0])  # clusters linked / separate in the kNN graph
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_swift_covers_clusters_without_outliers(seed, sep):
    x, labels = _mixture(seed, sep=sep)
    sel = select_patches(x, 8, "swift")
    lab = labels[sel]
    assert set(lab[lab >= 0].tolist()) == {0, 1, 2, 3, 4}  # every cluster
    n_out_swift = int((lab == -1).sum())
    n_out_fps = int((labels[select_patches(x, 8, "fps")] == -1).sum())
    assert n_out_swift < n_out_fps
    assert n_out_swift == 0
    rho = local_density(knn_graph(x, 10)[0])
    assert int(sel[0]) == int(np.argmax(rho))  # starts at the densest point


def test_swift_alpha_zero_is_geodesic_fps_and_reaches_outliers():
    x, labels = _mixture(0)
    sel = swift_sampling(x, 12, alpha=0.0)
    assert len(set(sel.tolist())) == 12
    assert int((labels[sel] == -1).sum()) > 0  # without density weighting outliers come back


def test_swift_disconnected_components():
    g = _gen(11)
    x = torch.cat([torch.randn(30, 2, generator=g), torch.randn(30, 2, generator=g) + 100,
                   torch.randn(30, 2, generator=g) - 100])
    sel = swift_sampling(x, 3, n_neighbors=5)
    assert sorted((sel // 30).tolist()) == [0, 1, 2]  # one sample per component first


def test_kmeans_covers_clusters():
    x, labels = _mixture(0, n_out=0)
    for seed in (0, 1):
        sel = kmeans_sampling(x, 5, seed=seed)
        assert sorted(labels[sel].tolist()) == [0, 1, 2, 3, 4]
    sel = kmeans_sampling(x, 5)
    centroid = x[labels == labels[sel[0]]].mean(0)
    members = (labels == labels[sel[0]]).nonzero().ravel()
    nearest = members[(x[members] - centroid).square().sum(1).argmin()]
    assert int(sel[0]) == int(nearest)  # the member nearest its centroid


# --------------------------------------------------------------------------- real scene
def test_swift_on_real_scene(real_file):
    from tta.io import read_scene
    from tta.physics import interp23tap

    scene = read_scene(str(real_file("wv2/wv2_grip_top_fr.h5")))
    ratio = scene.ratio
    ms = torch.from_numpy(scene.ms)[None] / scene.max_value
    pan = torch.from_numpy(scene.pan)[None, None] / scene.max_value
    lms = interp23tap(ms, ratio)
    corners = patch_grid(*pan.shape[-2:], 64, ratio=ratio)
    feats = describe_patches(*extract_scene_patches(ms, pan, lms, corners, 64, ratio))
    n = len(feats)
    k = max(1, round(0.03 * n))
    sel = select_patches(feats, k, "swift")
    assert len(set(sel.tolist())) == k

    def spread(idx: torch.Tensor) -> float:
        return float(torch.pdist(feats[idx].double()).mean())

    random_spread = np.mean([spread(select_patches(feats, k, "random", seed=s))
                             for s in range(20)])
    assert spread(sel) > random_spread

    rho = local_density(knn_graph(feats, 10)[0])
    sparse = set(np.argsort(rho, kind="stable")[: max(1, round(0.05 * n))].tolist())
    n_sparse_swift = len(sparse & set(sel.tolist()))
    n_sparse_fps = len(sparse & set(select_patches(feats, k, "fps").tolist()))
    assert n_sparse_swift < n_sparse_fps
