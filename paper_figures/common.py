"""Shared plumbing for the figure scripts: a non-interactive backend, one style, saving, data."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display is needed or wanted
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 200, "font.size": 9, "axes.titlesize": 10,
    "axes.labelsize": 9, "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
})

REPO = Path(__file__).resolve().parents[1]

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


def experiment_dir(data_dir: str | Path | None, name: str) -> Path:
    """data_dir/name when it exists (--data), else the committed experiments/results/name."""
    if data_dir is not None and (Path(data_dir) / name).is_dir():
        return Path(data_dir) / name
    return REPO / "experiments" / "results" / name


def read_csv(data_dir: str | Path | None, name: str) -> pd.DataFrame | None:
    """data_dir/name (or data_dir/*/name, e.g. results/rates/...) as a DataFrame; None when no
    data_dir is given or no such file exists, and the figure computes its data instead."""
    if data_dir is None:
        return None
    found = [Path(data_dir) / name, *sorted(Path(data_dir).glob(f"*/{name}"))]
    return next((pd.read_csv(path) for path in found if path.is_file()), None)


def region_colours(groups: pd.Series) -> list:
    """Group colour per region (``groups``: group name per region, in plotting order), lightness
    varied within a group so neighbouring regions stay apart."""
    colours = {}
    for group, members in groups.groupby(groups, sort=False):
        base = np.array(mcolors.to_rgb(GROUP_COLOURS.get(group, "#777777")))
        for i, region in enumerate(members.index):
            colours[region] = base + (1 - base) * 0.55 * i / max(len(members) - 1, 1)
    return [colours[r] for r in groups.index]


def simulated_regions(data_dir: str | Path | None, scenario: str, seed: int, policies: list[str],
                      sim_config) -> tuple[pd.DataFrame, list[str]]:
    """Per-region rows (step, region, group, share, discrepancy, pi) of the allocation simulator's
    runs of ``policies`` on one scenario and seed, and the policies' labels in the given order:
    from allocation_regions.csv under ``data_dir`` when it holds all of them, else computed."""
    from simulations import allocation as sim

    specs = [sim.PolicySpec.parse(p) for p in policies]
    labels = [s.label for s in specs]
    regions = read_csv(data_dir, "allocation_regions.csv")
    if regions is not None:
        regions = regions[(regions["scenario"] == scenario) & (regions["seed"] == seed) & regions["policy"].isin(labels)]
        if set(regions["policy"]) == set(labels):
            return regions, labels
    return pd.DataFrame(sim.run_study([scenario], specs, [seed], sim_config).regions), labels
