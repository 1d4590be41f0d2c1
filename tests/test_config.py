import argparse
from pathlib import Path

import pytest
import yaml

from defectkit.cli.flags import add_recipe_flags, recipe_overrides
from defectkit.core.checks import InputError
from defectkit.core.config import load_config


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_variant_inherits_base_and_overrides_only_what_differs(tmp_path):
    _write(tmp_path / "base.yaml", {"competition": {"name": "c", "id_col": "image"},
                                    "recipe": {"img_size": 300, "epochs": 20, "archs": ["a", "b"]}})
    v = _write(tmp_path / "small.yaml", {"base": "base.yaml", "recipe": {"img_size": 128}})
    cfg = load_config(v)
    assert cfg.competition.name == "c" and cfg.competition.id_col == "image"
    assert cfg.recipe.img_size == 128 and cfg.recipe.epochs == 20 and cfg.recipe.archs == ["a", "b"]


def test_flags_override_yaml(tmp_path):
    path = _write(tmp_path / "c.yaml", {"recipe": {"epochs": 20, "tta": 8}})
    p = argparse.ArgumentParser()
    add_recipe_flags(p)
    args = p.parse_args(["--epochs", "3", "--cache-frozen", "--archs", "x", "y"])
    cfg = load_config(path, recipe_overrides(args))
    assert (cfg.recipe.epochs, cfg.recipe.tta, cfg.recipe.cache_frozen, cfg.recipe.archs) == (3, 8, True, ["x", "y"])
    assert cfg.competition.name == "c"  # defaults to the file name


@pytest.mark.parametrize("data, match", [
    ({"recipe": {"epoch": 3}}, "unknown key.*epoch"),
    ({"recipe": {"tta": 3}}, "recipe.tta: 3 is not one of 1, 2, 4, 8"),
    ({"competition": {"submission_columns": ["id"]}}, "submission_columns"),
    ({"recipes": {}}, "unknown section"),
])
def test_bad_config_is_a_clear_error(tmp_path, data, match):
    with pytest.raises(InputError, match=match):
        load_config(_write(tmp_path / "c.yaml", data))


def test_shipped_configs_load():
    from defectkit.core.config import CONFIG_DIR
    for path in CONFIG_DIR.glob("*.yaml"):
        cfg = load_config(path)
        assert cfg.recipe.archs and cfg.competition.name


def test_recipe_hashes_survive_fields_added_later():
    """Experiments made before `pseudo` existed stay complete: these are the hashes the configs had
    before it (a changed hash would make every fold of a user's earlier runs "another recipe")."""
    from defectkit.core.config import config_hash, load_config
    root = Path(__file__).resolve().parent.parent
    got = {f: config_hash(load_config(root / "configs" / f)) for f in ("elpv_cpu.yaml", "elpv.yaml",
                                                                      "elpv_cpu300.yaml")}
    assert got == {"elpv_cpu.yaml": "021ff06002ca", "elpv.yaml": "d747ffe872db", "elpv_cpu300.yaml": "b368f9353463"}
    pl = load_config(root / "configs/elpv_cpu.yaml", {"pseudo": "input/elpv/pseudo.csv"})
    assert config_hash(pl) != got["elpv_cpu.yaml"]  # a recipe with pseudo-labels is another recipe
