"""Sensor presets: every preset is exercised; toolbox MTF values are pinned."""

from __future__ import annotations

import pytest

from tta.errors import SensorError
from tta.sensors import Sensor, get_sensor, list_sensors

EXPECTED = {"WV3", "WV2", "WV4", "QB", "GF2", "IKONOS", "GE1", "PLEIADES", "SPOT6", "SPOT7",
            "LANDSAT8", "LANDSAT7"}


def test_registry_is_the_expected_set():
    assert {s.name for s in list_sensors()} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_is_consistent(name):
    s = get_sensor(name)
    assert s.name == name
    assert len(s.bands) == len(s.mtf_ms) == s.n_bands
    assert len(set(s.bands)) == s.n_bands
    assert s.ratio in (2, 4)
    assert s.max_value == 2**s.bit_depth - 1
    assert all(0 < g < 1 for g in (*s.mtf_ms, s.mtf_pan))
    assert s.mtf_reference
    assert get_sensor(name.lower()) is s


# Values of the Vivone et al. toolbox (genMTF.m / MTF_PAN.m), copied by hand.
@pytest.mark.parametrize(
    ("name", "ms", "pan"),
    [
        ("WV3", (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), 0.14),
        ("WV2", (0.35,) * 7 + (0.27,), 0.11),
        ("QB", (0.34, 0.32, 0.30, 0.22), 0.15),
        ("IKONOS", (0.26, 0.28, 0.29, 0.28), 0.17),
        ("GE1", (0.23,) * 4, 0.16),
        ("WV4", (0.23,) * 4, 0.16),
        ("GF2", (0.3,) * 4, 0.15),
    ],
)
def test_toolbox_mtf_gains(name, ms, pan):
    s = get_sensor(name)
    assert s.mtf_ms == pytest.approx(ms)
    assert s.mtf_pan == pytest.approx(pan)


def test_ratio_two_sensors():
    assert get_sensor("LANDSAT8").ratio == get_sensor("L7").ratio == 2


@pytest.mark.parametrize(("alias", "name"), [("GeoEye1", "GE1"), ("quickbird", "QB"),
                                             ("WorldView-3", "WV3"), ("l8", "LANDSAT8")])
def test_aliases(alias, name):
    assert get_sensor(alias).name == name


def test_unknown_sensor_suggests_close_names():
    with pytest.raises(SensorError, match="did you mean WV3"):
        get_sensor("WV33")


def test_user_sensor_file(tmp_path):
    p = tmp_path / "mysat.yaml"
    p.write_text("name: mysat\nbands: [b, g, r]\nratio: 3\nbit_depth: 12\nmax_value: 4095\n"
                 "mtf_ms: 0.25\nmtf_pan: 0.2\n")
    s = get_sensor(p)
    assert isinstance(s, Sensor)
    assert (s.name, s.bands, s.ratio, s.mtf_ms) == ("MYSAT", ("b", "g", "r"), 3, (0.25,) * 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nbands: [a]\n", "missing field"),
        ("name: x\nbands: [a, b]\nratio: 4\nbit_depth: 8\nmax_value: 255\n"
         "mtf_ms: [0.3]\nmtf_pan: 0.1\n", "1 gains for 2 bands"),
        ("name: x\nbands: [a]\nratio: 4\nbit_depth: 8\nmax_value: 255\n"
         "mtf_ms: [1.3]\nmtf_pan: 0.1\n", "lie in"),
        ("name: x\nbands: [a]\nratio: 1\nbit_depth: 8\nmax_value: 255\n"
         "mtf_ms: [0.3]\nmtf_pan: 0.1\n", "ratio"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_invalid_user_sensor_file(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(SensorError, match=message) as exc:
        get_sensor(p)
    assert "\n" not in str(exc.value)


def test_shared_files_match_presets(data_dir):
    import h5py

    for path in sorted(data_dir.rglob("*.h5")):
        with h5py.File(path, "r") as f:
            s = get_sensor(f.attrs["sensor"])
            assert ",".join(s.bands) == f.attrs["bands"], path
            assert s.ratio == int(f.attrs["ratio"]), path
            assert s.max_value == float(f.attrs["max_value"]), path
