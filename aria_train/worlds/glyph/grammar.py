"""The glyph world's prompts: a template with the region's word, a noun, and one phrase each for
colour, position and background (the default world's phrases).

A region's prompts are numbered 0 .. per_region - 1 (mixed radix over template, noun and the
three phrase lists), so a set of distinct prompts is a set of distinct numbers: the tables draw
numbers without replacement and never need to reject a repeated text. Every value of an
attribute has the same number of phrases, so a uniform number gives uniform attribute values.
With the full catalog a region has 6 x 6 x 12 x 15 x 12 = 77,760 prompts, enough for the
commonest region of the default config (60,770 pool + 24 held-out prompts), so every pool text
is distinct. Texts start differently per template, and the fixed slot order keeps the phrases
apart, so distinct numbers give distinct texts (checked by the tests).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from aria_train.worlds.glyph.config import GlyphWorldConfig
from aria_train.worlds.grammar import PHRASES

# Colour phrases include "emerald", so "a" never directly precedes {colour}.
TEMPLATES = (
    "the {colour} {word} {noun} {position} {background}",
    "there is a {word} {noun} in {colour} {position} {background}",
    "{background} {position} the {colour} {word} {noun}",
    "{colour} {word} {noun} {background} {position}",
    "a {word} {noun} coloured {colour} {position} {background}",
    "{position} {background} a {word} {noun} in {colour}",
)
NOUNS = ("tile", "badge", "patch", "stamp", "plate", "panel")
SLOTS = ("colour", "position", "background")


class GlyphGrammar:
    """Prompt numbering, text and vocabulary of one glyph world configuration."""

    def __init__(self, config: GlyphWorldConfig, words: tuple[str, ...]):
        self.words = words
        # Flat phrase lists per slot, in configured value order, with the value of each phrase.
        self.phrases = {a: [p for v in config.values(a) for p in PHRASES[a][v]] for a in SLOTS}
        self.phrase_values = {a: np.array([v for v in config.values(a) for _ in PHRASES[a][v]], dtype=object)
                              for a in SLOTS}
        self.radix = (len(TEMPLATES), len(NOUNS), *(len(self.phrases[a]) for a in SLOTS))

    @property
    def per_region(self) -> int:
        """Distinct prompts of one region."""
        return int(np.prod(self.radix))

    def decode(self, regions: np.ndarray, numbers: np.ndarray) -> tuple[list[str], pd.DataFrame]:
        """Texts and attribute rows (columns word, colour, position, background) of prompt
        ``numbers[n]`` of region ``regions[n]``."""
        template, noun, *slots = np.unravel_index(np.asarray(numbers, np.int64), self.radix)
        words = np.asarray(self.words, dtype=object)[np.asarray(regions, np.int64)]
        texts = [TEMPLATES[t].format(word=w, noun=NOUNS[n], colour=self.phrases["colour"][c],
                                     position=self.phrases["position"][p], background=self.phrases["background"][b])
                 for t, w, n, c, p, b in zip(template, words, noun, *slots)]
        attrs = pd.DataFrame({"word": words, **{a: self.phrase_values[a][s] for a, s in zip(SLOTS, slots)}})
        return texts, attrs

    def vocabulary(self) -> list[str]:
        """Every word a prompt can contain, sorted."""
        words = {w for t in TEMPLATES for w in t.split() if not w.startswith("{")}
        words.update(NOUNS, (w for name in self.words for w in name.split()))
        words.update(w for a in SLOTS for p in self.phrases[a] for w in p.split())
        return sorted(words)

    def max_words(self) -> int:
        """Words in the longest prompt (the noun is one word; a region's word one, or two with word_parts)."""
        longest = {a: max(len(p.split()) for p in self.phrases[a]) for a in SLOTS}
        longest |= {"word": max(len(name.split()) for name in self.words), "noun": 1}
        return max(sum(longest[w[1:-1]] if w.startswith("{") else 1 for w in t.split()) for t in TEMPLATES)


def reserved_words() -> frozenset[str]:
    """Words of the grammar other than region words (which must differ from all of them)."""
    words = {w for t in TEMPLATES for w in t.split() if not w.startswith("{")} | set(NOUNS)
    words.update(w for a in SLOTS for phrases in PHRASES[a].values() for p in phrases for w in p.split())
    return frozenset(words)
