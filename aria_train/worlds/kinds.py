"""World families by name: load any world config and build its world.

A world JSON names its family in "kind": "glyph" for ``GlyphWorldConfig``; no "kind" (every
existing world.json) or "attributes" is the default colour x shape ``WorldConfig``, whose saved
JSON stays exactly as before (it has no "kind" field).
"""
from __future__ import annotations

from pathlib import Path

from aria_train.worlds.config import WorldConfig, read_world_json
from aria_train.worlds.glyph import GlyphWorld, GlyphWorldConfig
from aria_train.worlds.world import World

AnyWorldConfig = WorldConfig | GlyphWorldConfig
AnyWorld = World | GlyphWorld
KINDS = ("attributes", "glyph")


def load_world_config(source: str | Path | dict) -> AnyWorldConfig:
    """The world config in a JSON file or dict, of the family its "kind" names (default: attributes)."""
    if isinstance(source, dict):
        data = dict(source)
    else:
        data = read_world_json(source)
    kind = data.get("kind", "attributes")
    if kind == "glyph":
        return GlyphWorldConfig.from_dict(data)
    if kind == "attributes":
        data.pop("kind", None)
        return WorldConfig.from_dict(data)
    raise ValueError(f"unknown world kind {kind!r}; expected one of {list(KINDS)}")


def make_world(config: AnyWorldConfig | None = None) -> AnyWorld:
    """The world of a config of either family (None: the default world)."""
    return GlyphWorld(config) if isinstance(config, GlyphWorldConfig) else World(config)
