"""The model card (:mod:`pretrained.card`): written and read in one place, every shipped card
re-serialised to its file's text, a written card read back equal."""

from __future__ import annotations

import pytest
import yaml

from pretrained.card import CARD_KEYS, ModelCard, read_card
from pretrained.zoo import CARDS_DIR
from tta.errors import InputError, OutputError

SHIPPED = sorted(CARDS_DIR.glob("*.yaml"))


def _card() -> ModelCard:
    return ModelCard.build(
        name="fusionnet_qb", arch="fusionnet", arch_kwargs={"channels": 32}, stage="e2e",
        n_bands=4, sensor="QB", bands=["blue", "green", "red", "nir"], ratio=4,
        max_value=2047.0, parameters=76324, trainable_parameters=76324,
        channel_mapper="conv3", weights_file="fusionnet_qb.safetensors",
        weights_sha256="ab" * 32,
        training={"data": [{"file": "qb/a.h5", "licence": "CC0"}, "gf2/b.h5"],
                  "recipe": {"lr": 0.0005, "loss": "L1(output, gt)"}, "date": "2026-12-06"},
        held_out={"Q2n": 0.95, "images": [{"image": "qb/a.h5 rows 0:8", "Q2n": 0.95}]},
        notes="déjà vu: Unicode stays, 'quotes' and a long line " + "x" * 120, log="f.log.json")


def test_build_orders_the_keys_and_exposes_typed_fields():
    card = _card()
    assert tuple(card) == CARD_KEYS
    assert card["weights"] == {"file": "fusionnet_qb.safetensors", "sha256": "ab" * 32}
    assert card.training_files == ["qb/a.h5", "gf2/b.h5"] and card.licences == ["CC0"]


def test_written_card_reads_back_equal(tmp_path):
    card = _card()
    path = tmp_path / "card.yaml"
    written = card.write(path)
    assert written.path == path
    text = path.read_text()
    # the text tta train has always written for this mapping (key order, Unicode kept)
    assert text == yaml.safe_dump(card.to_dict(), sort_keys=False, allow_unicode=True)
    assert "déjà vu" in text
    back = read_card(path)
    assert back.to_dict() == card.to_dict() and tuple(back) == CARD_KEYS
    assert back.to_yaml() == text
    with pytest.raises(OutputError, match="already exists"):
        card.write(path)
    assert path.read_text() == text
    ModelCard({**card.to_dict(), "notes": None}).write(path, overwrite=True)
    assert read_card(path)["notes"] is None


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_card_reserialises_to_its_text(path):
    card = read_card(path)
    assert card["arch"] and card["weights"]["sha256"]
    assert card.to_yaml() == path.read_text()


def test_read_card_refuses_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_card(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InputError, match="mapping"):
        read_card(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(InputError, match="not valid YAML"):
        read_card(tmp_path / "bad.yaml")
