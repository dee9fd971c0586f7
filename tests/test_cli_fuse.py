"""`tta fuse` from the CLI on real scenes: h5 and GeoTIFF products, then `tta eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from tta.cli import cli
from tta.io import read_scene


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_fuse_then_eval_reduced(real_file, tmp_path):
    src = real_file("qb/qb_abfnet_train_rr.h5")
    scores = {}
    for method in ("exp", "gsa"):
        out = tmp_path / f"{method}.h5"
        res = run("fuse", str(src), "--method", method, "-o", str(out), "--device", "cpu")
        assert res.exit_code == 0, res.output
        js = tmp_path / f"{method}.json"
        res = run("eval", str(out), "--json", str(js))
        assert res.exit_code == 0, res.output
        scores[method] = json.loads(js.read_text())["rr"]
    assert scores["gsa"]["Q2n"] > scores["exp"]["Q2n"]
    assert scores["gsa"]["SCC"] > scores["exp"]["SCC"]


def test_fuse_geotiff_keeps_georeferencing(real_file, tmp_path):
    d = "geotiff/"
    spec = f"{real_file(d + 'wv3_shanghai_ms.tif')}+{real_file(d + 'wv3_shanghai_pan.tif')}"
    out = tmp_path / "gsa.tif"
    res = run("fuse", spec, "--sensor", "WV3", "--method", "gsa", "-o", str(out))
    assert res.exit_code == 0, res.output
    scene = read_scene(spec, sensor="WV3")
    with rasterio.open(out) as ds:
        assert (ds.count, ds.height, ds.width) == (8, 1300, 1300)
        assert ds.crs.to_epsg() == 4326 and ds.transform == scene.transform
        assert ds.dtypes[0] == "uint16"
        data = ds.read()
    assert data.mean() == pytest.approx(scene.ms.mean(), rel=0.05)
    res = run("eval", str(out), "--scene", spec, "--sensor", "WV3")
    assert res.exit_code == 0 and "HQNR" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "nosuch"], "known: exp, "),
    (["--method", "gsa", "-o", "{src}"], "is an input"),
    (["--method", "gsa", "-o", "{tmp}/x.png"], "must end in .h5 or .tif"),
])
def test_fuse_bad_input(real_file, tmp_path, args, message):
    src = real_file("qb/qb_abfnet_train_rr.h5")
    before = src.read_bytes()
    args = [a.replace("{src}", str(src)).replace("{tmp}", str(tmp_path)) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "o.h5")]
    res = run("fuse", str(src), *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == before
    assert not np.any([p.suffix == ".part" for p in tmp_path.iterdir()])
