"""Rendering: attributes -> RGB uint8 image, deterministic and vectorised over a batch.

An image is a flat background with one object. The object's coverage ``alpha`` (anti-aliased by
4x4 supersampling) depends only on (shape, size, position), so every such combination is rendered
once into a template and an image is ``background + alpha * (colour - background)``. The
attribute checker fits the same templates, so the two can never disagree about geometry.

Geometry is in units of the image side, so every ``image_size`` gives the same picture; sizes are
object radii (the half-extent of every shape), positions the object's centre (x right, y down).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
import pandas as pd

# Inside tests in coordinates (u, v) relative to the centre, in units of the radius; v points down.
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85),
    # Apex up at v = -1, base at v = 0.8 with half-width 1.
    "triangle": lambda u, v: (v <= 0.8) & (np.abs(u) <= (v + 1.0) / 1.8),
    "cross": lambda u, v: ((np.abs(u) <= 0.33) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.33) & (np.abs(u) <= 1.0)),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.5**2),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
}
# Object colours and background colours (RGB, 0-255). Every object colour is at least 0.5 of the
# RGB range (Euclidean) away from every background, so the object is always clearly visible.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 30),
    "blue": (40, 70, 230),
    "yellow": (240, 220, 20),
    "purple": (200, 40, 200),
    "cyan": (0, 200, 220),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
}
SIZES: dict[str, float] = {"small": 0.15, "medium": 0.22, "large": 0.30}  # radius / image side
POSITIONS: dict[str, tuple[float, float]] = {  # centre (x, y) / image side
    "center": (0.5, 0.5),
    "top left": (0.32, 0.32),
    "top right": (0.68, 0.32),
    "bottom left": (0.32, 0.68),
    "bottom right": (0.68, 0.68),
}
SUPERSAMPLE = 4  # subpixels per pixel side for anti-aliased edges


@lru_cache(maxsize=8)
def alpha_templates(
    shapes: tuple[str, ...], sizes: tuple[str, ...], positions: tuple[str, ...], image_size: int
) -> np.ndarray:
    """Object coverage in [0, 1], float32 of shape (len(shapes), len(sizes), len(positions), H, W).

    Cached and read-only: callers index it, never write to it.
    """
    n = image_size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / n  # subpixel centres in units of the image side
    y, x = np.meshgrid(coords, coords, indexing="ij")
    out = np.empty((len(shapes), len(sizes), len(positions), image_size, image_size), np.float32)
    for i, shape in enumerate(shapes):
        for j, size in enumerate(sizes):
            radius = SIZES[size]
            for k, position in enumerate(positions):
                cx, cy = POSITIONS[position]
                inside = SHAPES[shape]((x - cx) / radius, (y - cy) / radius).astype(np.float32)
                out[i, j, k] = inside.reshape(image_size, SUPERSAMPLE, image_size, SUPERSAMPLE).mean(axis=(1, 3))
    out.setflags(write=False)
    return out


def value_indices(attrs: pd.DataFrame, column: str, values: tuple[str, ...]) -> np.ndarray:
    """Index of each row's ``column`` value within ``values``; ValueError for an unknown value."""
    lookup = {value: i for i, value in enumerate(values)}
    try:
        return np.fromiter((lookup[v] for v in attrs[column]), np.int64, count=len(attrs))
    except KeyError as err:
        raise ValueError(f"unknown {column} {err.args[0]!r}; expected one of {list(values)}") from None


def render(
    attrs: pd.DataFrame,
    shapes: tuple[str, ...],
    colours: tuple[str, ...],
    sizes: tuple[str, ...],
    positions: tuple[str, ...],
    backgrounds: tuple[str, ...],
    image_size: int,
) -> np.ndarray:
    """Images uint8 (N, image_size, image_size, 3) for the rows of ``attrs``.

    ``attrs`` has columns shape, colour, size, position, background holding value names; the
    tuples name the values allowed (the world's configuration).
    """
    alpha = alpha_templates(shapes, sizes, positions, image_size)[
        value_indices(attrs, "shape", shapes), value_indices(attrs, "size", sizes), value_indices(attrs, "position", positions)
    ]
    colour = np.array([COLOURS[c] for c in colours], np.float32)[value_indices(attrs, "colour", colours)]
    background = np.array([BACKGROUNDS[b] for b in backgrounds], np.float32)[value_indices(attrs, "background", backgrounds)]
    image = background[:, None, None, :] + alpha[..., None] * (colour - background)[:, None, None, :]
    return np.rint(image).astype(np.uint8)
