"""WorldConfig: the embedded world's attribute sets, its regions and their split, saved as JSON.

A region is one combination of the ``region_attributes`` values (default colour x shape, so
"red circle" is a region); its name is those values joined by spaces. Every region is in one
group: "unseen" (in the prompt pool as text only, never paired with a teacher image), "under"
(underrepresented: few pool prompts and very few pairs) or "seen" (all the others).

Every field is type-checked on construction (aria_train.options.check_value: an integer is not a
string, a float or a boolean; a list holds strings), so a world JSON of wrong types is one
ValueError line, never a traceback from deep inside the world.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from aria_train.options import check_fields, check_seed
from aria_train.worlds.render import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES

ATTRIBUTES = ("shape", "colour", "size", "position", "background")
CATALOG: dict[str, tuple[str, ...]] = {
    "shape": tuple(SHAPES), "colour": tuple(COLOURS), "size": tuple(SIZES),
    "position": tuple(POSITIONS), "background": tuple(BACKGROUNDS),
}
GROUPS = ("seen", "unseen", "under")


# the worlds render every paired and held-out image in memory; a side of 10^5 px asked numpy for TiBs
MAX_IMAGE_SIZE = 512


@dataclass
class WorldConfig:
    """Everything that defines a world; ``World(config)`` is a pure function of it.

    Counts are prompts per region. Paired prompts are a subset of the region's pool prompts;
    held-out prompts are texts that are not in the pool (they may share attribute values).
    """

    image_size: int = 32  # pixels per side
    shapes: list[str] = field(default_factory=lambda: list(CATALOG["shape"]))
    colours: list[str] = field(default_factory=lambda: list(CATALOG["colour"]))
    sizes: list[str] = field(default_factory=lambda: list(CATALOG["size"]))
    positions: list[str] = field(default_factory=lambda: list(CATALOG["position"]))
    backgrounds: list[str] = field(default_factory=lambda: list(CATALOG["background"]))
    region_attributes: list[str] = field(default_factory=lambda: ["colour", "shape"])
    # Chosen so that every colour and every shape keeps at least four seen regions: the unseen
    # regions are new *combinations* of familiar attribute values.
    unseen: list[str] = field(default_factory=lambda: [
        "red triangle", "green ring", "blue diamond", "yellow circle", "purple square"])
    under: list[str] = field(default_factory=lambda: [
        "red cross", "green circle", "blue square", "yellow ring", "cyan triangle"])
    pool_per_region: int = 1000  # seen and unseen regions
    pool_per_under_region: int = 16
    paired_per_region: int = 32  # seen regions; unseen regions have none
    paired_per_under_region: int = 2
    heldout_per_region: int = 24  # every region
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, "world config")
        check_seed("seed", self.seed)  # numpy's own refusal names no option
        if not 8 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be in [8, {MAX_IMAGE_SIZE}] pixels, got {self.image_size}")
        for attribute in ATTRIBUTES:
            values = self.values(attribute)
            unknown = [v for v in values if v not in CATALOG[attribute]]
            if not values or unknown or len(set(values)) != len(values):
                raise ValueError(f"{attribute} values must be distinct, non-empty and from "
                                 f"{list(CATALOG[attribute])}; got {values}")
        if not self.region_attributes or len(set(self.region_attributes)) != len(self.region_attributes) \
                or any(a not in ATTRIBUTES for a in self.region_attributes):
            raise ValueError(f"region_attributes must be distinct names from {list(ATTRIBUTES)}, "
                             f"got {self.region_attributes}")
        names = set(self.region_names())
        for group in ("unseen", "under"):
            unknown = [name for name in getattr(self, group) if name not in names]
            if unknown:
                raise ValueError(f"{group} regions {unknown} are not regions of this world")
        if set(self.unseen) & set(self.under):
            raise ValueError(f"regions both unseen and under: {sorted(set(self.unseen) & set(self.under))}")
        if len(set(self.unseen) | set(self.under)) >= len(names):
            raise ValueError("at least one region must be seen")
        counts = ("pool_per_region", "pool_per_under_region", "paired_per_region",
                  "paired_per_under_region", "heldout_per_region")
        if any(getattr(self, c) < 0 for c in counts) or min(
                self.pool_per_region, self.pool_per_under_region, self.heldout_per_region) < 1:
            raise ValueError("prompt counts must be >= 0, and pool and held-out counts >= 1")
        if self.paired_per_region > self.pool_per_region or self.paired_per_under_region > self.pool_per_under_region:
            raise ValueError("paired prompts are drawn from the pool: paired counts must not exceed pool counts")

    def values(self, attribute: str) -> list[str]:
        """The configured values of one attribute (e.g. ``values("colour")``)."""
        return getattr(self, {"shape": "shapes", "colour": "colours", "size": "sizes",
                              "position": "positions", "background": "backgrounds"}[attribute])

    def region_names(self) -> list[str]:
        """Region names in region-id order (the last region attribute varies fastest)."""
        return [" ".join(combo) for combo in itertools.product(*(self.values(a) for a in self.region_attributes))]

    def region_groups(self) -> list[str]:
        """The group ("seen", "unseen", "under") of each region, in region-id order."""
        return ["unseen" if n in self.unseen else "under" if n in self.under else "seen" for n in self.region_names()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "WorldConfig":
        if not isinstance(data, dict):
            raise ValueError(f"world config must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown WorldConfig fields: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "WorldConfig":
        return cls.from_dict(read_world_json(path))


def read_world_json(path: str | Path) -> dict:
    """The JSON object of a world config file, or of the world.json in a folder (`aria world --out`
    writes one there); FileNotFoundError / ValueError with one line."""
    path = Path(path)
    if path.is_dir():
        if not (path / "world.json").is_file():
            raise FileNotFoundError(f"world config {path} is a folder without a world.json")
        path = path / "world.json"
    if not path.is_file():
        raise FileNotFoundError(f"world config {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"world config {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"world config {path} must hold a JSON object")
    return data
