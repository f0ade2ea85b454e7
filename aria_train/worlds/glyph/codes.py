"""The glyph world's region words and glyph bits.

Words: pronounceable consonant-vowel-consonant-vowel-consonant nonsense words from one fixed
stream (independent of the seed, so a seed changes draws, never the vocabulary); region k gets
the k-th distinct word. They start with a consonant so that "a <word>" reads naturally, and end
in k, v or z, which few English words of this shape do (endings such as -er, -en, -al, -id
made real words: "tiler", "salad"); the default 48 were read by eye.

Glyphs: every cell has a fixed role drawn once from the seed — its rank in a seeded random
permutation of the cells. The first round(tau * C) cells of that permutation are shared, and
they alternate between the first part and the second part; the rest are specific. The bits are
drawn for every cell whatever tau is (one pattern per part value, one per region), and tau only
chooses which pattern a cell shows, so raising tau turns specific cells into shared ones and
changes nothing else — except in a world where two regions' glyphs would coincide (few specific
cells, few cells per part): there the part patterns are redrawn (`glyph_bits`).

Shared cells belong to ONE part each, not to a combination (e.g. XOR) of both: a cell then
depends on i alone or on j alone, as colour and shape are separate factors of the default world,
and a region's shared cells are all seen in regions that share one of its parts. With XOR every
cell would be an interaction of i and j, which networks learn far less readily.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from aria_train.worlds.glyph.config import GlyphWorldConfig

SPECIFIC, FIRST, SECOND = 0, 1, 2  # cell roles
CONSONANTS, VOWELS, FINALS = "bdfgklmnprstvz", "aeiou", "kvz"
WORD_STREAM = 20_241_111  # fixed seed of the word list
# Seed-stream tags: each random quantity has its own stream, so adding one never moves another.
MASK_STREAM, PART_STREAM, SPECIFIC_STREAM = 2, 3, 4
EASY_STREAM = 6  # (5 is split.RANK_STREAM)
MAX_REDRAWS = 100  # part-pattern draws tried before a world is refused as too small for distinct glyphs


@lru_cache(maxsize=4)
def region_words(count: int, reserved: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """``count`` distinct made-up words, none in ``reserved`` (the rest of the vocabulary)."""
    rng = np.random.default_rng(WORD_STREAM)
    words: list[str] = []
    while len(words) < count:
        letters = [CONSONANTS, VOWELS, CONSONANTS, VOWELS, FINALS]
        word = "".join(alphabet[rng.integers(len(alphabet))] for alphabet in letters)
        if word not in reserved and word not in words:
            words.append(word)
    return tuple(words)


def region_names(config: GlyphWorldConfig, reserved: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Each region's prompt word: the k-th made-up word, or with ``word_parts`` the pair "a b" of
    a word per first part and a word per second part, region k = (i, j) = divmod(k, second_parts)
    (first_parts + second_parts distinct words). Only with word_parts does the text say which
    regions share a part, which the student needs before shared glyph cells can transfer."""
    if not config.word_parts:
        return region_words(config.num_regions, reserved)
    words = region_words(config.first_parts + config.second_parts, reserved)
    first, second = words[: config.first_parts], words[config.first_parts:]
    i, j = np.divmod(np.arange(config.num_regions), config.second_parts)
    return tuple(f"{first[a]} {second[b]}" for a, b in zip(i, j))


def shared_count(config: GlyphWorldConfig) -> int:
    """Shared cells: tau * C rounded half up (Python's round() would round 0.5 to even)."""
    return int(np.floor(config.glyph_transfer * config.num_cells + 0.5))


def cell_roles(config: GlyphWorldConfig) -> np.ndarray:
    """Role of every cell (row-major, length C), int8: SPECIFIC, FIRST or SECOND."""
    order = np.random.default_rng([config.seed, MASK_STREAM]).permutation(config.num_cells)
    roles = np.full(config.num_cells, SPECIFIC, np.int8)
    shared = order[: shared_count(config)]
    roles[shared] = np.where(np.arange(len(shared)) % 2 == 0, FIRST, SECOND)
    return roles


def part_patterns(config: GlyphWorldConfig, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bits (bool, (first_parts, C) and (second_parts, C)) of every part value over all cells;
    `draw` > 0 selects a fresh stream (`glyph_bits` redraws when two glyphs would coincide)."""
    redraw = [draw] if draw else []  # draw 0 keeps the original stream key, so existing worlds stay
    bits = lambda part, count: np.random.default_rng([config.seed, PART_STREAM, part, *redraw]).integers(
        0, 2, (count, config.num_cells)).astype(bool)
    return bits(0, config.first_parts), bits(1, config.second_parts)


def specific_patterns(config: GlyphWorldConfig) -> np.ndarray:
    """Bits (bool, (K, C)) of each region's own pattern: one independent stream per region."""
    return np.stack([np.random.default_rng([config.seed, SPECIFIC_STREAM, k]).integers(0, 2, config.num_cells)
                     for k in range(config.num_regions)]).astype(bool)


def easy_layout(config: GlyphWorldConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(easy regions (sorted ids), the template's bits (C,), the easy cells (sorted), each easy region's
    bits on them (easy_regions, easy_cells), distinct rows) of a world with ``easy_regions`` > 0.
    The easy regions are spread evenly over the rarity order (n of K: the regions at positions
    floor((m + 1/2) K / n) of the ranking, m = 0..n-1; 6 of 12: ranks 2, 4, ..., 12), so that
    difficulty is independent of rarity and every group of rare regions holds easy and hard ones
    (a random choice can make the rare regions all hard: seed 0 of the demo world did). The rest
    comes from its own stream, so worlds without easy regions draw nothing more."""
    from aria_train.worlds.glyph.split import make_split

    by_rank = np.argsort(make_split(config).rank, kind="stable")  # region ids, commonest first
    k, n = config.num_regions, config.easy_regions
    regions = np.sort(by_rank[np.floor((np.arange(n) + 0.5) * k / n).astype(int)])
    rng = np.random.default_rng([config.seed, EASY_STREAM])
    template = rng.integers(0, 2, config.num_cells).astype(bool)
    cells = np.sort(rng.permutation(config.num_cells)[: config.easy_cells])
    codes = rng.choice(2**config.easy_cells, size=config.easy_regions, replace=False)
    own = (codes[:, None] >> np.arange(config.easy_cells)[None, :]) & 1
    return regions, template, cells, own.astype(bool)


def template_cells(config: GlyphWorldConfig) -> np.ndarray:
    """bool (K, C): the cells where a region shows the world-wide template (easy regions only)."""
    mask = np.zeros((config.num_regions, config.num_cells), bool)
    if config.easy_regions:
        regions, _, cells, _ = easy_layout(config)
        mask[regions] = True
        mask[np.ix_(regions, cells)] = False
    return mask


def glyph_bits(config: GlyphWorldConfig) -> np.ndarray:
    """Every region's glyph, bool (K, C), cells row-major; region k = (i, j) = divmod(k, second_parts).

    Every two regions' glyphs differ (else the checker could not tell them apart and the two
    regions would be one concept). Random part patterns can coincide on the few cells a part
    owns when most cells are shared (the seed-0 worlds of 16 cells at tau = 1 had three pairs of
    identical glyphs); then the part patterns are redrawn from the next stream until all glyphs
    differ. Only such worlds change: a world whose first draw is distinct keeps it, and so do the
    specific patterns and the cell mask. Easy regions (``easy_layout``) show the template with
    their own distinct bits on the easy cells."""
    roles = cell_roles(config)
    specific = specific_patterns(config)
    i, j = np.divmod(np.arange(config.num_regions), config.second_parts)
    easy = easy_layout(config) if config.easy_regions else None
    for draw in range(MAX_REDRAWS):
        first, second = part_patterns(config, draw)
        glyphs = np.where(roles == FIRST, first[i], np.where(roles == SECOND, second[j], specific))
        if easy is not None:  # the template, and their own bits on the easy cells
            regions, template, cells, own = easy
            glyphs[regions] = template
            glyphs[np.ix_(regions, cells)] = own
        if len(np.unique(glyphs, axis=0)) == config.num_regions:
            return glyphs
    raise ValueError(f"no {config.num_regions} distinct glyphs of {config.num_cells} cells at glyph_transfer "
                     f"{config.glyph_transfer} in {MAX_REDRAWS} draws: use more glyph_cells or a lower glyph_transfer")
