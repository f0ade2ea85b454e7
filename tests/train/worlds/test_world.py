"""The embedded world: grammar, renderer, regions and split tables, attribute checker, `aria world`."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import aria_cli
from aria_train.worlds import ATTRIBUTES, TABLE_COLUMNS, AttributeChecker, World, WorldConfig, corrupt, parse_prompt
from aria_train.worlds import grammar

# A small world for the tests that build several worlds: 2 x 3 regions, small pools.
SMALL = dict(shapes=["circle", "triangle", "ring"], colours=["red", "blue"], unseen=["red ring"],
             under=["blue circle"], pool_per_region=40, pool_per_under_region=5, paired_per_region=8,
             paired_per_under_region=1, heldout_per_region=6, seed=3)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def tables(world: World) -> dict[str, pd.DataFrame]:
    return world.tables()


def all_combinations(config: WorldConfig) -> pd.DataFrame:
    return pd.DataFrame(list(itertools.product(*(config.values(a) for a in ATTRIBUTES))), columns=list(ATTRIBUTES))


def test_grammar_makes_over_50000_distinct_prompts_within_its_vocabulary_and_length(world):
    texts = list(grammar.enumerate_prompts(world.config))
    assert len(texts) == world.num_prompts()
    assert len(set(texts)) == len(texts) >= 50_000  # distinct choices never give the same text
    assert max(map(len, map(str.split, texts))) == world.max_words() <= 20
    # A random 20,000 of them use every listed word (the rarest, e.g. "there", is in over 1/30 of
    # all prompts, so a fixed sample misses one with probability < 56 (29/30)^20000 < 1e-290).
    sample = [texts[i] for i in np.random.default_rng(0).choice(len(texts), 20_000, replace=False)]
    words = " ".join(sample).split()
    assert sorted(set(words)) == world.vocabulary()
    assert all(w.isalpha() and w.islower() for w in world.vocabulary())
    # "a" is never followed by a vowel-initial word (the grammar reads naturally).
    assert not any(a == "a" and b[0] in "aeiou" for a, b in zip(words, words[1:]))


def test_table_rows_parse_back_to_their_attributes_and_region(world, tables):
    for name, table in tables.items():
        assert list(table.columns) == TABLE_COLUMNS
        # Every paired and held-out row; a fixed random 3000 of the pool (parsing all is slow).
        rows = table.sample(3000, random_state=0) if name == "pool" else table
        parsed = pd.DataFrame([parse_prompt(t, world.config) for t in rows["text"]])
        pd.testing.assert_frame_equal(parsed, rows[list(ATTRIBUTES)].reset_index(drop=True))
        np.testing.assert_array_equal(table["region"].to_numpy(), world.region_of(table))
        colour, shape = world.config.region_attributes
        assert (table[colour] + " " + table[shape] == table["region_name"]).all()
        assert (table["group"] == np.asarray(world.region_groups)[table["region"]]).all()


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_phrasings_parse_back(world, seed):
    rng = np.random.default_rng(seed)
    attrs = world.sample_attributes(50, rng)
    parsed = pd.DataFrame([parse_prompt(t) for t in grammar.phrase(attrs, rng)])
    pd.testing.assert_frame_equal(parsed, attrs)


def test_parse_rejects_prompts_without_exactly_one_value_per_attribute():
    with pytest.raises(ValueError, match="shape"):
        parse_prompt("a small red blob in the middle on a black background")
    with pytest.raises(ValueError, match="colour"):
        parse_prompt("a small red blue circle in the middle on a black background")


def test_tables_and_images_are_deterministic_given_the_seed():
    first, second = World(WorldConfig(**SMALL)), World(WorldConfig(**SMALL))
    for name, table in first.tables().items():
        pd.testing.assert_frame_equal(table, second.tables()[name])
        np.testing.assert_array_equal(first.render(table), second.render(second.tables()[name]))
    texts_a, images_a = first.sample_training_batch(64, np.random.default_rng(5))
    texts_b, images_b = second.sample_training_batch(64, np.random.default_rng(5))
    assert texts_a == texts_b and np.array_equal(images_a, images_b)
    other = World(WorldConfig(**{**SMALL, "seed": 4})).tables()["pool"]
    assert set(other["text"]) != set(first.tables()["pool"]["text"])


def check_split(world: World, tables: dict[str, pd.DataFrame]) -> None:
    c = world.config
    pool, paired, heldout = tables["pool"], tables["paired"], tables["heldout"]
    assert pool["text"].is_unique and heldout["text"].is_unique and paired["text"].is_unique
    assert not set(heldout["text"]) & set(pool["text"])
    assert set(paired["text"]) <= set(pool["text"])
    expected = {"seen": (c.pool_per_region, c.paired_per_region), "unseen": (c.pool_per_region, 0),
                "under": (c.pool_per_under_region, c.paired_per_under_region)}
    pool_n = pool["region"].value_counts().reindex(range(world.num_regions), fill_value=0)
    paired_n = paired["region"].value_counts().reindex(range(world.num_regions), fill_value=0)
    heldout_n = heldout["region"].value_counts().reindex(range(world.num_regions), fill_value=0)
    for region, group in enumerate(world.region_groups):
        assert (pool_n[region], paired_n[region]) == expected[group]
        assert heldout_n[region] == c.heldout_per_region
    assert pool_n.min() >= 1 and heldout_n.min() >= 1
    assert not (paired["group"] == "unseen").any()


def test_default_split_invariants(world, tables):
    groups = world.region_groups
    assert world.num_regions == 36 and groups.count("unseen") == 5 and groups.count("under") == 5
    check_split(world, tables)
    # Under regions are underrepresented: far fewer pool prompts and pairs than seen regions.
    counts = tables["pool"].groupby("group").size() / pd.Series(groups).value_counts()
    assert counts["under"] * 10 <= counts["seen"]
    # Unseen regions are new combinations: each of their colours and shapes is seen elsewhere.
    seen = tables["paired"][tables["paired"]["group"] == "seen"]
    for name in world.config.unseen:
        colour, shape = name.split()
        assert (seen["colour"] == colour).any() and (seen["shape"] == shape).any()


def test_small_config_split_invariants():
    world = World(WorldConfig(**SMALL))
    check_split(world, world.tables())


def test_world_refuses_more_prompts_than_a_region_has():
    config = WorldConfig(**{**SMALL, "sizes": ["small"], "positions": ["center"], "backgrounds": ["black"]})
    per_region = World(config).region_prompt_count(0)
    with pytest.raises(ValueError, match="distinct prompts"):
        World(WorldConfig(**{**SMALL, "sizes": ["small"], "positions": ["center"], "backgrounds": ["black"],
                             "pool_per_region": per_region}))


@pytest.mark.parametrize("image_size", [16, 32, 48])
def test_renderer_shape_dtype_and_every_combination_distinct(image_size):
    world = World(WorldConfig(image_size=image_size))
    attrs = all_combinations(world.config)
    images = world.render(attrs)
    assert images.shape == (len(attrs), image_size, image_size, 3) and images.dtype == np.uint8
    assert len({im.tobytes() for im in images}) == len(images)


def test_renderer_geometry_scales_with_image_size():
    attrs = all_combinations(WorldConfig()).sample(300, random_state=0)
    small = World(WorldConfig(image_size=32)).render(attrs).astype(float)
    large = World(WorldConfig(image_size=64)).render(attrs).astype(float)
    downsampled = large.reshape(len(attrs), 32, 2, 32, 2, 3).mean(axis=(2, 4))
    # The same picture at both sizes: 2x2 means of the 64 px image differ from the 32 px image
    # only on edge pixels, where the coverage estimates differ (measured mean 0.31 of 255; a
    # shape or offset given in pixels instead of image units would differ by tens).
    assert np.abs(downsampled - small).mean() <= 1.0


def test_renderer_rejects_unknown_values(world):
    attrs = world.sample_attributes(3, np.random.default_rng(0))
    attrs.loc[1, "shape"] = "hexagon"
    with pytest.raises(ValueError, match="hexagon"):
        world.render(attrs)


def test_training_batch_covers_every_region(world):
    texts, images = world.sample_training_batch(2000, np.random.default_rng(0))
    attrs = pd.DataFrame([parse_prompt(t) for t in texts])
    assert images.shape == (2000, 32, 32, 3)
    # 36 regions, 2000 draws: a region is missed with probability 36 (35/36)^2000 < 1e-20.
    assert set(world.region_of(attrs)) == set(range(world.num_regions))
    np.testing.assert_array_equal(images, world.render(attrs))


@pytest.mark.parametrize("image_size", [32, 48])
def test_checker_reads_every_clean_render_exactly(image_size):
    config = WorldConfig(image_size=image_size)
    attrs = all_combinations(config)
    accuracy = AttributeChecker(config).accuracy(World(config).render(attrs), attrs)
    assert accuracy == {**{a: 1.0 for a in ATTRIBUTES}, "all": 1.0}


def test_checker_is_robust_to_noise_and_blur(world):
    rng = np.random.default_rng(0)
    attrs = world.sample_attributes(1000, rng)
    images = corrupt(world.render(attrs), noise_std=0.1, blur_sigma=0.6, rng=rng)
    accuracy = AttributeChecker(world.config).accuracy(images, attrs)
    # Measured all-correct rate on 20,000 such renders: 0.99995. Were the true error rate even
    # 0.002, more than 10 errors in 1000 would have probability < 1e-4 (Poisson, mean 2).
    assert accuracy["all"] >= 0.99


def test_checker_accuracy_counts_wrong_attributes(world):
    attrs = all_combinations(world.config)
    images = world.render(attrs)
    wrong = attrs.copy()
    colours = world.config.colours
    wrong["colour"] = wrong["colour"].map(lambda c: colours[(colours.index(c) + 1) % len(colours)])
    accuracy = AttributeChecker(world.config).accuracy(images, wrong)
    assert accuracy["colour"] == 0.0 and accuracy["all"] == 0.0 and accuracy["shape"] == 1.0


def test_world_config_json_round_trip(tmp_path):
    config = WorldConfig(**SMALL)
    config.save(tmp_path / "world.json")
    assert WorldConfig.load(tmp_path / "world.json") == config
    with pytest.raises(ValueError, match="unknown WorldConfig fields"):
        WorldConfig.from_dict({**config.to_dict(), "colors": ["red"]})
    with pytest.raises(FileNotFoundError):
        WorldConfig.load(tmp_path / "missing.json")


@pytest.mark.parametrize("change, message", [
    ({"colours": ["red", "pink"]}, "colour values"),
    ({"unseen": ["red hexagon"]}, "not regions"),
    ({"under": ["red ring"]}, "both unseen and under"),
    ({"paired_per_region": 41}, "paired"),
    ({"region_attributes": ["colour", "texture"]}, "region_attributes"),
])
def test_world_config_rejects_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**{**SMALL, **change})


def test_aria_world_writes_tables_config_and_contact_sheet(tmp_path, monkeypatch, capsys):
    assert aria_cli.COMMANDS[(None, "world")] == "aria_train.cli.world"
    # Only this command: the test must not depend on other commands' modules importing.
    monkeypatch.setattr(aria_cli, "COMMANDS", {(None, "world"): "aria_train.cli.world"})
    WorldConfig(**SMALL).save(tmp_path / "in.json")
    out = tmp_path / "world"
    assert aria_cli.main(["world", "--out", str(out), "--config", str(tmp_path / "in.json"),
                          "--seed", "7", "--check", "50"]) == 0
    config = WorldConfig.load(out / "world.json")
    assert config == WorldConfig(**{**SMALL, "seed": 7})
    for name, table in World(config).tables().items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), table)
    assert (out / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "checker on 50 clean renders" in capsys.readouterr().out
    assert aria_cli.main(["world", "--out", str(out), "--config", str(tmp_path / "missing.json")]) == 2
    assert "aria: error:" in capsys.readouterr().err
