"""World: the embedded text-to-image world — prompt tables per region, rendering, training batches.

``World(config).tables()`` gives the three prompt tables distillation uses (deterministic given
``config.seed``); ``sample_training_batch`` draws (prompt, image) pairs uniformly over the
whole world for training the teacher, which thus knows every region, unseen ones included.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from aria_train.worlds import grammar
from aria_train.worlds.checker import AttributeChecker
from aria_train.worlds.config import ATTRIBUTES, WorldConfig
from aria_train.worlds.render import render, value_indices

TABLE_COLUMNS = ["text", "region", "region_name", "group", *ATTRIBUTES]


class World:
    """A world made from a ``WorldConfig``; every method is a pure function of the config."""

    attributes = ATTRIBUTES  # the attribute columns of its tables (what rendering reads)

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        self.region_names = self.config.region_names()
        self.region_groups = self.config.region_groups()
        for region, (name, group) in enumerate(zip(self.region_names, self.region_groups)):
            need = self._pool_count(group) + self.config.heldout_per_region
            if need > self.region_prompt_count(region):
                raise ValueError(f"region {name!r} needs {need} distinct prompts (pool + held-out) but "
                                 f"the grammar makes only {self.region_prompt_count(region)} for it")

    @property
    def num_regions(self) -> int:
        return len(self.region_names)

    def region_prompt_count(self, region: int) -> int:
        """Distinct prompts the grammar makes for one region."""
        values = {a: v[0] for a, v in self._region_values(np.array([region])).items()}
        counts = [len(grammar.PHRASES[a][values[a]]) if a in values else
                  sum(len(grammar.PHRASES[a][v]) for v in self.config.values(a)) for a in ATTRIBUTES]
        return len(grammar.TEMPLATES) * int(np.prod(counts))

    def vocabulary(self) -> list[str]:
        """Every word any prompt can contain (sorted), for a word-level tokenizer."""
        return grammar.vocabulary(self.config)

    def max_words(self) -> int:
        """Words in the longest prompt; a tokenizer adds its special tokens on top."""
        return grammar.max_words(self.config)

    def num_prompts(self) -> int:
        """Distinct prompts in the whole world."""
        return grammar.num_prompts(self.config)

    def region_of(self, attrs: pd.DataFrame) -> np.ndarray:
        """Region id (int64) of each row of an attribute table."""
        region = np.zeros(len(attrs), np.int64)
        for attribute in self.config.region_attributes:
            values = self.config.values(attribute)
            region = region * len(values) + value_indices(attrs, attribute, tuple(values))
        return region

    def _region_values(self, regions: np.ndarray) -> dict[str, np.ndarray]:
        shape = [len(self.config.values(a)) for a in self.config.region_attributes]
        indices = np.unravel_index(regions, shape)
        return {a: np.asarray(self.config.values(a), dtype=object)[i]
                for a, i in zip(self.config.region_attributes, indices)}

    def sample_attributes(self, n: int, rng: np.random.Generator, regions: np.ndarray | None = None) -> pd.DataFrame:
        """``n`` attribute rows, every value uniform and independent; ``regions`` (int array of
        length n) fixes each row's region attributes instead."""
        columns = {a: np.asarray(self.config.values(a), dtype=object)[rng.integers(len(self.config.values(a)), size=n)]
                   for a in ATTRIBUTES}
        if regions is not None:
            columns.update(self._region_values(np.asarray(regions)))
        return pd.DataFrame(columns, columns=list(ATTRIBUTES))

    def render(self, attrs: pd.DataFrame) -> np.ndarray:
        """Images uint8 (N, H, W, 3) of the attribute rows (any table of this world will do)."""
        c = self.config
        return render(attrs, tuple(c.shapes), tuple(c.colours), tuple(c.sizes), tuple(c.positions),
                      tuple(c.backgrounds), c.image_size)

    def checker(self) -> AttributeChecker:
        """The AttributeChecker of this world."""
        return AttributeChecker(self.config)

    def sample_training_batch(self, n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        """``n`` (prompt, image) pairs uniform over the whole world (all regions, all phrasings)."""
        attrs = self.sample_attributes(n, rng)
        return grammar.phrase(attrs, rng), self.render(attrs)

    def _pool_count(self, group: str) -> int:
        return self.config.pool_per_under_region if group == "under" else self.config.pool_per_region

    def _paired_count(self, group: str) -> int:
        return {"seen": self.config.paired_per_region, "under": self.config.paired_per_under_region, "unseen": 0}[group]

    def _distinct_prompts(self, region: int, count: int, rng: np.random.Generator) -> pd.DataFrame:
        """``count`` distinct random prompts of one region (rejecting repeated texts)."""
        parts, seen = [], set()
        while len(seen) < count:
            batch = count - len(seen)
            attrs = self.sample_attributes(batch + batch // 4 + 16, rng, regions=np.full(batch + batch // 4 + 16, region))
            attrs.insert(0, "text", grammar.phrase(attrs, rng))
            keep = ~attrs["text"].duplicated().to_numpy() & ~attrs["text"].isin(seen).to_numpy()
            parts.append(attrs[keep].iloc[: count - len(seen)])
            seen.update(parts[-1]["text"])
        return pd.concat(parts, ignore_index=True)

    def tables(self) -> dict[str, pd.DataFrame]:
        """{"pool", "paired", "heldout"} DataFrames with columns ``TABLE_COLUMNS``.

        Per region: pool prompts (``pool_per_region``, or ``pool_per_under_region`` for under
        regions); paired prompts, the first of those (seen: ``paired_per_region``, under:
        ``paired_per_under_region``, unseen: none); held-out prompts (``heldout_per_region``),
        texts not in the pool. Each region draws from its own seeded stream, so changing one
        region's counts leaves the others' prompts unchanged.
        """
        return {name: table.copy() for name, table in self._tables.items()}

    @cached_property
    def _tables(self) -> dict[str, pd.DataFrame]:
        out: dict[str, list[pd.DataFrame]] = {"pool": [], "paired": [], "heldout": []}
        for region, (name, group) in enumerate(zip(self.region_names, self.region_groups)):
            rng = np.random.default_rng([self.config.seed, region])
            n_pool = self._pool_count(group)
            prompts = self._distinct_prompts(region, n_pool + self.config.heldout_per_region, rng)
            prompts.insert(1, "region", region)
            prompts.insert(2, "region_name", name)
            prompts.insert(3, "group", group)
            out["pool"].append(prompts.iloc[:n_pool])
            out["paired"].append(prompts.iloc[: self._paired_count(group)])
            out["heldout"].append(prompts.iloc[n_pool:])
        return {k: pd.concat(v, ignore_index=True)[TABLE_COLUMNS] for k, v in out.items()}
