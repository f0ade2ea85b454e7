"""The prompt grammar: templates x phrasings of each attribute value; parsing back to attributes.

A prompt is one of ``TEMPLATES`` with every slot filled by one phrase of its attribute's value,
so every prompt names all five attributes. Phrases of different attribute values never share a
word that would make them ambiguous, and templates differ in their word order, so distinct
(template, phrases) choices give distinct texts — tests/train/worlds/test_world.py checks this by
enumerating the whole grammar. Prompts are lower-case words separated by single spaces (no
punctuation), at most ``max_words`` long (15 for the full catalog).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd

from aria_train.worlds.config import ATTRIBUTES, WorldConfig

TEMPLATES = (
    "a {size} {colour} {shape} {position} {background}",
    "there is a {size} {colour} {shape} {position} {background}",
    "{background} {position} a {size} {colour} {shape}",
    "{size} {colour} {shape} {background} {position}",
)


def _corner_phrases(vertical: str, alternative: str, horizontal: str) -> list[str]:
    return [f"in the {vertical} {horizontal}", f"in the {alternative} {horizontal} corner", f"at the {vertical} {horizontal}"]


def _background_phrases(*words: str) -> list[str]:
    return [phrase for word in words for phrase in (f"on a {word} background", f"against a {word} backdrop")]


PHRASES: dict[str, dict[str, list[str]]] = {
    "shape": {
        "circle": ["circle", "disk"], "square": ["square", "box"], "triangle": ["triangle", "wedge"],
        "cross": ["cross", "plus"], "ring": ["ring", "donut"], "diamond": ["diamond", "rhombus"],
    },
    "colour": {
        "red": ["red", "crimson"], "green": ["green", "emerald"], "blue": ["blue", "cobalt"],
        "yellow": ["yellow", "golden"], "purple": ["purple", "violet"], "cyan": ["cyan", "turquoise"],
    },
    "size": {"small": ["small", "tiny"], "medium": ["medium", "midsize"], "large": ["large", "big"]},
    "position": {
        "center": ["in the center", "in the middle", "at the centre"],
        "top left": _corner_phrases("top", "upper", "left"),
        "top right": _corner_phrases("top", "upper", "right"),
        "bottom left": _corner_phrases("bottom", "lower", "left"),
        "bottom right": _corner_phrases("bottom", "lower", "right"),
    },
    "background": {
        "black": _background_phrases("black", "dark"),
        "white": _background_phrases("white", "light"),
        "gray": _background_phrases("gray", "grey"),
    },
}


def num_prompts(config: WorldConfig) -> int:
    """Number of distinct prompts the grammar makes for this configuration (all regions)."""
    per_attribute = [sum(len(PHRASES[a][v]) for v in config.values(a)) for a in ATTRIBUTES]
    return len(TEMPLATES) * int(np.prod(per_attribute))


def enumerate_prompts(config: WorldConfig) -> Iterator[str]:
    """Every prompt of the grammar, once each (``num_prompts(config)`` of them)."""
    phrases = [[p for v in config.values(a) for p in PHRASES[a][v]] for a in ATTRIBUTES]
    for template in TEMPLATES:
        positional = template.format(**{a: "{%d}" % i for i, a in enumerate(ATTRIBUTES)})
        yield from itertools.starmap(positional.format, itertools.product(*phrases))


def vocabulary(config: WorldConfig) -> list[str]:
    """Every word a prompt of this configuration can contain, sorted."""
    words = {w for t in TEMPLATES for w in t.split() if not w.startswith("{")}
    for attribute in ATTRIBUTES:
        words.update(w for v in config.values(attribute) for p in PHRASES[attribute][v] for w in p.split())
    return sorted(words)


def max_words(config: WorldConfig) -> int:
    """The length in words of the longest prompt of this configuration."""
    longest = {a: max(len(p.split()) for v in config.values(a) for p in PHRASES[a][v]) for a in ATTRIBUTES}
    return max(sum(longest[w[1:-1]] if w.startswith("{") else 1 for w in t.split()) for t in TEMPLATES)


def phrase(attrs: pd.DataFrame, rng: np.random.Generator) -> list[str]:
    """A random prompt for each row of ``attrs`` (uniform template and phrase choices)."""
    templates = rng.integers(len(TEMPLATES), size=len(attrs))
    choices = {a: rng.random(len(attrs)) for a in ATTRIBUTES}
    texts = []
    for i, row in enumerate(attrs[list(ATTRIBUTES)].itertuples(index=False)):
        slots = {}
        for a, value in zip(ATTRIBUTES, row):
            options = PHRASES[a][value]
            slots[a] = options[int(choices[a][i] * len(options))]
        texts.append(TEMPLATES[templates[i]].format(**slots))
    return texts


def parse_prompt(text: str, config: WorldConfig | None = None) -> dict[str, str]:
    """The attributes a prompt names: {attribute: value}, matching whole-word phrases.

    ValueError unless the text names exactly one value of every attribute (restricted to the
    configured values when ``config`` is given).
    """
    padded = f" {' '.join(text.split())} "
    out = {}
    for attribute in ATTRIBUTES:
        found = [v for v, phrases in _PADDED[attribute] if any(p in padded for p in phrases)]
        if config is not None:
            found = [v for v in found if v in config.values(attribute)]
        if len(found) != 1:
            raise ValueError(f"prompt {text!r} names {len(found)} {attribute} values {found}, expected one")
        out[attribute] = found[0]
    return out


# Phrases padded with spaces, so that substring tests match whole words only.
_PADDED = {a: [(v, [f" {p} " for p in phrases]) for v, phrases in PHRASES[a].items()] for a in ATTRIBUTES}
