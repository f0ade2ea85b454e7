"""The glyph world family: K made-up words, each shown as a binary glyph whose share of cells
that transfer between regions (``glyph_transfer``) is a knob; Zipf-imbalanced pool shares."""
from aria_train.worlds.glyph.checker import GlyphChecker
from aria_train.worlds.glyph.config import GLYPH_ATTRIBUTES, GLYPH_GROUPS, GlyphWorldConfig
from aria_train.worlds.glyph.world import GLYPH_TABLE_COLUMNS, GlyphWorld

__all__ = ["GLYPH_ATTRIBUTES", "GLYPH_GROUPS", "GLYPH_TABLE_COLUMNS", "GlyphChecker", "GlyphWorld", "GlyphWorldConfig"]
