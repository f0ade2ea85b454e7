"""Rendering of the glyph world: a square tile holding the region's glyph on a flat background.

The tile is a one-cell frame in the object colour around the glyph; a glyph cell is the object
colour for bit 1 and the background colour for bit 0. Everything sits on whole pixels (cells of
``cell_px`` px, integer offsets), so there is no anti-aliasing and a clean render holds exactly
two colours. As in the default world an image is ``background + alpha * (colour - background)``
with alpha in {0, 1} from a (region, placement) template.
"""
from __future__ import annotations

import numpy as np

# Tile placements as (x, y) fractions of the free range image_size - tile side (x right, y down):
# the same names (and prompt phrases) as the default world's positions. 0.1 / 0.9 keep the frame
# off the image border.
PLACEMENTS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top left": (0.1, 0.1),
    "top right": (0.9, 0.1),
    "bottom left": (0.1, 0.9),
    "bottom right": (0.9, 0.9),
}


def tile_offsets(positions: tuple[str, ...], image_size: int, tile_px: int) -> np.ndarray:
    """Top-left pixel (x, y) of the tile for each placement, int64 (P, 2)."""
    free = image_size - tile_px
    return np.array([[int(np.floor(f * free + 0.5)) for f in PLACEMENTS[p]] for p in positions], np.int64)


def cell_index(glyph_cells: int, cell_px: int) -> np.ndarray:
    """For each pixel of the tile, the glyph cell it shows (row-major), -1 on the frame; (T, T)."""
    cells = np.arange(glyph_cells**2).reshape(glyph_cells, glyph_cells)
    inner = np.kron(cells, np.ones((cell_px, cell_px), np.int64))
    return np.pad(inner, cell_px, constant_values=-1)


def alpha_templates(glyphs: np.ndarray, positions: tuple[str, ...], image_size: int, glyph_cells: int,
                    cell_px: int) -> np.ndarray:
    """Object coverage in {0, 1}, float32 (K, P, H, W), of every region's tile at every placement."""
    index = cell_index(glyph_cells, cell_px)
    tiles = np.where(index < 0, True, glyphs[:, np.maximum(index, 0)]).astype(np.float32)  # (K, T, T)
    side = index.shape[0]
    out = np.zeros((len(glyphs), len(positions), image_size, image_size), np.float32)
    for p, (x, y) in enumerate(tile_offsets(positions, image_size, side)):
        out[:, p, y: y + side, x: x + side] = tiles
    return out
