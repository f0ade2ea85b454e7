"""A glyph world JSON of wrong types (issue 15): one `aria: error:` line naming the field, exit 2,
nothing written, through `aria world --config` and `aria teacher --world`; the saved JSON keeps
its format. The fields are checked by aria_train.options.check_value against the dataclass's type
hints, as WorldConfig's are.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from aria_train.worlds import GlyphWorldConfig, load_world_config
from cli_errors import refused

ASSETS = Path(__file__).resolve().parents[3] / "aria_train" / "assets"
GLYPH_JSONS = sorted((ASSETS / "worlds").glob("glyph_*.json")) + [ASSETS / "glyph_demo" / "teacher" / "world.json"]
# A small valid glyph world (2 x 3 regions): wrong-type cases change one field of it.
SMALL = {"kind": "glyph", "image_size": 16, "first_parts": 2, "second_parts": 3, "glyph_cells": 4, "cell_px": 2,
         "pool_total": 60, "unseen_tail": 1, "unseen_head_ranks": [2], "head_ranks": 3, "under_regions": 1,
         "paired_total": 10, "heldout_per_region": 1}


WRONG_TYPES = [
    ({"image_size": "16"}, "image_size must be an integer"),
    ({"image_size": 16.0}, "image_size must be an integer"),  # an integral float is not an integer
    ({"first_parts": True}, "first_parts must be an integer"),  # a boolean is not an integer
    ({"seed": True}, "seed must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"pool_total": None}, "pool_total must be an integer"),
    ({"glyph_transfer": "0.5"}, "glyph_transfer must be a number"),
    ({"glyph_transfer": None}, "glyph_transfer must be a number"),
    ({"glyph_transfer": False}, "glyph_transfer must be a number"),
    ({"zipf_exponent": float("nan")}, "zipf_exponent must be a number"),  # JSON NaN
    ({"colours": "red"}, "colours must be a list"),
    ({"colours": ["red", 3]}, "colours must be a list"),
    ({"backgrounds": {"white": 1}}, "backgrounds must be a list"),
    ({"unseen_head_ranks": [2.5]}, "unseen_head_ranks must be a list"),
    ({"unseen_head_ranks": 2}, "unseen_head_ranks must be a list"),
    ({"unseen_head_ranks": [True]}, "unseen_head_ranks must be a list"),
]


IDS = [f"{k}={v!r}" for (change, _) in WRONG_TYPES for k, v in change.items()]


@pytest.mark.parametrize("change, needle", WRONG_TYPES, ids=IDS)
def test_glyph_world_json_of_wrong_types_is_one_line(tmp_path, capsys, change, needle):
    config = tmp_path / "world.json"
    config.write_text(json.dumps({**SMALL, **change}))
    line = refused(["world", "--out", tmp_path / "out", "--config", config, "--check", "0"], capsys, needle)
    assert "glyph world config" in line
    refused(["teacher", "--out", tmp_path / "teacher", "--world", config, "--no-progress"], capsys, needle)
    assert list(tmp_path.iterdir()) == [config]  # nothing written, not even a partial folder


@pytest.mark.parametrize("change, needle", WRONG_TYPES, ids=IDS)
def test_constructor_and_loader_check_types(change, needle):
    with pytest.raises(ValueError, match=needle):
        GlyphWorldConfig(**{**SMALL, **change})
    with pytest.raises(ValueError, match=needle):
        load_world_config({**SMALL, **change})


def test_not_an_object_and_unknown_fields_are_one_line():
    with pytest.raises(ValueError, match="JSON object"):
        GlyphWorldConfig.from_dict(["image_size"])
    with pytest.raises(ValueError, match="unknown GlyphWorldConfig fields"):
        GlyphWorldConfig.from_dict({**SMALL, "colors": ["red"]})


def test_kind_other_than_glyph_is_refused():
    with pytest.raises(ValueError, match="kind"):
        GlyphWorldConfig(kind="attributes")


def test_an_integer_where_a_number_is_expected_is_a_float():
    config = GlyphWorldConfig(**{**SMALL, "glyph_transfer": 1, "zipf_exponent": 0})
    assert type(config.glyph_transfer) is float and config.glyph_transfer == 1.0
    assert type(config.zipf_exponent) is float
    assert config == GlyphWorldConfig(**{**SMALL, "glyph_transfer": 1.0, "zipf_exponent": 0.0})


@pytest.mark.parametrize("path", GLYPH_JSONS, ids=lambda p: p.parent.name + "/" + p.name)
def test_saved_json_format_is_unchanged(path, tmp_path):
    """The shipped glyph world files load and save back byte for byte."""
    config = load_world_config(path)
    assert isinstance(config, GlyphWorldConfig)
    config.save(tmp_path / "world.json")
    assert (tmp_path / "world.json").read_bytes() == path.read_bytes()


def test_default_config_saves_every_field_with_its_json_type(tmp_path):
    GlyphWorldConfig().save(tmp_path / "world.json")
    saved = json.loads((tmp_path / "world.json").read_text())
    assert list(saved) == [f.name for f in dataclasses.fields(GlyphWorldConfig)]
    assert saved["kind"] == "glyph" and type(saved["glyph_transfer"]) is float and type(saved["image_size"]) is int
    assert load_world_config(tmp_path / "world.json") == GlyphWorldConfig()
