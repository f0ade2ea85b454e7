"""GlyphChecker: reads colour, placement, background and the glyph back from glyph-world images.

Step 1 locates the tile: for every placement p, object colour c and background b of the palette
it scores the image as background outside the tile, colour c on the frame, and each glyph cell
as whichever of c and b is closer (squared error summed over the cell's pixels), and keeps the
best (p, c, b). Step 2 reads each cell's bit as that choice (1 = object colour), and step 3 the
region as the glyph nearest to those bits in Hamming distance (ties: lowest region id). Bits are
scored against the true region's glyph on shared and on region-specific cells separately.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from aria_train.worlds.glyph.codes import SPECIFIC
from aria_train.worlds.glyph.config import GLYPH_ATTRIBUTES, GlyphWorldConfig
from aria_train.worlds.glyph.render import cell_index, tile_offsets
from aria_train.worlds.render import BACKGROUNDS, COLOURS

NUISANCES = ("colour", "position", "background")


class GlyphChecker:
    """Tile, colour and glyph reader for images of a glyph world (made by ``GlyphWorld.checker()``,
    which passes itself: the checker reads the world's glyph codes and never builds a world)."""

    def __init__(self, world, batch_size: int = 256):
        config: GlyphWorldConfig = world.config
        self.config, self.batch_size = config, batch_size
        self.world = world
        size, cells = config.image_size, config.num_cells
        index = cell_index(config.glyph_cells, config.cell_px).ravel()
        side = config.tile_px
        offsets = tile_offsets(tuple(config.positions), size, side)
        # Every pixel set _fit scores, one row each over the flattened image: outside the tile
        # per placement, the frame per placement, then each cell per placement.
        outside = np.ones((len(offsets), size * size))
        frame = np.zeros((len(offsets), size * size))
        cell = np.zeros((len(offsets), cells, size * size))
        for p, (x, y) in enumerate(offsets):
            pixel = (np.arange(y, y + side)[:, None] * size + np.arange(x, x + side)[None, :]).ravel()
            outside[p, pixel] = 0.0
            frame[p, pixel[index < 0]] = 1.0
            cell[p, index[index >= 0], pixel[index >= 0]] = 1.0
        self._grid = (len(offsets), cells)
        self._sets = np.concatenate([outside, frame, cell.reshape(-1, size * size)])
        self._counts = self._sets.sum(axis=1)
        self._colours = np.array([COLOURS[v] for v in config.colours], np.float64) / 255.0  # (Cc, 3)
        self._backgrounds = np.array([BACKGROUNDS[v] for v in config.backgrounds], np.float64) / 255.0  # (B, 3)
        # (K, C): cells a region shares with others -- part cells, and an easy region's template cells
        self._shared = (self.world.cell_roles != SPECIFIC)[None, :] | self.world.template_cells

    def read_bits(self, images: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        """(colour / position / background / word / region per image, glyph bits bool (N, C))."""
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(f"expected images of shape (N, {size}, {size}, 3), got {images.shape}")
        picks, bits = np.zeros((0, 3), np.int64), np.zeros((0, self.config.num_cells), bool)
        if len(images):
            fits = [self._fit(images[i: i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
            picks, bits = np.concatenate([f[0] for f in fits]), np.concatenate([f[1] for f in fits])
        region = (bits[:, None, :] != self.world.glyphs[None]).sum(-1).argmin(axis=1)  # nearest in Hamming distance
        c = self.config
        read = pd.DataFrame({
            "word": np.asarray(self.world.region_names, dtype=object)[region],
            "colour": np.asarray(c.colours, dtype=object)[picks[:, 1]],
            "position": np.asarray(c.positions, dtype=object)[picks[:, 0]],
            "background": np.asarray(c.backgrounds, dtype=object)[picks[:, 2]],
            "region": region,
        })
        return read, bits

    def read(self, images: np.ndarray) -> pd.DataFrame:
        """Attributes (columns word, colour, position, background) of uint8 (N, H, W, 3) images."""
        return self.read_bits(images)[0][list(GLYPH_ATTRIBUTES)]

    def _fit(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(placement, colour, background) indices (n, 3) of the best fit and its bits (n, C).

        A pixel set's squared error against a palette colour v needs only its sums of x and of
        |x|^2: sum |x - v|^2 = sum |x|^2 - 2 v . sum x + count |v|^2, so one matrix product
        gives every set (outside, frame, cells at every placement) at once.
        """
        n, (p_count, c_count) = len(images), self._grid
        x = images.reshape(n, -1, 3).astype(np.float64) / 255.0  # (n, HW, 3)
        stats = np.concatenate([x, (x**2).sum(-1, keepdims=True)], axis=-1)  # (n, HW, 4)
        sums = (self._sets @ stats.transpose(1, 0, 2).reshape(stats.shape[1], -1)).reshape(len(self._sets), n, 4)
        sums = sums.transpose(1, 0, 2)  # (n, sets, 4)

        def error(rows: slice, palette: np.ndarray) -> np.ndarray:  # (n, rows, V)
            s = sums[:, rows]
            return s[..., 3:] - 2 * s[..., :3] @ palette.T + self._counts[rows, None] * (palette**2).sum(1)

        outside = error(slice(0, p_count), self._backgrounds)  # (n, P, B)
        frame = error(slice(p_count, 2 * p_count), self._colours)  # (n, P, Cc)
        cells = slice(2 * p_count, None)
        cell_b = error(cells, self._backgrounds).reshape(n, p_count, c_count, -1)  # (n, P, C, B)
        cell_c = error(cells, self._colours).reshape(n, p_count, c_count, -1)  # (n, P, C, Cc)
        inside = np.minimum(cell_c[..., :, None], cell_b[..., None, :]).sum(axis=2)  # (n, P, Cc, B)
        loss = outside[:, :, None, :] + frame[:, :, :, None] + inside
        p, c, b = np.unravel_index(loss.reshape(n, -1).argmin(axis=1), loss.shape[1:])
        rows = np.arange(n)
        bits = cell_c[rows, p, :, c] < cell_b[rows, p, :, b]
        return np.stack([p, c, b], axis=1), bits

    def score(self, images: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
        """Per image (row i of ``table`` holds image i's intended attributes): 1.0 / 0.0 for each
        of colour, position, background and region_correct (nearest glyph is the true region's);
        shared_bit_acc and specific_bit_acc, the fraction of shared / specific cells of the true
        region read as its glyph (NaN where the region has no such cells: tau = 0 or 1; an easy
        region's template cells count as shared); all (every 0/1 check)."""
        missing = [a for a in GLYPH_ATTRIBUTES if a not in table]
        if missing:
            raise ValueError(f"glyph checks need the attribute columns {missing} in the prompt table")
        if len(images) != len(table):
            raise ValueError(f"need as many attribute rows as images, got {len(table)} and {len(images)}")
        read, bits = self.read_bits(images)
        truth = self.world.region_of(table)
        out = {a: (read[a].to_numpy() == table[a].to_numpy()).astype(np.float64) for a in NUISANCES}
        out["region_correct"] = (read["region"].to_numpy() == truth).astype(np.float64)
        right = bits == self.world.glyphs[truth]
        shared = self._shared[truth]  # (N, C)
        for name, cells in (("shared_bit_acc", shared), ("specific_bit_acc", ~shared)):
            count = cells.sum(axis=1)
            out[name] = np.where(count > 0, (right & cells).sum(axis=1) / np.maximum(count, 1), np.nan)
        out["all"] = np.logical_and.reduce([out[k] == 1.0 for k in (*NUISANCES, "region_correct")]).astype(np.float64)
        return pd.DataFrame(out)

    def accuracy(self, images: np.ndarray, attrs: pd.DataFrame) -> dict[str, float]:
        """Means over images of ``score``'s columns (NaN for a bit group the world lacks)."""
        if not len(images):
            raise ValueError("need at least one image")
        return {k: float(v) for k, v in self.score(images, attrs).mean().items()}
