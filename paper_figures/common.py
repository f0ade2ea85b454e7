"""Shared plumbing for the figure scripts: a non-interactive backend, one style, saving, data."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 200, "font.size": 9, "axes.titlesize": 10,
    "axes.labelsize": 9, "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
})

# one colour per region group and per policy family, used by every figure
GROUP_COLOURS = {"seen": "#4c72b0", "underrep": "#dd8452", "unseen": "#c44e52"}


def save(fig: plt.Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write `name`.png and `name`.pdf into out_dir (created if needed); close the figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return paths


def read_csv(data_dir: str | Path | None, name: str) -> pd.DataFrame | None:
    """data_dir/name (or data_dir/*/name, e.g. results/rates/...) as a DataFrame; None when no
    data_dir is given or no such file exists, and the figure computes its data instead."""
    if data_dir is None:
        return None
    found = [Path(data_dir) / name, *sorted(Path(data_dir).glob(f"*/{name}"))]
    return next((pd.read_csv(path) for path in found if path.is_file()), None)
