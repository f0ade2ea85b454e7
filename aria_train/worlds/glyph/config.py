"""GlyphWorldConfig: the glyph world family, whose transfer between regions is a knob.

A region is a pair (i, j) of two sub-attributes ("parts", ``first_parts`` x ``second_parts``
values; region id ``i * second_parts + j``). Its prompt names it by one made-up word, and its
image is a square tile holding a binary glyph of ``glyph_cells`` x ``glyph_cells`` cells. A
fixed, seeded fraction ``glyph_transfer`` (tau) of the cells is *shared* — each such cell is a
bit of part i's pattern or of part j's pattern, so every region with the same part shows it —
and the other cells are *specific*: random bits of that region alone. The prompt text never
depends on tau, only the rendering does. Colour, position and background are nuisance
attributes named by the prompt, as in the default world.

Pool shares follow a Zipf law over a seeded random ranking of the regions (rank 1 commonest),
so rarity is independent of content. Groups, by rank: "unseen-tail" (the rarest
``unseen_tail``) and "unseen-head" (``unseen_head_ranks``, a control: common yet unpaired) have
no paired images; "under" are the rarest ``under_regions`` seen regions; "head" the other seen
regions of rank <= ``head_ranks``; "mid" all the rest.

Difficulty spread (``easy_regions``): regions spread evenly over the rarity order show one
world-wide template glyph except on ``easy_cells`` fixed cells, where each shows bits of its own
(distinct between easy regions). An easy region has a few bits to learn where the others have a
whole glyph, so at equal draws the regions' remaining discrepancy should differ severalfold --
the spread that tracker-driven allocation needs to beat region-uniform. Measured on
glyph_small_easy.json (6 of 12 easy): a third of the others' discrepancy at equal draws, and ARIA
below region-uniform in every seed (docs/test_bed.md, "How much could any allocation gain").
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aria_train.options import check_fields, check_seed
from aria_train.worlds.config import MAX_IMAGE_SIZE
from aria_train.worlds.glyph.render import PLACEMENTS
from aria_train.worlds.render import BACKGROUNDS, COLOURS

GLYPH_ATTRIBUTES = ("word", "colour", "position", "background")
GLYPH_GROUPS = ("head", "mid", "under", "unseen-head", "unseen-tail")
NUISANCE_FIELDS = {"colour": "colours", "position": "positions", "background": "backgrounds"}
CATALOG = {"colour": tuple(COLOURS), "position": tuple(PLACEMENTS), "background": tuple(BACKGROUNDS)}


@dataclass
class GlyphWorldConfig:
    """Everything that defines a glyph world; ``GlyphWorld(config)`` is a pure function of it."""

    kind: Literal["glyph"] = "glyph"  # world family, read by worlds.load_world_config
    image_size: int = 32  # pixels per image side
    first_parts: int = 6  # values of the first part i
    second_parts: int = 8  # values of the second part j; regions K = first_parts * second_parts
    glyph_cells: int = 8  # cells per glyph side (C = glyph_cells^2 bits per glyph)
    cell_px: int = 2  # pixels per cell side; the tile, glyph plus a one-cell frame, is (glyph_cells + 2) * cell_px px
    glyph_transfer: float = 0.5  # tau in [0, 1]: fraction of the C cells that are shared (round(tau * C) cells)
    word_parts: bool = False  # region (i, j)'s prompt word is two words, one per part ("teg zok"): the text names the parts
    easy_regions: int = 0  # regions (spread evenly over the rarity order) whose glyph is one world-wide template except on easy_cells cells: a spread of difficulty across regions (0: none)
    easy_cells: int = 4  # cells (the same for every easy region) where an easy region shows bits of its own, distinct per easy region
    zipf_exponent: float = 1.2  # s >= 0: region of rank r has pool share r^-s / sum_k k^-s (0: uniform)
    pool_total: int = 200_000  # pool prompts over all regions (per region: round(pool_total * share))
    unseen_tail: int = 6  # rarest regions (highest ranks), in the pool but never paired
    unseen_head_ranks: list[int] = field(default_factory=lambda: [2, 3])  # ranks (1 = commonest) never paired
    head_ranks: int = 8  # seen regions of rank <= head_ranks are "head"
    under_regions: int = 8  # the rarest seen regions (ranks just above the unseen tail) are "under"
    paired_total: int = 800  # paired prompts over the seen regions, split in proportion to their shares
    paired_min: int = 1  # at least this many paired prompts per seen region
    heldout_per_region: int = 24  # held-out prompts per region (texts not in the pool)
    colours: list[str] = field(default_factory=lambda: list(CATALOG["colour"]))  # object colours
    positions: list[str] = field(default_factory=lambda: list(CATALOG["position"]))  # tile placements
    backgrounds: list[str] = field(default_factory=lambda: list(CATALOG["background"]))  # background colours
    seed: int = 0  # seeds glyph bits, shared-cell mask, rarity ranking and prompt draws (not the words)

    def __post_init__(self) -> None:
        # types first, so every later check compares numbers with numbers (one line naming the field)
        check_fields(self, "glyph world config")
        check_seed("seed", self.seed)  # numpy's own refusal names no option
        if self.kind != "glyph":
            raise ValueError(f"GlyphWorldConfig.kind must be 'glyph', got {self.kind!r}")
        if self.first_parts < 1 or self.second_parts < 1 or self.num_regions < 2:
            raise ValueError("first_parts and second_parts must be >= 1, with at least 2 regions")
        if self.glyph_cells < 2 or self.cell_px < 1:
            raise ValueError("glyph_cells must be >= 2 and cell_px >= 1")
        if self.image_size > MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be at most {MAX_IMAGE_SIZE} pixels, got {self.image_size}")
        if self.tile_px > self.image_size:
            raise ValueError(f"the tile ((glyph_cells + 2) * cell_px = {self.tile_px} px) does not fit in "
                             f"image_size {self.image_size}")
        if not 0.0 <= self.glyph_transfer <= 1.0:
            raise ValueError(f"glyph_transfer must be in [0, 1], got {self.glyph_transfer}")
        if not 0 <= self.easy_regions <= self.num_regions or not 1 <= self.easy_cells <= self.num_cells \
                or self.easy_regions > 2**self.easy_cells:
            raise ValueError(f"easy_regions must be in [0, {self.num_regions}] and easy_cells in [1, {self.num_cells}], "
                             f"with at most 2^easy_cells easy regions (their glyphs must differ); got "
                             f"{self.easy_regions} and {self.easy_cells}")
        if self.zipf_exponent < 0:
            raise ValueError(f"zipf_exponent must be >= 0, got {self.zipf_exponent}")
        for attribute, name in NUISANCE_FIELDS.items():
            values = getattr(self, name)
            if not values or len(set(values)) != len(values) or any(v not in CATALOG[attribute] for v in values):
                raise ValueError(f"{name} must be distinct, non-empty and from {list(CATALOG[attribute])}; "
                                 f"got {values}")
        k, ranks = self.num_regions, self.unseen_head_ranks
        if min(self.unseen_tail, self.under_regions, self.head_ranks) < 0 or \
                self.head_ranks + self.under_regions + self.unseen_tail > k:
            raise ValueError(f"head_ranks + under_regions + unseen_tail must be counts summing to at most {k} regions")
        if len(set(ranks)) != len(ranks) or any(not 1 <= r <= self.head_ranks for r in ranks) or \
                len(ranks) >= self.head_ranks:
            raise ValueError(f"unseen_head_ranks must be distinct ranks in [1, head_ranks={self.head_ranks}], "
                             f"leaving at least one seen head region; got {ranks}")
        if self.pool_total < 1 or self.heldout_per_region < 1 or self.paired_total < 1 or self.paired_min < 0:
            raise ValueError("pool_total, heldout_per_region and paired_total must be >= 1 (distillation needs paired "
                             f"images), paired_min >= 0; got {self.pool_total}, {self.heldout_per_region}, "
                             f"{self.paired_total}, {self.paired_min}")

    @property
    def num_regions(self) -> int:
        return self.first_parts * self.second_parts

    @property
    def num_cells(self) -> int:
        return self.glyph_cells**2

    @property
    def tile_px(self) -> int:
        return (self.glyph_cells + 2) * self.cell_px

    def values(self, attribute: str) -> list[str]:
        """The configured values of one nuisance attribute (colour, position, background)."""
        return getattr(self, NUISANCE_FIELDS[attribute])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GlyphWorldConfig":
        if not isinstance(data, dict):
            raise ValueError(f"glyph world config must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown GlyphWorldConfig fields: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
