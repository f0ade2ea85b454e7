"""GlyphWorld: the glyph world's prompt tables, rendering and training batches.

The same interface as ``aria_train.worlds.World``: ``tables()`` gives pool / paired / held-out
DataFrames with columns text, region, region_name (the region's word), group and the
attributes word, colour, position, background; rendering reads the attribute columns (the word
names the region), so it stays right for tables whose ``region`` column was recomputed.
"""
from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from aria_train.worlds.glyph import codes
from aria_train.worlds.glyph.config import GLYPH_ATTRIBUTES, GlyphWorldConfig
from aria_train.worlds.glyph.grammar import GlyphGrammar, reserved_words
from aria_train.worlds.glyph.render import alpha_templates
from aria_train.worlds.glyph.split import make_split
from aria_train.worlds.render import BACKGROUNDS, COLOURS, value_indices

if TYPE_CHECKING:
    from aria_train.worlds.glyph.checker import GlyphChecker

TABLE_STREAM = 6  # seed-stream tag of a region's prompt draws (see codes.py)
GLYPH_TABLE_COLUMNS = ["text", "region", "region_name", "group", *GLYPH_ATTRIBUTES]


class GlyphWorld:
    """A world made from a ``GlyphWorldConfig``; every method is a pure function of the config."""

    attributes = GLYPH_ATTRIBUTES

    def __init__(self, config: GlyphWorldConfig | None = None):
        self.config = config or GlyphWorldConfig()
        self.region_names = list(codes.region_names(self.config, reserved_words()))
        self.grammar = GlyphGrammar(self.config, tuple(self.region_names))
        self.split = make_split(self.config)
        self.region_groups = list(self.split.group)
        self.glyphs = codes.glyph_bits(self.config)  # bool (K, C), shared with the checker: read-only
        self.glyphs.setflags(write=False)
        self.cell_roles = codes.cell_roles(self.config)  # int8 (C,): codes.SPECIFIC / FIRST / SECOND
        self.template_cells = codes.template_cells(self.config)  # bool (K, C): an easy region's template cells
        need = self.split.pool + self.config.heldout_per_region
        if need.max() > self.grammar.per_region:
            raise ValueError(f"region {self.region_names[int(need.argmax())]!r} needs {need.max()} distinct prompts "
                             f"(pool + held-out) but the grammar makes only {self.grammar.per_region} per region; "
                             "lower pool_total or zipf_exponent")

    @property
    def num_regions(self) -> int:
        return self.config.num_regions

    def region_prompt_count(self, region: int) -> int:
        """Distinct prompts the grammar makes for one region (the same for every region)."""
        return self.grammar.per_region

    def num_prompts(self) -> int:
        """Distinct prompts in the whole world."""
        return self.grammar.per_region * self.num_regions

    def vocabulary(self) -> list[str]:
        """Every word any prompt can contain (sorted), for a word-level tokenizer."""
        return self.grammar.vocabulary()

    def max_words(self) -> int:
        """Words in the longest prompt; a tokenizer adds its special tokens on top."""
        return self.grammar.max_words()

    def region_of(self, attrs: pd.DataFrame) -> np.ndarray:
        """Region id (int64) of each row of an attribute table, from its word."""
        return value_indices(attrs, "word", tuple(self.region_names))

    def sample_attributes(self, n: int, rng: np.random.Generator, regions: np.ndarray | None = None) -> pd.DataFrame:
        """``n`` attribute rows, every value uniform and independent; ``regions`` fixes the regions."""
        return self._sample(n, rng, regions)[1]

    def sample_training_batch(self, n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        """``n`` (prompt, image) pairs uniform over the whole world (all regions, all phrasings)."""
        texts, attrs = self._sample(n, rng, None)
        return texts, self.render(attrs)

    def _sample(self, n: int, rng: np.random.Generator, regions: np.ndarray | None) -> tuple[list[str], pd.DataFrame]:
        regions = rng.integers(self.num_regions, size=n) if regions is None else np.asarray(regions)
        return self.grammar.decode(regions, rng.integers(self.grammar.per_region, size=n))

    @cached_property
    def _alpha(self) -> np.ndarray:
        c = self.config
        alpha = alpha_templates(self.glyphs, tuple(c.positions), c.image_size, c.glyph_cells, c.cell_px)
        alpha.setflags(write=False)
        return alpha

    def render(self, attrs: pd.DataFrame) -> np.ndarray:
        """Images uint8 (N, H, W, 3) of attribute rows (columns word, colour, position, background)."""
        c = self.config
        alpha = self._alpha[self.region_of(attrs), value_indices(attrs, "position", tuple(c.positions))]
        colour = np.array([COLOURS[v] for v in c.colours], np.float32)[value_indices(attrs, "colour", tuple(c.colours))]
        background = np.array([BACKGROUNDS[v] for v in c.backgrounds], np.float32)[
            value_indices(attrs, "background", tuple(c.backgrounds))]
        image = background[:, None, None, :] + alpha[..., None] * (colour - background)[:, None, None, :]
        return np.rint(image).astype(np.uint8)

    def checker(self) -> "GlyphChecker":
        """The GlyphChecker of this world."""
        from aria_train.worlds.glyph.checker import GlyphChecker  # lazily: the checker's tables are large

        return GlyphChecker(self)

    def tables(self) -> dict[str, pd.DataFrame]:
        """{"pool", "paired", "heldout"} DataFrames with columns ``GLYPH_TABLE_COLUMNS``.

        Per region: ``split.pool`` pool prompts, the first ``split.paired`` of them paired, then
        ``heldout_per_region`` held-out prompts, all distinct texts. Each region draws from its
        own seeded stream, and tau (glyph_transfer) is not used: the texts are the same for
        every tau.
        """
        return {name: table.copy() for name, table in self._tables.items()}

    @cached_property
    def _tables(self) -> dict[str, pd.DataFrame]:
        out: dict[str, list[pd.DataFrame]] = {"pool": [], "paired": [], "heldout": []}
        for region, (name, group) in enumerate(zip(self.region_names, self.region_groups)):
            n_pool, n_paired = int(self.split.pool[region]), int(self.split.paired[region])
            rng = np.random.default_rng([self.config.seed, TABLE_STREAM, region])
            numbers = rng.choice(self.grammar.per_region, n_pool + self.config.heldout_per_region, replace=False)
            texts, prompts = self.grammar.decode(np.full(len(numbers), region), numbers)
            prompts = pd.concat([pd.DataFrame({"text": texts, "region": region, "region_name": name, "group": group}),
                                 prompts], axis=1)
            out["pool"].append(prompts.iloc[:n_pool])
            out["paired"].append(prompts.iloc[:n_paired])
            out["heldout"].append(prompts.iloc[n_pool:])
        return {k: pd.concat(v, ignore_index=True)[GLYPH_TABLE_COLUMNS] for k, v in out.items()}
