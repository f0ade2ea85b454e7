"""The embedded text-to-image worlds: a prompt grammar over five attributes, a deterministic
renderer, region labels and splits for distillation, and an attribute checker for evaluation;
and the glyph family (``aria_train.worlds.glyph``), whose transfer between regions is a knob.
``load_world_config`` / ``make_world`` take either family. numpy/pandas/scipy only (no torch)."""
from aria_train.worlds.checker import AttributeChecker, corrupt
from aria_train.worlds.config import ATTRIBUTES, WorldConfig
from aria_train.worlds.glyph import GlyphChecker, GlyphWorld, GlyphWorldConfig
from aria_train.worlds.grammar import parse_prompt
from aria_train.worlds.kinds import AnyWorld, AnyWorldConfig, load_world_config, make_world
from aria_train.worlds.world import TABLE_COLUMNS, World

__all__ = ["ATTRIBUTES", "AnyWorld", "AnyWorldConfig", "AttributeChecker", "GlyphChecker", "GlyphWorld",
           "GlyphWorldConfig", "TABLE_COLUMNS", "World", "WorldConfig", "corrupt", "load_world_config", "make_world",
           "parse_prompt"]
