"""The glyph world family: the transfer knob tau, the Zipf split, the checker, config loading,
and that the default world is unchanged."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

import aria_train
from aria_train.cli import world as cli
from aria_train.worlds import (AttributeChecker, GlyphWorld, GlyphWorldConfig, World, WorldConfig, corrupt,
                               load_world_config, make_world)
from aria_train.worlds.glyph import codes
from aria_train.worlds.glyph.grammar import reserved_words

ASSETS = Path(aria_train.__file__).resolve().parent / "assets"
# A fast glyph world: the default 48 regions, a pool of 5,000 prompts.
SMALL = dict(pool_total=5000, paired_total=200, heldout_per_region=4, seed=3)
TAUS = (0.0, 0.5, 1.0)


def world_at(tau: float, **changes) -> GlyphWorld:
    return GlyphWorld(GlyphWorldConfig(**{**SMALL, "glyph_transfer": tau, **changes}))


def test_tau1_makes_every_cell_a_function_of_the_two_parts():
    world = world_at(1.0)
    c, roles, glyphs = world.config, world.cell_roles, world.glyphs
    assert (roles != codes.SPECIFIC).all()
    assert (roles == codes.FIRST).sum() == (roles == codes.SECOND).sum() == c.num_cells // 2
    i, j = np.divmod(np.arange(c.num_regions), c.second_parts)
    # Regions with the same first (second) part agree on every first-part (second-part) cell ...
    for k in range(c.num_regions):
        same_i, same_j = i == i[k], j == j[k]
        assert (glyphs[same_i][:, roles == codes.FIRST] == glyphs[k, roles == codes.FIRST]).all()
        assert (glyphs[same_j][:, roles == codes.SECOND] == glyphs[k, roles == codes.SECOND]).all()
    # ... so glyph (i, j) is made from glyph (i, 0) and glyph (0, j): an unseen pair is predictable.
    rebuilt = np.where(roles == codes.FIRST, glyphs[i * c.second_parts], glyphs[j])
    np.testing.assert_array_equal(glyphs, rebuilt)
    assert len({g.tobytes() for g in glyphs}) == c.num_regions


def test_tau0_gives_every_region_its_own_independent_bits():
    world = world_at(0.0)
    glyphs, cells = world.glyphs, world.config.num_cells
    assert (world.cell_roles == codes.SPECIFIC).all()
    assert len({g.tobytes() for g in glyphs}) == len(glyphs)
    # Independent fair bits: each pair agrees on Binomial(C, 1/2) cells. Bounds set in advance so
    # that all pairs together fail by chance with probability <= 1e-6 (union bound, two-sided).
    pairs = len(glyphs) * (len(glyphs) - 1) // 2
    low = int(binom.ppf(1e-6 / pairs / 2, cells, 0.5))
    high = int(binom.isf(1e-6 / pairs / 2, cells, 0.5))
    agree = (glyphs[:, None] == glyphs[None]).sum(-1)[np.triu_indices(len(glyphs), 1)]
    assert low <= agree.min() and agree.max() <= high
    # The pooled agreement rate over all pairs is close to 1/2 too (sd 0.0019 under independence).
    assert abs(agree.mean() / cells - 0.5) < 0.02


def test_tau_only_turns_specific_cells_into_shared_ones():
    worlds = {tau: world_at(tau) for tau in (0.0, 0.25, 0.5, 0.75, 1.0)}
    cells = worlds[0.0].config.num_cells
    for tau, world in worlds.items():
        assert (world.cell_roles != codes.SPECIFIC).sum() == int(np.floor(tau * cells + 0.5))
    for low, high in zip(list(worlds)[:-1], list(worlds)[1:]):
        a, b = worlds[low], worlds[high]
        shared_a, shared_b = a.cell_roles != codes.SPECIFIC, b.cell_roles != codes.SPECIFIC
        assert (shared_b[shared_a]).all()  # nested: one fixed cell order
        assert (a.cell_roles[shared_a] == b.cell_roles[shared_a]).all()
        unchanged = shared_a | ~shared_b  # shared in both, or specific in both
        np.testing.assert_array_equal(a.glyphs[:, unchanged], b.glyphs[:, unchanged])


def test_prompt_tables_and_texts_do_not_depend_on_tau():
    worlds = [world_at(tau) for tau in TAUS]
    for name, table in worlds[0].tables().items():
        for other in worlds[1:]:
            pd.testing.assert_frame_equal(table, other.tables()[name])
    texts = [w.sample_training_batch(32, np.random.default_rng(1)) for w in worlds]
    assert texts[0][0] == texts[1][0] == texts[2][0]
    assert not np.array_equal(texts[0][1], texts[2][1])  # only the images change


def test_checker_reads_every_region_and_nuisance_value_of_clean_renders():
    for tau in TAUS:
        world = world_at(tau)
        c = world.config
        # Every region with every colour, placement and background (cycled: 6 rows per region).
        n = max(len(c.colours), len(c.positions), len(c.backgrounds))
        rows = [(word, c.colours[r % len(c.colours)], c.positions[(r + k) % len(c.positions)],
                 c.backgrounds[(r + 2 * k) % len(c.backgrounds)]) for k, word in enumerate(world.region_names)
                for r in range(n)]
        attrs = pd.DataFrame(rows, columns=list(world.attributes))
        checker = world.checker()
        score = checker.score(world.render(attrs), attrs)
        assert list(score.columns) == ["colour", "position", "background", "region_correct",
                                       "shared_bit_acc", "specific_bit_acc", "all"]
        means = score.mean()
        assert means.drop(["shared_bit_acc", "specific_bit_acc"]).eq(1.0).all()
        assert np.isnan(means["shared_bit_acc"]) if tau == 0 else means["shared_bit_acc"] == 1.0
        assert np.isnan(means["specific_bit_acc"]) if tau == 1 else means["specific_bit_acc"] == 1.0
        pd.testing.assert_frame_equal(checker.read(world.render(attrs)), attrs)


@pytest.mark.parametrize("path", sorted((ASSETS / "worlds").glob("glyph_*.json")), ids=lambda p: p.stem)
def test_every_shipped_world_has_distinct_glyphs_that_the_checker_reads(path):
    world = GlyphWorld(load_world_config(path))
    assert len(np.unique(world.glyphs, axis=0)) == world.num_regions
    attrs = world.sample_attributes(4 * world.num_regions, np.random.default_rng(0),
                                    regions=np.repeat(np.arange(world.num_regions), 4))
    assert world.checker().score(world.render(attrs), attrs)["region_correct"].all()


def test_glyphs_are_redrawn_only_when_two_would_coincide():
    # Seed 0 with 16 cells at tau = 1 (glyph_small_tau1.json) drew three pairs of identical
    # glyphs at first; at tau = 0.5 its first draw is distinct and is kept.
    config = load_world_config(ASSETS / "worlds" / "glyph_small_tau1.json")
    i, j = np.divmod(np.arange(config.num_regions), config.second_parts)
    def drawn(cfg, draw):
        first, second = codes.part_patterns(cfg, draw)
        return np.where(codes.cell_roles(cfg) == codes.FIRST, first[i],
                        np.where(codes.cell_roles(cfg) == codes.SECOND, second[j], codes.specific_patterns(cfg)))
    assert len(np.unique(drawn(config, 0), axis=0)) < config.num_regions
    half = dataclasses.replace(config, glyph_transfer=0.5)
    np.testing.assert_array_equal(codes.glyph_bits(half), drawn(half, 0))
    assert len(np.unique(codes.glyph_bits(config), axis=0)) == config.num_regions


def test_a_world_too_small_for_distinct_glyphs_is_refused():
    # 48 regions at tau = 1 on 2 x 2 cells: 2 cells per part cannot tell 8 second parts apart.
    with pytest.raises(ValueError, match="distinct glyphs"):
        GlyphWorld(GlyphWorldConfig(**{**SMALL, "glyph_transfer": 1.0, "glyph_cells": 2}))


def test_word_parts_name_each_part_with_its_own_word_and_change_nothing_else():
    plain, named = world_at(0.5), world_at(0.5, word_parts=True)
    c = named.config
    i, j = np.divmod(np.arange(c.num_regions), c.second_parts)
    first = [name.split()[0] for name in named.region_names]
    second = [name.split()[1] for name in named.region_names]
    # one word per part value: regions share a word exactly when they share that part
    assert all((np.array(first) == first[k]).tolist() == (i == i[k]).tolist() for k in range(c.num_regions))
    assert all((np.array(second) == second[k]).tolist() == (j == j[k]).tolist() for k in range(c.num_regions))
    assert len(set(first) | set(second)) == c.first_parts + c.second_parts
    assert not (set(first) | set(second)) & reserved_words()
    vocabulary = set(named.vocabulary())
    assert set(first) | set(second) <= vocabulary and not set(named.region_names) & vocabulary
    assert named.max_words() == plain.max_words() + 1
    np.testing.assert_array_equal(named.glyphs, plain.glyphs)  # only the text changes
    attrs = named.sample_attributes(2 * c.num_regions, np.random.default_rng(0),
                                    regions=np.repeat(np.arange(c.num_regions), 2))
    assert named.checker().score(named.render(attrs), attrs)["region_correct"].all()
    texts, _ = named.sample_training_batch(16, np.random.default_rng(1))
    assert all(len(text.split()) <= named.max_words() for text in texts)


def test_checker_is_robust_to_noise_and_blur():
    world = world_at(0.5)
    rng = np.random.default_rng(0)
    attrs = world.sample_attributes(500, rng)
    accuracy = world.checker().accuracy(corrupt(world.render(attrs), 0.1, 0.6, rng), attrs)
    # Measured on 2,000 such renders: region and attributes 1.0, bits 0.9997. Were the true
    # region error rate 0.002, more than 5 errors in 500 would have probability < 4e-4.
    assert accuracy["all"] >= 0.99 and accuracy["specific_bit_acc"] >= 0.99


def test_checker_counts_a_wrong_region_and_wrong_bits():
    world = world_at(0.5)
    attrs = world.sample_attributes(20, np.random.default_rng(0), regions=np.zeros(20, np.int64))
    wrong = attrs.assign(word=world.region_names[1])
    score = world.checker().score(world.render(attrs), wrong)
    assert score["region_correct"].eq(0.0).all() and score["colour"].eq(1.0).all() and score["all"].eq(0.0).all()
    differ = world.glyphs[0] != world.glyphs[1]
    shared = world.cell_roles != codes.SPECIFIC
    assert score["shared_bit_acc"].iloc[0] == pytest.approx(1 - differ[shared].mean())
    assert score["specific_bit_acc"].iloc[0] == pytest.approx(1 - differ[~shared].mean())


@pytest.mark.parametrize("exponent", [0.0, 1.2])
def test_pool_counts_follow_the_zipf_law_over_a_seeded_ranking(exponent):
    world = world_at(0.5, zipf_exponent=exponent)
    c, rank = world.config, world.split.rank
    assert sorted(rank) == list(range(1, c.num_regions + 1))
    harmonic = (np.arange(1, c.num_regions + 1) ** -exponent).sum()
    expected = np.rint(c.pool_total * rank.astype(float) ** -exponent / harmonic)
    pool = world.tables()["pool"]["region"].value_counts().reindex(range(c.num_regions), fill_value=0)
    np.testing.assert_array_equal(pool.to_numpy(), expected)
    assert abs(pool.sum() - c.pool_total) <= c.num_regions / 2  # rounding only
    # Rarity is independent of content (the same ranking for every tau) and set by the seed.
    np.testing.assert_array_equal(world_at(0.0, zipf_exponent=exponent).split.rank, rank)
    assert not np.array_equal(world_at(0.5, zipf_exponent=exponent, seed=4).split.rank, rank)


def test_groups_pairs_and_split_invariants():
    world = world_at(0.5)
    c, split = world.config, world.split
    tables = world.tables()
    pool, paired, heldout = tables["pool"], tables["paired"], tables["heldout"]
    assert pool["text"].is_unique and heldout["text"].is_unique
    assert set(paired["text"]) <= set(pool["text"]) and not set(heldout["text"]) & set(pool["text"])
    assert (heldout["region"].value_counts() == c.heldout_per_region).all()
    assert (world.region_of(pool) == pool["region"]).all() and (pool["region_name"] == pool["word"]).all()
    group = np.asarray(world.region_groups)
    by_rank = group[np.argsort(split.rank)]
    k = c.num_regions
    assert list(by_rank[k - c.unseen_tail:]) == ["unseen-tail"] * c.unseen_tail
    assert {int(r) for r in split.rank[group == "unseen-head"]} == set(c.unseen_head_ranks)
    assert list(by_rank[k - c.unseen_tail - c.under_regions: k - c.unseen_tail]) == ["under"] * c.under_regions
    assert set(by_rank[: c.head_ranks]) == {"head", "unseen-head"} and "head" not in by_rank[c.head_ranks:]
    # Unseen-tail regions hold the smallest shares; unseen regions have no pairs at all.
    assert split.share[group == "unseen-tail"].max() < split.share[group != "unseen-tail"].min()
    paired_n = paired["region"].value_counts().reindex(range(k), fill_value=0).to_numpy()
    assert (paired_n[np.isin(group, ["unseen-head", "unseen-tail"])] == 0).all()
    # Seen regions: pairs in proportion to their pool share, at least paired_min.
    seen = ~np.isin(group, ["unseen-head", "unseen-tail"])
    expected = np.maximum(c.paired_min, np.rint(c.paired_total * split.share / split.share[seen].sum()))
    np.testing.assert_array_equal(paired_n[seen], expected[seen])
    assert paired_n[group == "under"].max() < paired_n[group == "head"].min()


def test_grammar_prompts_are_distinct_and_within_vocabulary_and_length():
    world = world_at(0.5)
    grammar = world.grammar
    texts, attrs = grammar.decode(np.full(grammar.per_region, 7), np.arange(grammar.per_region))
    assert len(set(texts)) == len(texts) == 77_760  # distinct numbers give distinct texts
    words = " ".join(texts).split()
    assert set(words) | set(world.region_names) == set(world.vocabulary())
    assert max(len(t.split()) for t in texts) == world.max_words()
    assert not any(a == "a" and b[0] in "aeiou" for a, b in zip(words, words[1:]))
    assert all(f" {world.region_names[7]} " in f" {t} " for t in texts[:1000])
    # Attribute values are uniform over a region's prompts (equal phrase counts per value).
    assert attrs["colour"].value_counts().nunique() == 1 and attrs["position"].value_counts().nunique() == 1
    names = world.region_names
    assert len(set(names)) == len(names) and not set(names) & reserved_words()
    assert all(re.fullmatch(r"[bdfgklmnprstvz][aeiou][bdfgklmnprstvz][aeiou][kvz]", w) for w in names)


def test_world_refuses_a_pool_larger_than_its_prompts():
    with pytest.raises(ValueError, match="distinct prompts"):
        GlyphWorld(GlyphWorldConfig(pool_total=300_000))


@pytest.mark.parametrize("change, message", [
    ({"glyph_transfer": 1.5}, "glyph_transfer"),
    ({"cell_px": 4}, "does not fit"),
    ({"unseen_head_ranks": [9]}, "unseen_head_ranks"),
    ({"head_ranks": 30, "under_regions": 20}, "at most 48"),
    ({"colours": ["red", "pink"]}, "colours"),
    ({"kind": "attributes"}, "kind"),
])
def test_glyph_config_rejects_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        GlyphWorldConfig(**{**SMALL, **change})


def test_load_world_config_dispatches_on_kind(tmp_path):
    presets = {name: load_world_config(ASSETS / "worlds" / f"{name}.json")
               for name in ("glyph_tau0", "glyph_tau05", "glyph_tau1")}
    assert [p.glyph_transfer for p in presets.values()] == [0.0, 0.5, 1.0]
    for preset in presets.values():
        assert isinstance(preset, GlyphWorldConfig) and preset.zipf_exponent == 1.2
        # the map's worlds: the default world at 16 px with 4 x 4 glyph cells, only tau differs
        map_world = GlyphWorldConfig(image_size=16, glyph_cells=4, cell_px=2)
        assert {**preset.to_dict(), "glyph_transfer": 0.5} == map_world.to_dict()
        assert isinstance(make_world(preset), GlyphWorld)
    config = GlyphWorldConfig(**SMALL)
    config.save(tmp_path / "glyph.json")
    assert load_world_config(tmp_path / "glyph.json") == config == load_world_config(config.to_dict())
    assert load_world_config({"kind": "attributes", "seed": 2}) == WorldConfig(seed=2)
    with pytest.raises(ValueError, match="unknown world kind"):
        load_world_config({"kind": "sprites"})
    with pytest.raises(ValueError, match="unknown GlyphWorldConfig fields"):
        load_world_config({"kind": "glyph", "tau": 0.5})
    with pytest.raises(FileNotFoundError):
        load_world_config(tmp_path / "missing.json")


# sha256 of the shipped world's pool, paired and held-out tables (CSV) and held-out renders, as
# made by the code before the glyph family existed: the default world must stay bit-for-bit.
SHIPPED_WORLD_SHA256 = "7293bb3c9f5d48eecdf86b5bc8fefdaff1a22e9ec97203112e868bcf67236bf5"


def test_default_world_configs_load_unchanged():
    for path in (ASSETS / "world.json", ASSETS / "teacher" / "world.json"):
        config = load_world_config(path)
        assert type(config) is WorldConfig and config == WorldConfig.load(path)
        assert "kind" not in config.to_dict()
    shipped = load_world_config(ASSETS / "world.json").to_dict()
    assert WorldConfig() == WorldConfig.from_dict({**shipped, "image_size": 32})  # the built-in default
    world = make_world(load_world_config(ASSETS / "world.json"))
    assert type(world) is World and world.attributes == ("shape", "colour", "size", "position", "background")
    assert isinstance(world.checker(), AttributeChecker)
    tables = world.tables()
    digest = hashlib.sha256()
    for name in ("pool", "paired", "heldout"):
        digest.update(tables[name].to_csv(index=False).encode())
    digest.update(world.render(tables["heldout"]).tobytes())
    assert digest.hexdigest() == SHIPPED_WORLD_SHA256
    score = world.checker().score(world.render(tables["heldout"][:50]), tables["heldout"][:50])
    assert list(score.columns) == [*world.attributes, "all"] and score.eq(1.0).all().all()


def test_aria_world_command_writes_a_glyph_world(tmp_path, capsys):
    # 2 x 4 regions: the contact sheet (one panel per region) is the slow part.
    tiny = dict(first_parts=2, second_parts=4, head_ranks=3, unseen_head_ranks=[2], under_regions=2, unseen_tail=1,
                pool_total=400, paired_total=40, heldout_per_region=2)
    GlyphWorldConfig(**tiny).save(tmp_path / "in.json")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "world"
    assert cli.run(parser.parse_args(["--out", str(out), "--config", str(tmp_path / "in.json"), "--seed", "7",
                                      "--check", "50", "--sheet-per-region", "1"])) == 0
    config = load_world_config(out / "world.json")
    assert config == GlyphWorldConfig(**{**tiny, "seed": 7})
    for name, table in GlyphWorld(config).tables().items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), table)
    assert (out / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "world: 8 regions (2 head, 2 mid, 2 under, 1 unseen-head, 1 unseen-tail)" in printed
    assert "checker on 50 clean renders" in printed


def test_easy_regions_show_the_template_with_few_bits_of_their_own():
    """easy_regions: a seeded set of regions shows one template glyph except on easy_cells cells,
    where each has distinct bits; every other region's glyph, and the prompts, are the world
    without easy regions'; the checker reads all glyphs and scores an easy region's own bits only
    as its specific cells."""
    plain, easy = world_at(0.0), world_at(0.0, easy_regions=12, easy_cells=4)
    regions, template, cells, own = codes.easy_layout(easy.config)
    assert len(regions) == 12 and len(cells) == 4
    assert sorted(easy.split.rank[regions]) == list(range(3, 49, 4))  # every fourth rank: independent of rarity
    hard = np.setdiff1d(np.arange(easy.num_regions), regions)
    np.testing.assert_array_equal(easy.glyphs[hard], plain.glyphs[hard])
    others = np.setdiff1d(np.arange(easy.config.num_cells), cells)
    assert (easy.glyphs[np.ix_(regions, others)] == template[others]).all()
    assert len(np.unique(easy.glyphs[np.ix_(regions, cells)], axis=0)) == 12  # distinct on their own cells
    assert len(np.unique(easy.glyphs, axis=0)) == easy.num_regions
    assert (easy.template_cells.sum(axis=1) == np.where(np.isin(np.arange(easy.num_regions), regions),
                                                        easy.config.num_cells - 4, 0)).all()
    pd.testing.assert_frame_equal(easy.tables()["pool"], plain.tables()["pool"])
    attrs = easy.sample_attributes(2 * easy.num_regions, np.random.default_rng(0),
                                   regions=np.repeat(np.arange(easy.num_regions), 2))
    score = easy.checker().score(easy.render(attrs), attrs)
    assert score["region_correct"].all() and score["specific_bit_acc"].eq(1.0).all()
    # an easy region's template cells are scored as shared; the other regions have none at tau = 0
    is_easy = np.isin(attrs["word"].map({w: k for k, w in enumerate(easy.region_names)}), regions)
    assert score["shared_bit_acc"][is_easy].eq(1.0).all() and score["shared_bit_acc"][~is_easy].isna().all()


def test_easy_regions_need_enough_cells_for_distinct_glyphs():
    with pytest.raises(ValueError, match="at most 2\\^easy_cells easy regions"):
        GlyphWorldConfig(**{**SMALL, "easy_regions": 5, "easy_cells": 2})
    assert GlyphWorldConfig(**{**SMALL, "easy_regions": 4, "easy_cells": 2}).easy_regions == 4
