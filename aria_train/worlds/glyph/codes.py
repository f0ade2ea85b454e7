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
changes nothing else.

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


def part_patterns(config: GlyphWorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """Bits (bool, (first_parts, C) and (second_parts, C)) of every part value over all cells."""
    draw = lambda part, count: np.random.default_rng([config.seed, PART_STREAM, part]).integers(
        0, 2, (count, config.num_cells)).astype(bool)
    return draw(0, config.first_parts), draw(1, config.second_parts)


def specific_patterns(config: GlyphWorldConfig) -> np.ndarray:
    """Bits (bool, (K, C)) of each region's own pattern: one independent stream per region."""
    return np.stack([np.random.default_rng([config.seed, SPECIFIC_STREAM, k]).integers(0, 2, config.num_cells)
                     for k in range(config.num_regions)]).astype(bool)


def glyph_bits(config: GlyphWorldConfig) -> np.ndarray:
    """Every region's glyph, bool (K, C), cells row-major; region k = (i, j) = divmod(k, second_parts)."""
    roles = cell_roles(config)
    first, second = part_patterns(config)
    i, j = np.divmod(np.arange(config.num_regions), config.second_parts)
    return np.where(roles == FIRST, first[i], np.where(roles == SECOND, second[j], specific_patterns(config)))
