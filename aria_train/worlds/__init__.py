"""The embedded text-to-image world: a prompt grammar over five attributes, a deterministic
renderer, region labels and splits for distillation, and an attribute checker for evaluation.
numpy/pandas/scipy only (no torch)."""
from aria_train.worlds.checker import AttributeChecker, corrupt
from aria_train.worlds.config import ATTRIBUTES, WorldConfig
from aria_train.worlds.grammar import parse_prompt
from aria_train.worlds.world import TABLE_COLUMNS, World

__all__ = ["ATTRIBUTES", "AttributeChecker", "TABLE_COLUMNS", "World", "WorldConfig", "corrupt", "parse_prompt"]
