"""AttributeChecker: reads the five attributes back from images of the embedded world.

It fits the renderer's own image model ``x = b + alpha_m (c - b)`` to each image by least
squares, jointly over every object template m = (shape, size, position), object colour c and
background b of the palette, and returns the best fit. The fit uses every pixel, so it is robust
to the per-pixel noise, blur and small colour shifts of images a small diffusion model makes;
it always answers (an image of garbage still gets its closest attributes).

Measured on the default world (32 px, random attributes): every clean render read exactly; all
five attributes right on 0.99995 of 20,000 renders corrupted by ``corrupt`` with a 0.6 px blur and
noise of std 0.1 of the range (0.981 with a 1.0 px blur; the misses are shapes of small objects),
and on 0.998 of renders whose colours are shifted by N(0, 20/255) per channel and image.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from aria_train.worlds.config import ATTRIBUTES, WorldConfig
from aria_train.worlds.render import BACKGROUNDS, COLOURS, alpha_templates


class AttributeChecker:
    """Least-squares attribute reader for images of a world with configuration ``config``."""

    def __init__(self, config: WorldConfig, batch_size: int = 256):
        self.config = config
        self.batch_size = batch_size
        c = config
        alpha = alpha_templates(tuple(c.shapes), tuple(c.sizes), tuple(c.positions), c.image_size)
        self._grid = alpha.shape[:3]  # (shapes, sizes, positions)
        self._alpha = alpha.reshape(-1, c.image_size * c.image_size).astype(np.float64)  # (M, P)
        self._colours = np.array([COLOURS[v] for v in c.colours], np.float64) / 255.0  # (C, 3)
        self._backgrounds = np.array([BACKGROUNDS[v] for v in c.backgrounds], np.float64) / 255.0  # (B, 3)

    def read(self, images: np.ndarray) -> pd.DataFrame:
        """Attributes (columns shape, colour, size, position, background) of uint8 (N, H, W, 3) images."""
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(f"expected images of shape (N, {size}, {size}, 3), got {images.shape}")
        best = np.concatenate([self._fit(images[i: i + self.batch_size])
                               for i in range(0, len(images), self.batch_size)]) if len(images) else np.zeros(0, np.int64)
        m, colour, background = np.unravel_index(best, (len(self._alpha), len(self._colours), len(self._backgrounds)))
        shape, size_, position = np.unravel_index(m, self._grid)
        pick = lambda attribute, index: np.asarray(self.config.values(attribute), dtype=object)[index]
        return pd.DataFrame({"shape": pick("shape", shape), "colour": pick("colour", colour), "size": pick("size", size_),
                             "position": pick("position", position), "background": pick("background", background)})

    def _fit(self, images: np.ndarray) -> np.ndarray:
        """Flat index over (template, colour, background) of the least-squares fit, per image.

        Squared error of the model, expanded so that all fits take one matrix product:
        ||x - b - a(c - b)||^2 = ||x - b||^2 - 2 (c - b).(a.x - b sum a) + ||c - b||^2 sum a^2.
        """
        x = images.reshape(len(images), -1, 3).astype(np.float64) / 255.0  # (n, P, 3)
        a, b = self._alpha, self._backgrounds
        ax = (x.transpose(0, 2, 1) @ a.T).transpose(0, 2, 1)  # (n, M, 3): sum over pixels of a * x
        residual_b = (x**2).sum(axis=(1, 2))[:, None] - 2 * x.sum(axis=1) @ b.T + x.shape[1] * (b**2).sum(1)  # (n, B)
        d = self._colours[:, None, :] - b[None, :, :]  # (C, B, 3)
        cross = (ax @ d.reshape(-1, 3).T).reshape(*ax.shape[:2], *d.shape[:2]) \
            - (d * b[None]).sum(-1)[None, None] * a.sum(1)[None, :, None, None]
        loss = residual_b[:, None, None, :] - 2 * cross + (d**2).sum(-1)[None, None] * (a**2).sum(1)[None, :, None, None]
        return loss.reshape(len(images), -1).argmin(axis=1)

    def score(self, images: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
        """Per image, 1.0 / 0.0 for each attribute read right and for "all" (every attribute
        right); row i of ``table`` holds image i's intended attributes."""
        missing = [a for a in ATTRIBUTES if a not in table]
        if missing:
            raise ValueError(f"attribute accuracy needs the attribute columns {missing} in the prompt table")
        if len(images) != len(table):
            raise ValueError(f"need as many attribute rows as images, got {len(table)} and {len(images)}")
        read = self.read(images)
        correct = {a: read[a].to_numpy() == table[a].to_numpy() for a in ATTRIBUTES}
        correct["all"] = np.logical_and.reduce(list(correct.values()))
        return pd.DataFrame({k: v.astype(np.float64) for k, v in correct.items()})

    def accuracy(self, images: np.ndarray, attrs: pd.DataFrame) -> dict[str, float]:
        """Fraction of images whose attribute is read correctly, per attribute, and "all" (every
        attribute correct). ``attrs`` holds the intended attributes, row i for image i."""
        if len(images) != len(attrs) or not len(images):
            raise ValueError(f"need as many attribute rows as images (> 0), got {len(attrs)} and {len(images)}")
        return {k: float(v) for k, v in self.score(images, attrs).mean().items()}


def corrupt(images: np.ndarray, noise_std: float, blur_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Blur (Gaussian, ``blur_sigma`` pixels) then add Gaussian noise (``noise_std`` of the 0-255
    range) and clip: a stand-in for the imperfect samples of a small diffusion model."""
    x = images.astype(np.float64) / 255.0
    if blur_sigma > 0:
        x = gaussian_filter(x, sigma=(0, blur_sigma, blur_sigma, 0), mode="nearest")
    x = x + noise_std * rng.standard_normal(x.shape)
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
