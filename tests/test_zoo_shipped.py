"""The shipped zoo weights (``pretrained/weights``): files agree with their cards and logs,
each sensor's Fose chain (WV3 8-band, QB 4-band) is consistent, every network reproduces its
card's held-out scores on the real data and beats EXP there, and ``tta adapt --model fose``
(and ``fose:qb``) runs from the CLI."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from click.testing import CliRunner

from pretrained.zoo import (
    CARDS_DIR,
    WEIGHTS_DIR,
    list_zoo,
    load_zoo,
    model_from_weights,
    read_card,
)
from tta.cli import cli
from tta.training import held_out_pairs, validate, validate_classical

#: The cards as tta train wrote them (list_zoo replaces "weights" by the file's path).
SHIPPED = [read_card(CARDS_DIR / f"{c['name']}.yaml") for c in list_zoo()
           if c["weights_present"]]
IDS = [c["name"] for c in SHIPPED]
#: Source sensors with a shipped Fose chain (zoo file suffix).
SENSORS = ("wv3", "qb")


def fose_chain(sensor: str) -> tuple[str, ...]:
    """The Fose chain of a sensor: teacher, student, end-to-end net, adaptor stage, joint."""
    return (f"diffusion_teacher_{sensor}", f"diffusion_student_{sensor}", f"lagconv_{sensor}",
            f"fose_{sensor}_fuse", f"fose_{sensor}")


def _log(card: dict) -> dict:
    return json.loads((CARDS_DIR / card["log"]).read_text())


def _cards() -> dict[str, dict]:
    return {c["name"]: c for c in SHIPPED}


def _model(card: dict):
    return model_from_weights(WEIGHTS_DIR / card["weights"]["file"], arch=card["arch"]).eval()


def test_the_fose_chains_are_shipped_and_small():
    for sensor in SENSORS:
        assert set(fose_chain(sensor)) <= set(_cards()), f"the {sensor} Fose chain is shipped"
    total = sum((WEIGHTS_DIR / c["weights"]["file"]).stat().st_size for c in SHIPPED)
    assert total < 30e6
    for name, stem, bands in (("fose", "fose_wv3", 8), ("fose:qb", "fose_qb", 4)):
        fose = load_zoo(name)  # what `--model NAME` resolves to
        assert fose.weights_record.file == f"{stem}.safetensors"
        assert fose.weights_record.sha256 == _cards()[stem]["weights"]["sha256"]
        assert fose.n_bands == bands


@pytest.mark.parametrize("card", SHIPPED, ids=IDS)
def test_weights_agree_with_card_and_log(card):
    path = WEIGHTS_DIR / card["weights"]["file"]
    assert path.stem == card["name"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["weights"]["sha256"]
    model = _model(card)
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    assert model.n_bands == card["n_bands"] == len(card["bands"])
    assert model.hparams() == card["arch_kwargs"]
    assert (model.channel_mappers or [None])[0] == card["channel_mapper"]
    log = _log(card)
    assert log["config"]["arch"] == card["arch"]
    assert log["held_out"] == card["held_out"]
    assert len(log["history"]) == card["training"]["epochs"]
    assert card["training"]["data"] and all(d["licence"] for d in card["training"]["data"])
    assert card["notes"], "say in the card what the data allowed"


@pytest.mark.parametrize("sensor", SENSORS)
def test_fose_was_trained_on_the_shipped_chain(sensor):
    """Each stage's recorded inputs are shipped files (sha256): teacher -> student (distill),
    student + LAGConv -> fose_S_fuse (adaptor), fose_S_fuse -> fose_S (joint); all of one
    sensor and band count, trained on the same data."""
    cards = _cards()
    teacher, student, lagconv, fuse, joint = (cards[n] for n in fose_chain(sensor))

    def sha(card: dict) -> str:
        return card["weights"]["sha256"]

    assert student["training"]["init"]["teacher"]["sha256"] == sha(teacher)
    assert fuse["stage"] == "fuse"
    assert fuse["training"]["init"]["student"]["sha256"] == sha(student)
    assert fuse["training"]["init"]["e2e"]["sha256"] == sha(lagconv)
    assert joint["stage"] == "joint"
    assert joint["training"]["init"]["init"]["sha256"] == sha(fuse)
    chain = (teacher, student, lagconv, fuse, joint)
    assert len({c["sensor"] for c in chain}) == 1 and len({c["n_bands"] for c in chain}) == 1
    assert len({tuple(d["sha256"] for d in c["training"]["data"]) for c in chain}) == 1


#: Shipped networks that do not beat EXP on their held-out rows, and why (see their cards).
BELOW_EXP: dict[str, str] = {}  # the first WV3 teacher was one (retrained with cond=detail)
#: Shipped networks that must also beat GSA there (the default `--model fose`, and the
#: retrained WV3 teacher and student: issue 19's target).
ABOVE_GSA = ("fose_wv3", "fose_qb", "diffusion_teacher_wv3", "diffusion_student_wv3")


def _beats(got: dict, ref: dict) -> bool:
    return got["Q2n"] > ref["Q2n"] and got["SAM"] < ref["SAM"] and got["ERGAS"] < ref["ERGAS"]


@pytest.mark.parametrize("card", SHIPPED, ids=IDS)
def test_reproduces_held_out_scores_and_beats_exp(card, data_dir):
    """Re-read the run's held-out rows from its log, fuse, score: the card's numbers come
    back; the network beats EXP (interp23tap) on Q2n, SAM and ERGAS there (GSA too for the
    default Fose), except the documented :data:`BELOW_EXP` ones, which must not."""
    torch.manual_seed(0)
    model = _model(card)
    pairs = held_out_pairs(_log(card)["config"], data_dir)
    assert pairs, "the run held rows out"
    got = validate(model, pairs)
    want = card["held_out"]
    assert got["Q2n"] == pytest.approx(want["Q2n"], abs=2e-4)
    assert got["SAM"] == pytest.approx(want["SAM"], rel=1e-3)
    assert got["ERGAS"] == pytest.approx(want["ERGAS"], rel=1e-3)
    exp = validate_classical("exp", pairs, card["sensor"])
    assert _beats(got, exp) is (card["name"] not in BELOW_EXP)
    if card["name"] in ABOVE_GSA:
        assert _beats(got, validate_classical("gsa", pairs, card["sensor"]))


def test_adapt_model_fose_from_the_cli(real_file, tmp_path):
    """`tta adapt --model fose` resolves to the shipped WV3 Fose with no --weights, adapts
    its `head` mapper to the (Wald-reduced) WV2 scene and improves Q2n over direct transfer."""
    run = CliRunner()
    rr = tmp_path / "wv2_rr.h5"
    res = run.invoke(cli, ["degrade", str(real_file("wv2/wv2_grip_top_fr.h5")), "-o", str(rr)])
    assert res.exit_code == 0, res.output
    out, rep = tmp_path / "fused.h5", tmp_path / "report.json"
    res = run.invoke(cli, ["adapt", "--model", "fose", "--target", str(rr), "-o", str(out),
                           "--report", str(rep), "--steps", "30", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert report["model"]["arch"] == "fose"
    assert report["model"]["weights_sensor"] == "WV3"
    assert "interface head" in res.output
    direct = report["metrics"]["direct"]["rr"]
    adapted = report["metrics"]["adapted"]["rr"]
    assert adapted["Q2n"] > direct["Q2n"]
    assert out.is_file()


def test_adapt_model_fose_qb_to_gaofen2_from_the_cli(real_file, tmp_path):
    """`tta adapt --model fose:qb` resolves to the shipped 4-band QuickBird Fose, adapts it to
    the GaoFen-2 reduced-resolution scene (its gt is the reference) and gains Q2n, SAM and
    ERGAS over direct transfer (the zoo bench: 0.911 -> 0.945 with 100 steps)."""
    run = CliRunner()
    out, rep = tmp_path / "fused.h5", tmp_path / "report.json"
    res = run.invoke(cli, ["adapt", "--model", "fose:qb", "--target",
                           str(real_file("gf2/gf2_sfnlr_rr.h5")), "-o", str(out),
                           "--report", str(rep), "--steps", "30", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert report["model"]["arch"] == "fose"
    assert report["model"]["weights_sensor"] == "QB"
    direct = report["metrics"]["direct"]["rr"]
    adapted = report["metrics"]["adapted"]["rr"]
    assert adapted["Q2n"] > direct["Q2n"] + 0.01
    assert adapted["SAM"] < direct["SAM"] and adapted["ERGAS"] < direct["ERGAS"]
